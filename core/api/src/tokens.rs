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
#[non_exhaustive]
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
    /// The mask and end-of-turn ids, the ids never to generate, and the
    /// other control ids (`mask` and `eot` count as special whether or not
    /// `all` lists them, see [`is_special`](Self::is_special)).
    pub fn new(mask: u32, eot: u32, suppressed: Vec<u32>, all: Vec<u32>) -> Self {
        Self {
            mask,
            eot,
            suppressed,
            all,
        }
    }

    /// Whether `id` is a special (control) token.
    pub fn is_special(&self, id: u32) -> bool {
        id == self.mask || id == self.eot || self.all.contains(&id)
    }
}

/// What a tokenizer does; [`TextTokenizer`] wraps one. The Hugging Face
/// implementation is `rediff_formats::HfTokenizer` (`tokenizer.json`);
/// plugins only ever call these methods, so no tokenizer library crosses a
/// plugin boundary.
pub trait Tokenize: Send + Sync {
    /// Encodes text; with `special_tokens`, as the tokenizer's
    /// post-processor wants it (BOS or other special tokens added, as
    /// `tokenizer(text)` does in transformers).
    fn encode(&self, text: &str, special_tokens: bool) -> Result<Vec<u32>>;

    /// Decodes ids, skipping special tokens.
    fn decode(&self, ids: &[u32]) -> Result<String>;

    /// The id of a token string, if the vocabulary has it.
    fn token_to_id(&self, token: &str) -> Option<u32>;

    /// The string of an id, if any.
    fn id_to_token(&self, id: u32) -> Option<String>;

    /// Vocabulary size including added tokens.
    fn vocab_size(&self) -> usize;

    /// Ids of the tokens the tokenizer itself marks special.
    fn special_ids(&self) -> Vec<u32>;

    /// Saves the tokenizer as `tokenizer.json` at `path`.
    fn save(&self, path: &Path) -> Result<()>;
}

/// A text tokenizer shared between components (cheap to clone).
///
/// Encoding never adds special tokens unless asked
/// ([`encode_with_special_tokens`](Self::encode_with_special_tokens)): the
/// caller decides where BOS/EOT go.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Arc<dyn Tokenize>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl TextTokenizer {
    /// Wraps an implementation.
    pub fn new(inner: impl Tokenize + 'static) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// Encodes text without adding special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner.encode(text, false)
    }

    /// Encodes text as the tokenizer's post-processor wants it (see [`Tokenize::encode`]).
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>> {
        self.inner.encode(text, true)
    }

    /// Decodes ids, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids)
    }

    /// The id of a token string, if the vocabulary has it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The string of an id, if any.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Ids of the tokens the tokenizer marks special.
    pub fn special_ids(&self) -> Vec<u32> {
        self.inner.special_ids()
    }

    /// Saves as `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path)
    }
}

/// Builds a fixed-length response: `answer` ids, one `eot`, then `eot`
/// padding up to `length` (LLaDA's SFT layout).
///
/// Errors when the answer plus its end-of-turn does not fit.
#[doc(hidden)]
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
