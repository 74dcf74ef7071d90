//! The run directory: one type that knows where everything of a run lives,
//! so no other module spells a path inside it.
//!
//! ```text
//! <run>/pipeline.toml                 the effective configuration (overrides applied)
//! <run>/config-changes.log            what `--resume --accept-changes` accepted
//! <run>/data/                         rendered images, tokenizer.json
//! <run>/checkpoints/<model>/latest/   resumable state (weights, optimizer, progress)
//! <run>/models/<model>/               final checkpoints (rediff generate --model)
//! <run>/stage2/round-<r>/             Stage II journals (see crate::stage2)
//! <run>/seed-<s>/                     one whole run per seed of a study
//! <run>/report.{json,md}, quality_vs_parallelism.png
//! ```

use std::path::{Path, PathBuf};

/// The run directory's copy of the effective configuration.
pub const PIPELINE_FILE: &str = "pipeline.toml";
/// Where `--resume --accept-changes` records what changed.
pub const CHANGES_FILE: &str = "config-changes.log";

/// A run directory and its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

/// Paths of one model's checkpoints in a run directory.
#[derive(Debug, Clone)]
pub struct StageDirs {
    /// `checkpoints/<model>/latest`: resumable (model + optimizer + state).
    pub latest: PathBuf,
    /// `models/<model>`: the final model, loadable by `rediff generate`.
    pub final_model: PathBuf,
}

impl RunDir {
    /// The run directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The effective configuration the run was started with.
    pub fn pipeline_file(&self) -> PathBuf {
        self.root.join(PIPELINE_FILE)
    }

    /// The log of accepted configuration changes.
    pub fn changes_log(&self) -> PathBuf {
        self.root.join(CHANGES_FILE)
    }

    /// Where the data source prepares its files.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Every final model's directory lives in this one.
    pub fn models(&self) -> PathBuf {
        self.root.join("models")
    }

    /// Checkpoint directories of model `name`.
    pub fn stage(&self, name: &str) -> StageDirs {
        StageDirs {
            latest: self.root.join("checkpoints").join(name).join("latest"),
            final_model: self.models().join(name),
        }
    }

    /// The final checkpoint of model `name`.
    pub fn model(&self, name: &str) -> PathBuf {
        self.stage(name).final_model
    }

    /// The journals and dataset of Stage II round `round`.
    pub fn round(&self, round: usize) -> PathBuf {
        self.root.join("stage2").join(format!("round-{round}"))
    }

    /// The run of seed `seed` inside a multi-seed study.
    pub fn seed(&self, seed: u64) -> RunDir {
        RunDir::new(self.root.join(format!("seed-{seed}")))
    }

    /// A path relative to the run directory when it lies inside it (reports
    /// stay portable), else as given.
    pub fn relative<'p>(&self, path: &'p Path) -> &'p Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_a_run() {
        let run = RunDir::new("/r");
        assert_eq!(run.pipeline_file(), Path::new("/r/pipeline.toml"));
        assert_eq!(run.data(), Path::new("/r/data"));
        let s = run.stage("rediff-base");
        assert_eq!(s.latest, Path::new("/r/checkpoints/rediff-base/latest"));
        assert_eq!(s.final_model, Path::new("/r/models/rediff-base"));
        assert_eq!(run.round(2), Path::new("/r/stage2/round-2"));
        assert_eq!(run.seed(17).root(), Path::new("/r/seed-17"));
        assert_eq!(
            run.relative(Path::new("/r/data/a.png")),
            Path::new("data/a.png")
        );
        assert_eq!(run.relative(Path::new("/x/a.png")), Path::new("/x/a.png"));
    }
}
