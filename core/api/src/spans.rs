//! Locating `{org, target}` spans in a tokenized response: shared by the
//! span-pairs synthesizer (Stage I) and the expert-pair validator (Stage II).

use crate::data::RevisePair;
use crate::synth::SkipReason;
use crate::tokens::TextTokenizer;

/// Where one pair sits in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedPair {
    /// First response position of `org` (its first occurrence).
    pub start: usize,
    /// The `target` ids, as many as `org` has.
    pub target: Vec<u32>,
    /// Occurrences of `org` in the response (>= 1).
    pub occurrences: usize,
}

impl LocatedPair {
    /// The response positions the pair covers.
    pub fn positions(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.target.len()
    }
}

/// Pairs located in a response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocatedPairs {
    /// `(position, target token)` for every revise position, in order.
    pub revise: Vec<(usize, u32)>,
    /// Pairs dropped, with the reason.
    pub dropped: Vec<SkipReason>,
}

fn occurrences(haystack: &[u32], needle: &[u32]) -> Vec<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return Vec::new();
    }
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Locates one pair's `org` (first occurrence) in `answer` token ids.
///
/// Fails with [`SkipReason::PairLengthMismatch`] when `org` and `target`
/// tokenize to different lengths and with [`SkipReason::PairNotFound`] when
/// `org` does not occur. Byte-level BPE tokenizers encode a word differently
/// after a space, so `" " + org` is tried first (the form a word takes
/// inside a sentence, and the only one the reference's loader looks for),
/// then bare `org` (a word that starts the answer or follows punctuation);
/// `target` is encoded the same way as the variant that matched.
#[doc(hidden)]
pub fn locate_pair(
    tokenizer: &TextTokenizer,
    answer: &[u32],
    pair: &RevisePair,
) -> crate::Result<Result<LocatedPair, SkipReason>> {
    let mut length_mismatch = false;
    for prefix in [" ", ""] {
        let org = tokenizer.encode(&format!("{prefix}{}", pair.org))?;
        let target = tokenizer.encode(&format!("{prefix}{}", pair.target))?;
        if org.len() != target.len() {
            length_mismatch = true;
            continue;
        }
        let found = occurrences(answer, &org);
        if let Some(&start) = found.first() {
            return Ok(Ok(LocatedPair {
                start,
                target,
                occurrences: found.len(),
            }));
        }
    }
    Ok(Err(if length_mismatch {
        SkipReason::PairLengthMismatch
    } else {
        SkipReason::PairNotFound
    }))
}

/// Locates one pair as the reference's training data loader does: `org`
/// and `target` are encoded as `"dummy " + text` *with* the tokenizer's
/// special tokens and lose their first id (the leading-space form of the
/// words), and `org`'s first occurrence is searched in `[prompt | answer]`;
/// a match at index 0 counts as not found (the reference tests `> 0`), and
/// a first match in the prompt gives [`SkipReason::PairInPrompt`].
#[doc(hidden)]
pub fn locate_pair_reference(
    tokenizer: &TextTokenizer,
    prompt: &[u32],
    answer: &[u32],
    pair: &RevisePair,
) -> crate::Result<Result<LocatedPair, SkipReason>> {
    let encode = |text: &str| -> crate::Result<Vec<u32>> {
        let ids = tokenizer.encode_with_special_tokens(&format!("dummy {text}"))?;
        Ok(ids.get(1..).unwrap_or_default().to_vec())
    };
    let (org, target) = (encode(&pair.org)?, encode(&pair.target)?);
    if org.len() != target.len() {
        return Ok(Err(SkipReason::PairLengthMismatch));
    }
    let sequence: Vec<u32> = prompt.iter().chain(answer).copied().collect();
    let found = occurrences(&sequence, &org);
    Ok(match found.first() {
        None | Some(0) => Err(SkipReason::PairNotFound),
        Some(&j) if j < prompt.len() => Err(SkipReason::PairInPrompt),
        Some(&j) => Ok(LocatedPair {
            start: j - prompt.len(),
            target,
            occurrences: occurrences(answer, &org).len(),
        }),
    })
}

/// Locates every pair; see [`locate_pair`].
pub fn locate_pairs(
    tokenizer: &TextTokenizer,
    answer: &[u32],
    pairs: &[RevisePair],
) -> crate::Result<LocatedPairs> {
    collect_pairs(pairs, |pair| locate_pair(tokenizer, answer, pair))
}

/// Locates every pair as the reference does; see [`locate_pair_reference`].
pub fn locate_pairs_reference(
    tokenizer: &TextTokenizer,
    prompt: &[u32],
    answer: &[u32],
    pairs: &[RevisePair],
) -> crate::Result<LocatedPairs> {
    collect_pairs(pairs, |pair| {
        locate_pair_reference(tokenizer, prompt, answer, pair)
    })
}

type Located = crate::Result<Result<LocatedPair, SkipReason>>;

fn collect_pairs(
    pairs: &[RevisePair],
    mut locate: impl FnMut(&RevisePair) -> Located,
) -> crate::Result<LocatedPairs> {
    let mut out = LocatedPairs::default();
    for pair in pairs {
        match locate(pair)? {
            Ok(located) => out.revise.extend(
                located
                    .target
                    .iter()
                    .enumerate()
                    .map(|(j, &t)| (located.start + j, t)),
            ),
            Err(reason) => out.dropped.push(reason),
        }
    }
    Ok(out)
}

/// Applies pairs to text at the first occurrence of each `org` in the
/// *original* text, all at once (a later pair never sees an earlier one's
/// replacement); a pair whose span overlaps an earlier one's is skipped.
pub fn apply_pairs(text: &str, pairs: &[RevisePair]) -> String {
    let mut spans: Vec<(std::ops::Range<usize>, &str)> = Vec::new();
    for pair in pairs {
        if pair.org.is_empty() {
            continue;
        }
        let Some(at) = text.find(&pair.org) else {
            continue;
        };
        let range = at..at + pair.org.len();
        if spans
            .iter()
            .any(|(r, _)| r.start < range.end && range.start < r.end)
        {
            continue;
        }
        spans.push((range, &pair.target));
    }
    spans.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = text.to_string();
    for (range, target) in spans {
        out.replace_range(range, target);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Whitespace-split words, one id each (position in `words`).
    struct Words(Vec<String>);

    impl crate::tokens::Tokenize for Words {
        fn encode(&self, text: &str, _special_tokens: bool) -> crate::Result<Vec<u32>> {
            // An unknown word reads as one id past the vocabulary (an UNK).
            Ok(text
                .split_whitespace()
                .map(|w| self.token_to_id(w).unwrap_or(self.0.len() as u32))
                .collect())
        }
        fn decode(&self, ids: &[u32]) -> crate::Result<String> {
            let words: Vec<String> = ids.iter().filter_map(|&i| self.id_to_token(i)).collect();
            Ok(words.join(" "))
        }
        fn token_to_id(&self, token: &str) -> Option<u32> {
            self.0.iter().position(|w| w == token).map(|i| i as u32)
        }
        fn id_to_token(&self, id: u32) -> Option<String> {
            self.0.get(id as usize).cloned()
        }
        fn vocab_size(&self) -> usize {
            self.0.len()
        }
        fn special_ids(&self) -> Vec<u32> {
            Vec::new()
        }
        fn save(&self, _path: &std::path::Path) -> crate::Result<()> {
            Ok(())
        }
    }

    pub(crate) fn word_tokenizer(words: &[&str]) -> TextTokenizer {
        TextTokenizer::new(Words(words.iter().map(|w| w.to_string()).collect()))
    }

    pub(crate) fn pair(org: &str, target: &str) -> RevisePair {
        RevisePair::new(org, target)
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
        // First occurrence only, with the number of occurrences.
        let got = locate_pair(&tk, &answer, &pair("red", "big"))
            .unwrap()
            .unwrap();
        assert_eq!((got.start, got.occurrences), (1, 2));
        assert_eq!(got.positions(), 1..2);
        let got = locate_pairs(&tk, &answer, &[pair("red", "big")]).unwrap();
        assert_eq!(got.revise, vec![(1, 3)]);
    }

    #[test]
    fn applies_pairs_simultaneously_on_the_original() {
        let swapped = apply_pairs(
            "on the center and at the left",
            &[pair("center", "left"), pair("left", "center")],
        );
        assert_eq!(swapped, "on the left and at the center");
        assert_eq!(
            apply_pairs("a red b", &[pair("red b", "x y"), pair("a red", "p q")]),
            "a x y"
        );
    }
}
