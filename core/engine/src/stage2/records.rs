//! What Stage II journals: drafts, expert reviews, and the statistics the
//! report shows.

use serde::{Deserialize, Serialize};

use rediff_api::data::RevisePair;
use rediff_api::expert::TokenUsage;
use rediff_report::stage2::ExpertStats;

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
        rediff_api::spans::apply_pairs(&self.draft, &self.kept_pairs())
    }
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

/// Expert statistics of a round, from its review records.
pub trait ExpertStatsExt {
    /// Token usage summed over `records` (`None` when none reports it).
    fn usage_of<'a>(records: impl IntoIterator<Item = &'a ReviewRecord>) -> Option<TokenUsage>;
    /// Statistics of the final record of every item.
    fn of<'a>(records: impl IntoIterator<Item = &'a ReviewRecord>) -> Self;
}

impl ExpertStatsExt for ExpertStats {
    fn usage_of<'a>(records: impl IntoIterator<Item = &'a ReviewRecord>) -> Option<TokenUsage> {
        records
            .into_iter()
            .filter_map(|r| r.usage)
            .reduce(|mut a, b| {
                a += b;
                a
            })
    }

    fn of<'a>(records: impl IntoIterator<Item = &'a ReviewRecord>) -> Self {
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
