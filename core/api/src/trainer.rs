//! Who trains a Stage II round: the engine's own trainer (`in-process`),
//! or something outside it, such as the official DeepSpeed scripts run as
//! a `command`. Registered under [`crate::ComponentKind::Trainer`].
//!
//! The engine prepares the round (drafts, expert reviews, the round's
//! `dataset.json` in the reference's LLaVA format), journals the trainer's
//! start and finish, hands it a [`TrainJob`], then loads the checkpoint it
//! wrote for the next round's drafts and for evaluation. A finished round
//! is never trained again on `--resume`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::error::Result;

/// One round's training, for an external trainer.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// Stage II round number (1-based).
    pub round: usize,
    /// The round's training set in the reference's LLaVA conversation
    /// format (`dataset.json`, with the `revise` pairs).
    pub dataset: PathBuf,
    /// The directory the dataset's `image` paths are relative to.
    pub image_root: PathBuf,
    /// The checkpoint that drafted this round (the one to fine-tune).
    pub input_checkpoint: PathBuf,
    /// Where the trained checkpoint must be written (empty when called).
    pub output_dir: PathBuf,
    /// The round's directory, for the trainer's own files.
    pub work_dir: PathBuf,
    /// The run directory.
    pub run_dir: PathBuf,
    /// The trainer's log (created by the trainer).
    pub log: PathBuf,
    /// Set on Ctrl-C: stop the work and return [`crate::Error::Interrupted`].
    pub interrupt: Arc<AtomicBool>,
}

/// Trains Stage II rounds.
pub trait Trainer: Send + Sync {
    /// True for the engine's own in-process trainer, which the engine runs
    /// itself (with the pipeline's synthesizers and optimiser settings);
    /// [`train`](Self::train) is then never called.
    fn in_process(&self) -> bool {
        false
    }

    /// Trains `job`: returns once `job.output_dir` holds the trained
    /// checkpoint, or an error saying why not (for a command: its exit
    /// status and the tail of its log).
    fn train(&self, job: &TrainJob) -> Result<()>;
}
