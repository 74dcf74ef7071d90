//! `rediff eval`: the models a finished run saved, evaluated again with any
//! sampler grid, without retraining. The run's data is prepared again from
//! its own seed (the same held-out images), each model is loaded from
//! `models/<name>/`, and the report is written to its own directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::MultiProgress;
use rediff_api::data::{DataContext, Split};
use rediff_api::error::{Error, Result};
use rediff_api::registry::Registry;
use rediff_nn::checkpoint::{read_json, StageDirs};
use rediff_report::{DataSummary, Report, JSON_FILE};

use super::{assemble, eval_items, ImageCache, RunOptions, Shared, PRETRAIN};
use crate::config::PipelineConfig;

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
    let dir = run_dir.join("models");
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
/// writes the report into `opts.out_dir`.
pub fn evaluate_run(
    cfg: &PipelineConfig,
    registry: &Registry,
    opts: &EvalOptions,
) -> Result<Report> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    let mut assembled = assemble(cfg, registry)?;
    assembled
        .data
        .prepare(&DataContext::new(opts.run_dir.join("data"), cfg.seed))?;
    if let Some(tokenizer) = assembled.data.tokenizer() {
        assembled.context.tokenizer = Some(tokenizer);
    }
    let scorer = assembled.data.scorer().ok_or_else(|| {
        Error::invalid(
            "the run's data source has no caption scorer: there is nothing to evaluate against",
        )
    })?;
    let mut eval = assembled.data.samples(Split::Eval)?;
    eval.truncate(cfg.eval.samples);
    let mut images = ImageCache::default();
    let items = eval_items(assembled.model.as_ref(), &eval, &mut images)?;
    let data_seconds = started.elapsed().as_secs_f64();
    let models = match &opts.models {
        Some(m) => m.clone(),
        None => models_of_run(&opts.run_dir)?,
    };
    let run_opts = RunOptions {
        out_dir: opts.run_dir.clone(),
        resume: false,
        retry_all: false,
        accept_changes: false,
        progress: opts.progress,
        interrupt: Default::default(),
        shard: Default::default(),
    };
    let multi = opts.progress.then(MultiProgress::new);
    let shared = Shared {
        cfg,
        registry,
        opts: &run_opts,
        schedule: assembled.schedule.as_ref(),
        samplers: &assembled.samplers,
        train_samples: &[],
        examples: &[],
        items: &items,
        scorer: Some(scorer.as_ref()),
        context: &assembled.context,
        load: assembled.model.load_options(),
        multi: multi.as_ref(),
        images: std::sync::Mutex::new(images),
    };
    let mut report = Report {
        pipeline: cfg.source.name.clone(),
        seed: cfg.seed,
        gen_length: cfg.gen_length,
        data: DataSummary {
            eval: items.len(),
            ..Default::default()
        },
        metrics: scorer.metrics(),
        interval: crate::eval::bootstrap_description(items.len()),
        ..Default::default()
    };
    for name in &models {
        let dir = StageDirs::new(&opts.run_dir, name).final_model;
        if !dir.is_dir() {
            return Err(Error::invalid(format!(
                "model `{name}` was not saved by this run: {} does not exist",
                dir.display()
            )));
        }
        let model = shared.load_model(&dir)?;
        let evaluation = shared.evaluate(name, model.as_ref(), opts.threads.max(1))?;
        report.results.extend(evaluation.rows);
        report.examples.extend(evaluation.examples);
        report.timings.sampler_steps.extend(evaluation.timings);
        report.timings.eval_seconds += evaluation.seconds;
    }
    let t = &mut report.timings;
    t.data_seconds = data_seconds;
    t.max_sampler_share = t.largest_sampler_share();
    t.total_seconds = started.elapsed().as_secs_f64();
    report.test_comparisons(&cfg.eval.compare);
    report.write(&opts.out_dir)?;
    Ok(report)
}
