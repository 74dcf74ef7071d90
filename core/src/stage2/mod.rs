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
    /// Evaluation of the model after the round.
    pub results: Vec<EvalRow>,
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
