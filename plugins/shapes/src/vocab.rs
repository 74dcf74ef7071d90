//! The word-level tokenizer of the `shapes` task.

use std::collections::HashMap;

use rediff_api::tokens::TextTokenizer;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::AddedToken;

use crate::caption::{COUNTS, PLACES};
use crate::scene::{COLORS, SHAPES, SIZES};

/// Special tokens, named as in LLaDA-V, at ids 0..
pub const SPECIAL: [&str; 6] = [
    "<|endoftext|>",
    "<|startoftext|>",
    "<|eot_id|>",
    "<|mdm_mask|>",
    "<image>",
    "[UNK]",
];

/// Every ordinary word the grammar and the question use, sorted.
pub fn words(question: &str) -> Vec<String> {
    let mut w: Vec<String> = COUNTS
        .iter()
        .flat_map(|c| c.split(' '))
        .chain(PLACES.iter().flat_map(|p| [p.0, p.1]))
        .chain(SIZES)
        .chain(COLORS)
        .chain(SHAPES)
        .chain([":", ",", "and", "a", "the", "."])
        .chain(question.split_whitespace())
        .map(str::to_string)
        .collect();
    w.sort();
    w.dedup();
    w
}

/// Builds the tokenizer: special tokens first, then the words.
pub fn build_tokenizer(question: &str) -> rediff_api::Result<TextTokenizer> {
    let mut vocab: HashMap<String, u32> = HashMap::new();
    for (i, s) in SPECIAL.iter().enumerate() {
        vocab.insert(s.to_string(), i as u32);
    }
    for w in words(question) {
        let id = vocab.len() as u32;
        vocab.entry(w).or_insert(id);
    }
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| rediff_api::Error::Tokenizer(e.to_string()))?;
    let mut tk = tokenizers::Tokenizer::new(model);
    tk.with_pre_tokenizer(Some(WhitespaceSplit));
    tk.add_special_tokens(
        &SPECIAL
            .iter()
            .map(|s| AddedToken::from(s.to_string(), true))
            .collect::<Vec<_>>(),
    );
    Ok(rediff_formats::HfTokenizer::wrap(tk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_captions_and_places_specials_first() {
        let tk = build_tokenizer("describe the image .").unwrap();
        assert_eq!(tk.token_to_id("<|mdm_mask|>"), Some(3));
        assert_eq!(tk.token_to_id("<|eot_id|>"), Some(2));
        let text =
            "two objects : a big red circle on the left and a small blue square at the center .";
        let ids = tk.encode(text).unwrap();
        assert_eq!(ids.len(), 19);
        assert!(!ids.contains(&5), "no unknown words");
        assert_eq!(tk.decode(&ids).unwrap(), text);
        let mut with_special = ids.clone();
        with_special.push(2);
        assert_eq!(tk.decode(&with_special).unwrap(), text);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tk.save(&path).unwrap();
        let back = rediff_formats::HfTokenizer::from_file(&path).unwrap();
        assert_eq!(back.encode(text).unwrap(), ids);
    }
}
