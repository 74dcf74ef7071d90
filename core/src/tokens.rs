//! Token-level vocabulary shared by models, synthesizers and the sampler.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The special token ids a model's vocabulary defines.
///
/// Names follow LLaDA-V (`<|mdm_mask|>`, `<|eot_id|>`, ...); a backend fills
/// them from its own `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialTokens {
    /// `[MASK]` / `<|mdm_mask|>`: the absorbing state of the diffusion.
    pub mask: u32,
    /// `<|eot_id|>`: end of turn; generation stops at it and responses are padded with it.
    pub eot: u32,
    /// Tokens the sampler must never generate (begin/end of text, header tokens).
    pub suppressed: Vec<u32>,
    /// Every special id (mask, eot, suppressed and any other control token):
    /// random replacement never draws these.
    pub all: Vec<u32>,
}

impl SpecialTokens {
    /// Whether `id` is a special (control) token.
    pub fn is_special(&self, id: u32) -> bool {
        id == self.mask || id == self.eot || self.all.contains(&id)
    }
}

/// A text tokenizer (Hugging Face `tokenizers`) shared between components.
///
/// Encoding never adds special tokens: the caller decides where BOS/EOT go.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Arc<tokenizers::Tokenizer>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl TextTokenizer {
    /// Wraps an already built tokenizer.
    pub fn new(inner: tokenizers::Tokenizer) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// A whitespace-split word-level tokenizer over `words` (ids in order),
    /// with `[UNK]` after them: small hand-checkable vocabularies for tests
    /// and toy data.
    pub fn word_level(words: &[&str]) -> Result<Self> {
        use tokenizers::models::wordlevel::WordLevel;
        use tokenizers::pre_tokenizers::whitespace::Whitespace;
        let mut vocab: std::collections::HashMap<String, u32> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i as u32))
            .collect();
        vocab.insert("[UNK]".into(), words.len() as u32);
        let model = WordLevel::builder()
            .vocab(vocab.into_iter().collect())
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut tk = tokenizers::Tokenizer::new(model);
        tk.with_pre_tokenizer(Some(Whitespace {}));
        Ok(Self::new(tk))
    }

    /// Loads `tokenizer.json`, naming the file on failure.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::checkpoint(path, "file not found"));
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::checkpoint(path, format!("not a valid tokenizer.json: {e}")))?;
        Ok(Self::new(inner))
    }

    /// Saves as `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, false)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
    }

    /// The underlying tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes text without adding special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes text as the tokenizer's post-processor wants it (BOS or
    /// other special tokens added, as `tokenizer(text)` does in transformers).
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The id of a token string, if the vocabulary has it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The string of an id, if any.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

/// Builds a fixed-length response: `answer` ids, one `eot`, then `eot`
/// padding up to `length` (LLaDA's SFT layout).
///
/// Errors when the answer plus its end-of-turn does not fit.
pub fn pad_response(answer: &[u32], eot: u32, length: usize) -> Result<Vec<u32>> {
    if answer.len() + 1 > length {
        return Err(Error::invalid(format!(
            "response of {} tokens (+1 end-of-turn) does not fit the generation length {length}",
            answer.len()
        )));
    }
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(answer);
    out.resize(length, eot);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_with_eot_and_rejects_overflow() {
        assert_eq!(pad_response(&[5, 6], 9, 5).unwrap(), vec![5, 6, 9, 9, 9]);
        assert_eq!(pad_response(&[5, 6], 9, 3).unwrap(), vec![5, 6, 9]);
        assert!(pad_response(&[5, 6, 7], 9, 3).is_err());
    }
}
