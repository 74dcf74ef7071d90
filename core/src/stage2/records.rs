//! What Stage II journals: drafts, expert reviews, and the statistics the
//! report shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::RevisePair;
use crate::expert::TokenUsage;

use super::validate::{DroppedPair, KeptPair};

/// One draft written by the model (`drafts.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DraftRecord {
    /// Position in the round's draft list.
    pub index: usize,
    /// The training sample the prompt came from.
    pub sample: String,
    /// Tokens per step the draft was sampled at.
    pub tokens_per_step: usize,
    /// The draft, cut at the end-of-turn token.
    pub draft: String,
    /// Whether the draft ended with an end-of-turn token inside the response
    /// (a draft that fills the whole response cannot be trained on).
    pub ended: bool,
}

/// How a review ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum ReviewOutcome {
    /// The expert judged the draft right.
    Right,
    /// The expert proposed pairs; the validator kept some (maybe none).
    Revised {
        /// Pairs as proposed.
        proposed: usize,
        /// Pairs kept, with where they apply.
        kept: Vec<KeptPair>,
        /// Pairs dropped, with the reason.
        dropped: Vec<DroppedPair>,
    },
    /// The call failed (recorded; `--resume` sends the item again when
    /// `retryable`, any failed item with `--retry-all`).
    Failed {
        /// The expert's message (never a credential).
        message: String,
        /// Whether sending the item again may succeed (see
        /// [`ExpertError::retryable`](crate::ExpertError)).
        retryable: bool,
        /// The failure's class (`http-404`, `timeout`, `unparseable`, ...).
        #[serde(default = "other")]
        kind: String,
    },
}

/// One expert review (`reviews.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRecord {
    /// The draft's index in the round.
    pub index: usize,
    /// The training sample the prompt came from.
    pub sample: String,
    /// The draft reviewed.
    pub draft: String,
    /// Tokens per step of the draft.
    pub tokens_per_step: usize,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: ReviewOutcome,
    /// The expert's remarks (spans it left alone, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Tokens the expert used, when it reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
}

impl ReviewRecord {
    /// The kept pairs, if any.
    pub fn kept_pairs(&self) -> Vec<RevisePair> {
        match &self.outcome {
            ReviewOutcome::Revised { kept, .. } => kept.iter().map(|k| k.pair.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the call failed.
    pub fn failed(&self) -> bool {
        matches!(self.outcome, ReviewOutcome::Failed { .. })
    }

    /// Whether the call failed in a way that sending the item again may cure.
    pub fn retryable(&self) -> bool {
        matches!(
            self.outcome,
            ReviewOutcome::Failed {
                retryable: true,
                ..
            }
        )
    }

    /// The draft with every kept pair applied (for display).
    pub fn corrected(&self) -> String {
        crate::spans::apply_pairs(&self.draft, &self.kept_pairs())
    }
}

/// Expert-side statistics of one round (shown in the report).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpertStats {
    /// Drafts the expert answered (right or revised).
    pub reviewed: usize,
    /// Drafts judged right.
    pub right: usize,
    /// Drafts with at least one kept pair.
    pub corrected: usize,
    /// Drafts whose pairs were all dropped, or that got no pair although not right.
    pub uncorrected: usize,
    /// Calls that failed.
    pub failed: usize,
    /// Failed calls by kind (`http-404`, `timeout`, `unparseable`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, usize>,
    /// The first message of each failure kind, for the report.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failure_examples: BTreeMap<String, String>,
    /// Pairs proposed.
    pub pairs_proposed: usize,
    /// Pairs kept.
    pub pairs_kept: usize,
    /// Pairs dropped, by reason.
    pub pairs_dropped: BTreeMap<String, usize>,
    /// Remarks recorded (spans left alone without a same-length fix, ...).
    pub notes: usize,
    /// Token usage summed over the round, when the expert reports it: every
    /// reply that carried usage, parsed or not, retried items included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
}

fn other() -> String {
    "error".to_string()
}

/// The first 160 characters of a message, for summaries.
pub(crate) fn short(message: &str) -> String {
    let t: String = message.chars().take(160).collect();
    if t.len() < message.len() {
        format!("{t}...")
    } else {
        t
    }
}

impl ExpertStats {
    /// Token usage summed over `records` (`None` when none reports it).
    pub fn usage_of<'a>(records: impl IntoIterator<Item = &'a ReviewRecord>) -> Option<TokenUsage> {
        records
            .into_iter()
            .filter_map(|r| r.usage)
            .reduce(|mut a, b| {
                a += b;
                a
            })
    }

    /// Share of `sent` items that got a usable review (1 when none was sent).
    pub fn reviewed_share(&self) -> f64 {
        let sent = self.reviewed + self.failed;
        if sent == 0 {
            1.0
        } else {
            self.reviewed as f64 / sent as f64
        }
    }

    /// Failures by kind with an example message each, most frequent first:
    /// `unparseable 20 ("..."), http-500 4 ("...")`.
    pub fn failure_summary(&self) -> String {
        let mut kinds: Vec<(&String, &usize)> = self.failures.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        kinds
            .into_iter()
            .map(|(kind, n)| match self.failure_examples.get(kind) {
                Some(e) => format!("{kind} {n} (\"{e}\")"),
                None => format!("{kind} {n}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Statistics of the final record of every item.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a ReviewRecord>) -> Self {
        let mut s = ExpertStats::default();
        for r in records {
            s.notes += r.notes.len();
            if let Some(u) = r.usage {
                *s.usage.get_or_insert_with(TokenUsage::default) += u;
            }
            match &r.outcome {
                ReviewOutcome::Right => {
                    s.reviewed += 1;
                    s.right += 1;
                }
                ReviewOutcome::Revised {
                    proposed,
                    kept,
                    dropped,
                } => {
                    s.reviewed += 1;
                    s.pairs_proposed += proposed;
                    s.pairs_kept += kept.len();
                    for d in dropped {
                        *s.pairs_dropped
                            .entry(d.reason.name().to_string())
                            .or_default() += 1;
                    }
                    if kept.is_empty() {
                        s.uncorrected += 1;
                    } else {
                        s.corrected += 1;
                    }
                }
                ReviewOutcome::Failed { message, kind, .. } => {
                    s.failed += 1;
                    *s.failures.entry(kind.clone()).or_default() += 1;
                    s.failure_examples
                        .entry(kind.clone())
                        .or_insert_with(|| short(message));
                }
            }
        }
        s
    }
}
