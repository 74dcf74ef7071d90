//! Checking an expert's `{org, target}` pairs against the draft they claim
//! to correct (section 4 of the specification): each `org` must occur in
//! the draft (first occurrence taken, as the reference does), `org` and
//! `target` must have the same token count under the model's tokenizer, and
//! no two pairs may claim the same `org` or overlapping positions.

use serde::{Deserialize, Serialize};

use rediff_api::data::RevisePair;
use rediff_api::spans::locate_pair;
use rediff_api::synth::SkipReason;
use rediff_api::tokens::TextTokenizer;

/// Why a proposed pair was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// `org` does not occur in the draft.
    NotFound,
    /// `org` and `target` tokenize to different lengths.
    LengthMismatch,
    /// An earlier pair of the same reply has the same `org`.
    DuplicateOrg,
    /// The pair's span overlaps the span of an earlier kept pair.
    Overlap,
    /// `target` equals `org`: nothing to learn.
    Unchanged,
    /// `org` or `target` is empty.
    Empty,
    /// `org` occurs only without a leading space (at the start of the
    /// answer, with a byte-level BPE): the reference trainer searches for
    /// `org`'s leading-space form, would not find it, and would train the
    /// draft's wrong text as the target.
    NoLeadingSpace,
}

impl DropReason {
    /// Every reason, in report order.
    pub const ALL: [DropReason; 7] = [
        DropReason::NotFound,
        DropReason::LengthMismatch,
        DropReason::DuplicateOrg,
        DropReason::Overlap,
        DropReason::Unchanged,
        DropReason::Empty,
        DropReason::NoLeadingSpace,
    ];

    /// The kebab-case name used in journals and reports.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NotFound => "not-found",
            DropReason::LengthMismatch => "length-mismatch",
            DropReason::DuplicateOrg => "duplicate-org",
            DropReason::Overlap => "overlap",
            DropReason::Unchanged => "unchanged",
            DropReason::Empty => "empty",
            DropReason::NoLeadingSpace => "no-leading-space",
        }
    }
}

/// A pair that was not kept, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedPair {
    /// The pair as the expert proposed it.
    #[serde(flatten)]
    pub pair: RevisePair,
    /// Why it was dropped.
    pub reason: DropReason,
}

/// A kept pair with where it applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptPair {
    /// The pair.
    #[serde(flatten)]
    pub pair: RevisePair,
    /// First draft token position of `org`.
    pub start: usize,
    /// Occurrences of `org` in the draft (more than one: the first is taken).
    pub occurrences: usize,
}

/// The outcome of validating one reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    /// Pairs kept, in the order proposed.
    pub kept: Vec<KeptPair>,
    /// Pairs dropped, in the order proposed.
    pub dropped: Vec<DroppedPair>,
}

impl Validation {
    /// The kept pairs without positions.
    pub fn kept_pairs(&self) -> Vec<RevisePair> {
        self.kept.iter().map(|k| k.pair.clone()).collect()
    }
}

/// Validates `pairs` against `draft` (the draft's token ids, answer only).
pub fn validate_pairs(
    tokenizer: &TextTokenizer,
    draft: &[u32],
    pairs: &[RevisePair],
) -> rediff_api::Result<Validation> {
    let mut out = Validation::default();
    let mut seen_orgs: Vec<&str> = Vec::new();
    let mut taken: Vec<std::ops::Range<usize>> = Vec::new();
    for pair in pairs {
        let drop = |reason| DroppedPair {
            pair: pair.clone(),
            reason,
        };
        if pair.org.trim().is_empty() || pair.target.trim().is_empty() {
            out.dropped.push(drop(DropReason::Empty));
            continue;
        }
        if pair.org.trim() == pair.target.trim() {
            out.dropped.push(drop(DropReason::Unchanged));
            continue;
        }
        if seen_orgs.contains(&pair.org.trim()) {
            out.dropped.push(drop(DropReason::DuplicateOrg));
            continue;
        }
        seen_orgs.push(pair.org.trim());
        let located = match locate_pair(tokenizer, draft, pair)? {
            Ok(located) => located,
            Err(SkipReason::PairLengthMismatch) => {
                out.dropped.push(drop(DropReason::LengthMismatch));
                continue;
            }
            Err(_) => {
                out.dropped.push(drop(DropReason::NotFound));
                continue;
            }
        };
        // The reference (`train.py`, `_get_item`) locates
        // `encode('dummy ' + org)[1:]`: the leading-space form of `org`.
        let spaced = tokenizer.encode(&format!(" {}", pair.org))?;
        if !spaced.is_empty() && !draft.windows(spaced.len()).any(|w| w == spaced.as_slice()) {
            out.dropped.push(drop(DropReason::NoLeadingSpace));
            continue;
        }
        // It also skips a pair whose leading-space forms differ in length,
        // though the bare forms may not.
        if tokenizer.encode(&format!(" {}", pair.target))?.len() != spaced.len() {
            out.dropped.push(drop(DropReason::LengthMismatch));
            continue;
        }
        let span = located.positions();
        if taken
            .iter()
            .any(|t| t.start < span.end && span.start < t.end)
        {
            out.dropped.push(drop(DropReason::Overlap));
            continue;
        }
        taken.push(span);
        out.kept.push(KeptPair {
            pair: pair.clone(),
            start: located.start,
            occurrences: located.occurrences,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word_tokenizer(words: &[&str]) -> rediff_api::TextTokenizer {
        rediff_formats::HfTokenizer::word_level(words).unwrap()
    }

    fn pair(org: &str, target: &str) -> RevisePair {
        RevisePair::new(org, target)
    }

    const WORDS: &[&str] = &[
        "a", "big", "small", "red", "blue", "circle", "square", "and", ".", "on", "the", "left",
        "right", "dark",
    ];

    fn check(draft: &str, pairs: &[RevisePair]) -> Validation {
        let tk = word_tokenizer(WORDS);
        validate_pairs(&tk, &tk.encode(draft).unwrap(), pairs).unwrap()
    }

    fn reasons(v: &Validation) -> Vec<DropReason> {
        v.dropped.iter().map(|d| d.reason).collect()
    }

    #[test]
    fn keeps_a_good_pair_with_its_position() {
        let v = check("a big red circle .", &[pair("red circle", "blue square")]);
        assert_eq!(v.kept.len(), 1);
        assert_eq!((v.kept[0].start, v.kept[0].occurrences), (2, 1));
        assert!(v.dropped.is_empty());
    }

    #[test]
    fn drops_pairs_not_found_in_the_draft() {
        let v = check("a big red circle .", &[pair("blue circle", "red circle")]);
        assert!(v.kept.is_empty());
        assert_eq!(reasons(&v), vec![DropReason::NotFound]);
    }

    #[test]
    fn drops_unequal_token_lengths() {
        let v = check("a big red circle .", &[pair("red", "dark blue")]);
        assert_eq!(reasons(&v), vec![DropReason::LengthMismatch]);
    }

    #[test]
    fn drops_duplicate_orgs_and_keeps_the_first() {
        let v = check(
            "a big red circle .",
            &[pair("red", "blue"), pair("red", "dark")],
        );
        assert_eq!(v.kept_pairs(), vec![pair("red", "blue")]);
        assert_eq!(reasons(&v), vec![DropReason::DuplicateOrg]);
    }

    #[test]
    fn repeated_org_takes_the_first_occurrence() {
        let v = check("a red circle and a red square .", &[pair("red", "blue")]);
        assert_eq!((v.kept[0].start, v.kept[0].occurrences), (1, 2));
    }

    #[test]
    fn drops_overlaps_unchanged_and_empty() {
        let v = check(
            "a big red circle .",
            &[
                pair("big red", "small blue"),
                pair("red circle", "blue square"),
                pair("circle", "circle"),
                pair("", "red"),
            ],
        );
        assert_eq!(v.kept_pairs(), vec![pair("big red", "small blue")]);
        assert_eq!(
            reasons(&v),
            vec![
                DropReason::Overlap,
                DropReason::Unchanged,
                DropReason::Empty
            ]
        );
        assert_eq!(
            serde_json::to_string(&v.dropped[0]).unwrap(),
            r#"{"org":"red circle","target":"blue square","reason":"overlap"}"#
        );
    }
}
