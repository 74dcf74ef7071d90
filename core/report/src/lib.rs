//! # rediff-report
//!
//! The report of a **rediff** run, as data and as files: `report.json`
//! (machine-readable), `report.md` (tables and example captions) and
//! `quality_vs_parallelism.png` (every metric against tokens per step, one
//! line per model x sampler).
//!
//! Metrics are data: a [`CaptionScorer`](rediff_api::CaptionScorer) names
//! its metrics ([`MetricInfo`]), every [`EvalRow`] carries their values by
//! name, and the tables and the plot iterate over whatever names exist.

pub mod compare;
pub mod markdown;
pub mod plot;
pub mod results;
pub mod scores;
pub mod stage2;
pub mod stats;
pub mod training;

use std::collections::BTreeMap;
use std::path::Path;

use rediff_api::{Error, MetricInfo, Result};
use serde::{Deserialize, Serialize};

pub use plot::plot;
pub use results::{
    EvalRow, Example, ExampleSet, MetricIntervals, MetricValues, Named, SeedValues, StepTiming,
};
pub use stage2::{CorrectionExample, ExpertStats, ExternalTraining, RoundReport, Stage2Report};
pub use training::StageReport;

/// Data the run used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// Training samples with clean answers.
    pub train_clean: usize,
    /// Training samples carrying hallucination pairs.
    pub train_pairs: usize,
    /// Held-out samples scored per setting.
    pub eval: usize,
}

/// Where the time went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Whole run, seconds.
    pub total_seconds: f64,
    /// Data preparation (rendering, loading images), seconds.
    pub data_seconds: f64,
    /// Training wall time per stage, seconds.
    pub training_seconds: BTreeMap<String, f64>,
    /// Optimiser steps per second per stage.
    pub train_steps_per_second: BTreeMap<String, f64>,
    /// Evaluation time, seconds, summed over models (they may run concurrently).
    pub eval_seconds: f64,
    /// Per evaluation setting: forward pass vs the sampler's own work.
    pub sampler_steps: Vec<StepTiming>,
    /// Largest share of a sampler step spent outside the forward pass.
    pub max_sampler_share: f64,
}

impl Timings {
    /// The largest share of a sampler step spent outside the forward pass,
    /// over [`Timings::sampler_steps`].
    pub fn largest_sampler_share(&self) -> f64 {
        self.sampler_steps
            .iter()
            .map(|s| s.sampler_share)
            .fold(0.0, f64::max)
    }
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Pipeline file.
    pub pipeline: String,
    /// Seed.
    pub seed: u64,
    /// Response length.
    pub gen_length: usize,
    /// Data summary.
    pub data: DataSummary,
    /// The metrics of [`results`](Self::results), as the scorer declares them.
    #[serde(default)]
    pub metrics: Vec<MetricInfo>,
    /// One row per model x sampler x tokens per step.
    pub results: Vec<EvalRow>,
    /// Example captions per setting.
    pub examples: Vec<ExampleSet>,
    /// Training stages (loss curves, synthesizer counts, dropped pairs).
    pub training: Vec<StageReport>,
    /// Timings.
    pub timings: Timings,
    /// Stage II rounds, when the pipeline has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage2: Option<Stage2Report>,
    /// What the rows' intervals are (e.g. "95% percentile bootstrap over
    /// 400 evaluation images, 1000 resamples").
    #[serde(default)]
    pub interval: String,
    /// The seeds a report that aggregates seeds averages over (empty for one run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<u64>,
    /// The comparisons the pipeline asked for (`eval.compare`), tested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comparisons: Vec<compare::ComparisonRow>,
}

/// Report file names.
pub const JSON_FILE: &str = "report.json";
/// Markdown report.
pub const MARKDOWN_FILE: &str = "report.md";
/// The plot.
pub const PLOT_FILE: &str = "quality_vs_parallelism.png";

impl Report {
    /// The result for a setting, if evaluated.
    pub fn result(&self, model: &str, sampler: &str, tokens_per_step: usize) -> Option<&EvalRow> {
        self.results.iter().find(|r| {
            r.model == model && r.sampler == sampler && r.tokens_per_step == tokens_per_step
        })
    }

    /// Tests `comparisons` on this report's rows (replacing earlier results).
    pub fn test_comparisons(&mut self, comparisons: &[compare::Comparison]) {
        self.comparisons = compare::compare(self, &self.metrics, comparisons);
    }

    /// Writes `report.json`, `report.md` and the plot into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json_path = dir.join(JSON_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Json {
            path: json_path.clone(),
            source: e,
        })?;
        std::fs::write(&json_path, text + "\n").map_err(|e| Error::io(&json_path, e))?;
        plot(self, &dir.join(PLOT_FILE))?;
        let path = dir.join(MARKDOWN_FILE);
        std::fs::write(&path, markdown::render(self)).map_err(|e| Error::io(&path, e))
    }
}

#[cfg(test)]
mod tests;
