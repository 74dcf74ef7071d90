//! Locating hallucination spans `{org, target}` in a tokenized response.

use rediff_core::data::RevisePair;
use rediff_core::synth::SkipReason;
use rediff_core::tokens::TextTokenizer;

/// Pairs located in a response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocatedPairs {
    /// `(position, target token)` for every revise position, in order.
    pub revise: Vec<(usize, u32)>,
    /// Pairs dropped, with the reason.
    pub dropped: Vec<SkipReason>,
}

fn find(haystack: &[u32], needle: &[u32]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Locates each pair's `org` (first occurrence) in `answer` token ids.
///
/// A pair is dropped when `org` and `target` tokenize to different lengths
/// ([`SkipReason::PairLengthMismatch`]) or `org` is not found
/// ([`SkipReason::PairNotFound`]). Byte-level BPE tokenizers encode a word
/// differently after a space, so both `org` and `" " + org` are tried, and
/// `target` is encoded the same way as the variant that matched.
pub fn locate_pairs(
    tokenizer: &TextTokenizer,
    answer: &[u32],
    pairs: &[RevisePair],
) -> rediff_core::Result<LocatedPairs> {
    let mut out = LocatedPairs::default();
    for pair in pairs {
        let mut found = None;
        let mut length_mismatch = false;
        for prefix in ["", " "] {
            let org = tokenizer.encode(&format!("{prefix}{}", pair.org))?;
            let target = tokenizer.encode(&format!("{prefix}{}", pair.target))?;
            if org.len() != target.len() {
                length_mismatch = true;
                continue;
            }
            if let Some(at) = find(answer, &org) {
                found = Some((at, target));
                break;
            }
        }
        match found {
            Some((at, target)) => out
                .revise
                .extend(target.iter().enumerate().map(|(j, &t)| (at + j, t))),
            None if length_mismatch => out.dropped.push(SkipReason::PairLengthMismatch),
            None => out.dropped.push(SkipReason::PairNotFound),
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;

    /// A word-level tokenizer over `words` (ids in order), `[UNK]` last.
    pub(crate) fn word_tokenizer(words: &[&str]) -> TextTokenizer {
        let mut vocab: HashMap<String, u32> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i as u32))
            .collect();
        vocab.insert("[UNK]".into(), words.len() as u32);
        let model = WordLevel::builder()
            .vocab(vocab.into_iter().collect())
            .unk_token("[UNK]".into())
            .build()
            .unwrap();
        let mut tk = tokenizers::Tokenizer::new(model);
        tk.with_pre_tokenizer(Some(Whitespace {}));
        TextTokenizer::new(tk)
    }

    fn pair(org: &str, target: &str) -> RevisePair {
        RevisePair {
            org: org.into(),
            target: target.into(),
        }
    }

    #[test]
    fn locates_first_occurrence_and_drops_bad_pairs() {
        let tk = word_tokenizer(&["a", "red", "blue", "big", "circle", "square", "and", "dark"]);
        let answer = tk.encode("a red circle and a red square").unwrap();
        assert_eq!(answer, vec![0, 1, 4, 6, 0, 1, 5]);
        let got = locate_pairs(
            &tk,
            &answer,
            &[
                pair("red circle", "blue circle"),
                pair("green", "blue"),
                pair("red", "dark blue"),
            ],
        )
        .unwrap();
        assert_eq!(got.revise, vec![(1, 2), (2, 4)]);
        assert_eq!(
            got.dropped,
            vec![SkipReason::PairNotFound, SkipReason::PairLengthMismatch]
        );
        // First occurrence only.
        let got = locate_pairs(&tk, &answer, &[pair("red", "big")]).unwrap();
        assert_eq!(got.revise, vec![(1, 3)]);
    }
}
