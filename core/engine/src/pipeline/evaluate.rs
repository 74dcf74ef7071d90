//! `rediff eval`: the models a finished run saved, evaluated again with any
//! sampler grid, without retraining. The run's data is prepared again from
//! its own seed (the same held-out images), each model is loaded from
//! `models/<name>/`, and the report is written to its own directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::MultiProgress;
use rediff_api::error::{Error, Result};
use rediff_api::registry::Registry;
use rediff_nn::checkpoint::read_json;
use rediff_report::{Report, JSON_FILE};

use super::assemble::assemble_in;
use super::prepare::{prepare, Splits};
use super::run::{finish_report, new_report};
use super::shared::Shared;
use super::{RunOptions, PRETRAIN};
use crate::config::PipelineConfig;
use crate::rundir::RunDir;

/// Where and how to evaluate a finished run.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The run directory (its `data/` and `models/`).
    pub run_dir: PathBuf,
    /// Where the report goes.
    pub out_dir: PathBuf,
    /// Models to evaluate (default: see [`models_of_run`]).
    pub models: Option<Vec<String>>,
    /// Evaluation settings run in parallel, one compute thread each.
    pub threads: usize,
    /// Progress bars.
    pub progress: bool,
}

/// The models a run evaluated, in its report's order; without a report,
/// every saved model but the shared pre-training.
pub fn models_of_run(run_dir: &Path) -> Result<Vec<String>> {
    let report = run_dir.join(JSON_FILE);
    if report.is_file() {
        let r: Report = read_json(&report)?;
        let mut names: Vec<String> = Vec::new();
        for row in &r.results {
            if !names.contains(&row.model) {
                names.push(row.model.clone());
            }
        }
        if !names.is_empty() {
            return Ok(names);
        }
    }
    let dir = RunDir::new(run_dir).models();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n != PRETRAIN)
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(Error::invalid(format!(
            "{} holds no trained model to evaluate",
            dir.display()
        )));
    }
    Ok(names)
}

/// Evaluates the saved models of `opts.run_dir` on `cfg`'s `[eval]` grid
/// (the run's own configuration, with its grid replaced as wanted) and
/// writes the report into `opts.out_dir`. The data and the report are
/// prepared and finished by the same code as a run's.
pub fn evaluate_run(
    cfg: &PipelineConfig,
    registry: &Registry,
    opts: &EvalOptions,
) -> Result<Report> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    let run_dir = RunDir::new(&opts.run_dir);
    let mut assembled = assemble_in(cfg, registry, Some(&opts.out_dir))?;
    let prepared = prepare(&mut assembled, &run_dir, Splits::EvalOnly)?;
    if prepared.scorer.is_none() {
        return Err(Error::invalid(
            "the run's data source has no caption scorer and [eval] names none (`scorers`, e.g. a judge): there is nothing to score the captions with",
        ));
    }
    let models = match &opts.models {
        Some(m) => m.clone(),
        None => models_of_run(&opts.run_dir)?,
    };
    let run_opts = RunOptions {
        progress: opts.progress,
        ..RunOptions::new(&opts.run_dir)
    };
    let assembled = assembled;
    let multi = opts.progress.then(MultiProgress::new);
    let shared = Shared::new(&assembled, &prepared, &run_opts, multi.as_ref());
    let mut report = new_report(&assembled, &prepared);
    for name in &models {
        let dir = run_dir.model(name);
        if !dir.is_dir() {
            return Err(Error::invalid(format!(
                "model `{name}` was not saved by this run: {} does not exist",
                dir.display()
            )));
        }
        let model = assembled.models.load(&dir)?;
        let evaluation = shared.evaluate(name, model.as_ref(), opts.threads.max(1))?;
        report.results.extend(evaluation.rows);
        report.examples.extend(evaluation.examples);
        report.timings.sampler_steps.extend(evaluation.timings);
        report.timings.eval_seconds += evaluation.seconds;
    }
    finish_report(
        &mut report,
        &assembled,
        prepared.data_seconds,
        started,
        &opts.out_dir,
    )?;
    Ok(report)
}
