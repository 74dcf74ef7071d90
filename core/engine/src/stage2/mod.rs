//! Stage II of ReDiff: online self-correction (section 4 of the
//! specification). The model drafts answers for training prompts, an
//! [`ExpertCorrector`](rediff_api::ExpertCorrector) marks wrong spans with
//! same-length corrections, and the model trains on its *own* drafts with
//! those corrections as revise spans. The whole stage lives in this tree:
//!
//! - `rounds`: the loop over rounds (train, evaluate, report), and a
//!   follower shard's part of it;
//! - `round`: one round's prompts and files, gathering its drafts and reviews;
//! - `draft` and `review`: the two phases of a round;
//! - [`shard`]: several processes drafting one round (`--shard I/N`);
//! - `external`: rounds trained by an external trainer;
//! - [`validate`], [`journal`], [`runner`], [`records`]: the pair rules, the
//!   append-only journals, the expert runner and what they record.
//!
//! Run directory layout of one round (see [`RunDir::round`](crate::rundir::RunDir::round)):
//!
//! ```text
//! <out>/stage2/round-<r>/drafts.jsonl    one DraftRecord per draft, as written
//! <out>/stage2/round-<r>/reviews.jsonl   one ReviewRecord per expert answer (a retried item: last wins)
//! <out>/stage2/round-<r>/dataset.jsonl   one LLaVA conversation per corrected draft, as produced
//! <out>/stage2/round-<r>/dataset.json    the round's training set in the reference format
//! ```

mod draft;
mod external;
pub mod journal;
pub mod records;
mod review;
mod round;
mod rounds;
pub mod runner;
pub mod shard;
pub mod validate;

pub use external::{TrainerEvent, TRAINED_FILE};
pub use journal::Journal;
pub use records::{DraftRecord, ExpertStatsExt, ReviewOutcome, ReviewRecord};
pub use rediff_report::stage2::{CorrectionExample, ExpertStats, RoundReport, Stage2Report};
pub(crate) use round::RoundModel;
pub use rounds::round_model_name;
pub(crate) use rounds::{follow_rounds, run_rounds, tell_lead};
pub use runner::{ExpertRunner, ReviewItem};
pub use shard::{Shard, SliceReport};
pub use validate::{validate_pairs, DropReason, DroppedPair, KeptPair, Validation};
