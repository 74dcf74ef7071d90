//! Stage II of ReDiff: online self-correction (section 4 of the
//! specification). The model drafts answers for training prompts, an
//! [`ExpertCorrector`](crate::ExpertCorrector) marks wrong spans with
//! same-length corrections, and the model trains on its *own* drafts with
//! those corrections as revise spans.
//!
//! This module holds the reusable parts: the pair [`validate`] rules, the
//! [`journal`] every phase appends to, the expert [`runner`] and the
//! [`records`] they write. The loop itself is part of the
//! [`pipeline`](crate::pipeline).
//!
//! Run directory layout of one round:
//!
//! ```text
//! <out>/stage2/round-<r>/drafts.jsonl    one DraftRecord per draft, as written
//! <out>/stage2/round-<r>/reviews.jsonl   one ReviewRecord per expert answer (a retried item: last wins)
//! <out>/stage2/round-<r>/dataset.jsonl   one LLaVA conversation per corrected draft, as produced
//! <out>/stage2/round-<r>/dataset.json    the round's training set in the reference format
//! ```

pub mod journal;
pub mod records;
pub mod runner;
pub mod validate;

use serde::{Deserialize, Serialize};

use crate::eval::EvalRow;
use crate::train::StageReport;

pub use journal::Journal;
pub use records::{DraftRecord, ExpertStats, ReviewOutcome, ReviewRecord};
pub use runner::{ExpertRunner, ReviewItem};
pub use validate::{validate_pairs, DropReason, DroppedPair, KeptPair, Validation};

/// A draft and the expert's corrections, shown in `report.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrectionExample {
    /// The training sample.
    pub sample: String,
    /// Tokens per step of the draft.
    pub tokens_per_step: usize,
    /// The model's draft.
    pub draft: String,
    /// Kept pairs as `(org, target)`.
    pub pairs: Vec<(String, String)>,
    /// The draft with the pairs applied.
    pub corrected: String,
    /// The expert's remarks.
    pub notes: Vec<String>,
}

/// What one Stage II round did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// Round number (1-based).
    pub round: usize,
    /// The model name its evaluation rows carry.
    pub model: String,
    /// Drafts written.
    pub drafts: usize,
    /// Drafts that filled the whole response without an end-of-turn token
    /// (not trainable, not sent to the expert).
    pub drafts_without_end: usize,
    /// Expert-side statistics.
    pub expert: ExpertStats,
    /// Stage II training samples (corrected drafts).
    pub samples: usize,
    /// Stage I samples mixed in.
    pub stage1_samples: usize,
    /// Seconds spent drafting.
    pub drafting_seconds: f64,
    /// Seconds spent waiting for the expert.
    pub expert_seconds: f64,
    /// The round's training (absent when there was nothing to train on).
    pub training: Option<StageReport>,
    /// Evaluation of the model after the round (empty when the round trained
    /// on nothing: the model is the previous one, already evaluated).
    pub results: Vec<EvalRow>,
    /// Why the round failed (too few drafts got a usable review): it neither
    /// trained nor evaluated, and the run stopped after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// A few drafts with their corrections.
    pub examples: Vec<CorrectionExample>,
}

/// Stage II in the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stage2Report {
    /// The expert's kind.
    pub expert: String,
    /// One entry per round.
    pub rounds: Vec<RoundReport>,
}

impl Stage2Report {
    /// The failure message of a failed round, if one failed.
    pub fn failure(&self) -> Option<&str> {
        self.rounds.iter().find_map(|r| r.failed.as_deref())
    }

    /// One line per round: what the expert did and what the model trained on.
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        for r in &self.rounds {
            let e = &r.expert;
            let mut line = format!(
                "Stage II round {} ({}): {} drafts, {} sent to `{}`, {} reviewed ({} right, {} corrected, {} uncorrected), {} failed",
                r.round,
                r.model,
                r.drafts,
                e.reviewed + e.failed,
                self.expert,
                e.reviewed,
                e.right,
                e.corrected,
                e.uncorrected,
                e.failed
            );
            if e.failed > 0 {
                line.push_str(&format!(": {}", e.failure_summary()));
            }
            if let Some(u) = e.usage {
                line.push_str(&format!(
                    "; {} prompt + {} completion tokens",
                    u.prompt_tokens, u.completion_tokens
                ));
            }
            line.push_str(&match (&r.failed, &r.training) {
                (Some(_), _) => "; the round FAILED and trained nothing".to_string(),
                (None, Some(_)) => format!(
                    "; trained on {} corrected drafts + {} Stage I samples",
                    r.samples, r.stage1_samples
                ),
                (None, None) => format!(
                    "; trained on nothing (no corrected draft): `{}` is the previous model and has no rows of its own",
                    r.model
                ),
            });
            lines.push(line);
        }
        lines.join("\n")
    }
}
