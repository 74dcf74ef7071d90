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

pub use journal::Journal;
pub use records::{DraftRecord, ExpertStatsExt, ReviewOutcome, ReviewRecord};
pub use rediff_report::stage2::{CorrectionExample, ExpertStats, RoundReport, Stage2Report};
pub use runner::{ExpertRunner, ReviewItem};
pub use validate::{validate_pairs, DropReason, DroppedPair, KeptPair, Validation};
