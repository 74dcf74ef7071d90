//! The pipeline: data -> shared pre-training -> baseline and Stage I (in
//! parallel) -> Stage II rounds -> evaluation of every model -> report,
//! assembled from a [`PipelineConfig`](crate::PipelineConfig) through the
//! [`Registry`](rediff_api::Registry).
//!
//! - [`assemble`](assemble()): components built, per-stage settings taken from the configuration;
//! - `prepare`: the data source prepared, samples tokenized, images decoded;
//! - `shared`: training one stage's model and evaluating a model on the grid;
//! - [`run`](run()) and [`follow`]: a whole run, and a Stage II shard's part of it;
//! - [`evaluate_run`]: `rediff eval` on a finished run;
//! - [`run_seeds`]: the pipeline over several seeds, aggregated.
//!
//! Where things go: [`RunDir`](crate::rundir::RunDir).

mod assemble;
mod evaluate;
mod prepare;
mod run;
mod seeds;
mod shared;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use crate::rundir::{CHANGES_FILE, PIPELINE_FILE};
pub use crate::stage2::{Shard, SliceReport};
pub use assemble::{
    assemble, assemble_in, Assembled, BuiltStage, BuiltStage2, EvalSettings, ModelFactory,
    RunSettings,
};
pub use evaluate::{evaluate_run, models_of_run, EvalOptions};
pub use prepare::tokenize_sample;
pub use run::{dry_run_expert, follow, run};
pub use seeds::{aggregate, run_seeds, seed_config, seed_dir, seed_dirs};
pub(crate) use shared::{Evaluation, Shared};

/// Name of the shared pre-training stage.
pub const PRETRAIN: &str = "pretrain";
/// Name of the plain masked-diffusion model in reports.
pub const BASELINE: &str = "baseline";
/// Name of the Stage I model in reports.
pub const REDIFF_BASE: &str = "rediff-base";
/// Name of the Stage II model (after its last round) in reports.
pub const REDIFF: &str = "rediff";

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run directory.
    pub out_dir: PathBuf,
    /// Continue an interrupted run: finished stages are loaded, a stage in
    /// progress continues from its last checkpoint.
    pub resume: bool,
    /// Send every failed Stage II item to the expert again, not only those
    /// whose failure is retryable (an unparseable reply is not: resending it
    /// pays again for the same answer).
    pub retry_all: bool,
    /// With `resume`: continue although the configuration differs from the
    /// one the run was started with (e.g. another Stage II expert on the
    /// same trained Stage I); the changes are logged and appended to
    /// `config-changes.log`.
    pub accept_changes: bool,
    /// Progress bars.
    pub progress: bool,
    /// Set on Ctrl-C.
    pub interrupt: Arc<AtomicBool>,
    /// Which of several processes drafting Stage II this is (`--shard
    /// I/N`): shard 0 runs the pipeline ([`run`]), the others only draft
    /// ([`follow`]).
    pub shard: Shard,
}

impl RunOptions {
    /// A fresh single-process run into `out_dir`: no resume, no progress
    /// bars, never interrupted (set fields to change that).
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        Self {
            out_dir: out_dir.into(),
            resume: false,
            retry_all: false,
            accept_changes: false,
            progress: false,
            interrupt: Arc::default(),
            shard: Shard::SINGLE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::run::record_configuration;
    use super::*;
    use crate::rundir::{CHANGES_FILE, PIPELINE_FILE};
    use crate::PipelineConfig;
    use std::path::Path;

    const TEXT: &str = "seed = 3\ngen_length = 8\n[data]\nkind = \"shapes\"\n[model]\nkind = \"tiny-vlm\"\n[schedule]\nkind = \"linear\"\n[eval]\nsamples = 4\ntokens_per_step = [1, 8]\nsamplers = [{ name = \"denoise\", policy = { kind = \"none\" } }]\n";

    fn options(dir: &Path, resume: bool, accept_changes: bool) -> RunOptions {
        RunOptions {
            resume,
            accept_changes,
            ..RunOptions::new(dir)
        }
    }

    #[test]
    fn the_run_directory_records_the_effective_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PipelineConfig::parse("p.toml", TEXT)
            .unwrap()
            .with_override("seed", "18")
            .unwrap();
        record_configuration(&cfg, &options(dir.path(), false, false)).unwrap();
        let written = std::fs::read_to_string(dir.path().join(PIPELINE_FILE)).unwrap();
        assert!(written.starts_with("seed = 18\n"), "{written}");
        assert_eq!(PipelineConfig::parse("again", &written).unwrap().seed, 18);
    }

    #[test]
    fn resume_refuses_a_changed_configuration_unless_told_to_accept_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = PipelineConfig::parse("p.toml", TEXT).unwrap();
        record_configuration(&first, &options(dir.path(), false, false)).unwrap();
        // Same configuration, other comments: resumes.
        let same = PipelineConfig::parse("p.toml", &format!("# note\n{TEXT}")).unwrap();
        record_configuration(&same, &options(dir.path(), true, false)).unwrap();
        // Another seed and sample count: refused, naming both changes.
        let changed = first
            .with_override("seed", "4")
            .unwrap()
            .source
            .text
            .replace("samples = 4", "samples = 5");
        let changed = PipelineConfig::parse("p.toml", &changed).unwrap();
        let err = record_configuration(&changed, &options(dir.path(), true, false))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("eval.samples: 4 -> 5") && err.contains("seed: 3 -> 4"),
            "{err}"
        );
        assert!(err.contains("--accept-changes"), "{err}");
        // Accepted: recorded, and the new configuration is the run's.
        record_configuration(&changed, &options(dir.path(), true, true)).unwrap();
        let log = std::fs::read_to_string(dir.path().join(CHANGES_FILE)).unwrap();
        assert!(log.contains("seed: 3 -> 4"), "{log}");
        let now = std::fs::read_to_string(dir.path().join(PIPELINE_FILE)).unwrap();
        assert_eq!(now, changed.source.text);
    }
}
