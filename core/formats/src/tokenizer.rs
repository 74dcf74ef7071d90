//! Hugging Face `tokenizer.json` files behind rediff's [`TextTokenizer`].

use std::path::Path;

use rediff_api::tokens::{TextTokenizer, Tokenize};
use rediff_api::{Error, Result};

/// A Hugging Face tokenizer (the `tokenizers` crate, as transformers' fast
/// tokenizers use it).
#[derive(Clone)]
pub struct HfTokenizer(tokenizers::Tokenizer);

impl HfTokenizer {
    /// Wraps an already built tokenizer.
    pub fn new(inner: tokenizers::Tokenizer) -> Self {
        Self(inner)
    }

    /// The underlying tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.0
    }

    /// Loads `tokenizer.json`, naming the file on failure.
    /// Wraps a `tokenizers` tokenizer as rediff's [`TextTokenizer`].
    pub fn wrap(inner: tokenizers::Tokenizer) -> TextTokenizer {
        TextTokenizer::new(Self(inner))
    }

    pub fn from_file(path: &Path) -> Result<TextTokenizer> {
        if !path.exists() {
            return Err(Error::checkpoint(path, "file not found"));
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::checkpoint(path, format!("not a valid tokenizer.json: {e}")))?;
        Ok(TextTokenizer::new(Self(inner)))
    }

    /// A whitespace-split word-level tokenizer over `words` (ids in order),
    /// with `[UNK]` after them: small hand-checkable vocabularies for tests
    /// and toy data.
    pub fn word_level(words: &[&str]) -> Result<TextTokenizer> {
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
        Ok(TextTokenizer::new(Self(tk)))
    }
}

impl Tokenize for HfTokenizer {
    fn encode(&self, text: &str, special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .0
            .encode(text, special_tokens)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.0
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.0.token_to_id(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.0.id_to_token(id)
    }

    fn vocab_size(&self) -> usize {
        self.0.get_vocab_size(true)
    }

    fn special_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .0
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(i, _)| i)
            .collect();
        ids.sort_unstable();
        ids
    }

    fn save(&self, path: &Path) -> Result<()> {
        self.0
            .save(path, false)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_level_round_trips_and_names_bad_files() {
        let tk = HfTokenizer::word_level(&["a", "red", "circle"]).unwrap();
        assert_eq!(tk.encode("a red circle").unwrap(), vec![0, 1, 2]);
        assert_eq!(tk.decode(&[1, 2]).unwrap(), "red circle");
        assert_eq!(tk.vocab_size(), 4);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tk.save(&path).unwrap();
        let back = HfTokenizer::from_file(&path).unwrap();
        assert_eq!(back.encode("circle a").unwrap(), vec![2, 0]);
        let err = HfTokenizer::from_file(&dir.path().join("nope.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.json"), "{err}");
    }
}
