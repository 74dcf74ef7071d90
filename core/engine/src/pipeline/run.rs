//! Running a pipeline: data -> shared pre-training -> baseline and Stage I
//! (in parallel) -> Stage II rounds -> report; a Stage II shard's part of
//! it ([`follow`]); what `--dry-run` shows.

use std::path::Path;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rediff_api::data::{DataContext, Split};
use rediff_api::error::{Error, Result};
use rediff_api::registry::Registry;
use rediff_report::{DataSummary, Report};

use super::assemble::{assemble, assemble_in, Assembled};
use super::prepare::{prepare, Prepared, Splits};
use super::shared::{ModelOutcome, Shared};
use super::{RunOptions, REDIFF_BASE};
use crate::config::PipelineConfig;
use crate::eval::bootstrap_description;
use crate::parallel::map_scoped;
use crate::rundir::RunDir;
use crate::stage2::{self, RoundModel, SliceReport};
use crate::train::REPORT_FILE;

pub(crate) fn spinner(progress: bool, message: &str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// What the Stage II expert would be sent for the first clean training
/// sample (its reference answer standing in for a draft; no model is
/// trained), credentials redacted: `rediff run --dry-run`.
pub fn dry_run_expert(cfg: &PipelineConfig, registry: &Registry, out: &Path) -> Result<String> {
    let mut assembled = assemble(cfg, registry)?;
    let Some(stage2) = &assembled.stage2 else {
        return Err(Error::invalid(
            "--dry-run shows an expert request; the pipeline has no [stage2]",
        ));
    };
    assembled
        .data
        .prepare(&DataContext::new(RunDir::new(out).data(), cfg.seed))?;
    let train = assembled.data.samples(Split::Train)?;
    let sample = train
        .iter()
        .find(|s| s.revise.is_empty())
        .ok_or_else(|| Error::invalid("the data has no clean training sample"))?;
    let request = rediff_api::expert::ExpertRequest::new(
        sample.id.clone(),
        sample.image.clone(),
        sample.question.clone(),
        sample.answer.clone(),
        sample.answer.clone(),
    )
    .with_truth(sample.truth.clone());
    Ok(stage2.expert.describe(&request).unwrap_or_else(|| {
        format!(
            "expert `{}` sends no request (it runs in process); it would review:\n{}",
            stage2.config.expert.kind(),
            serde_json::to_string_pretty(&request).unwrap_or_default()
        )
    }))
}

/// Writes the effective configuration into the run directory; with
/// `--resume`, first checks it equals the one the run was started with
/// (a resumed run with other settings would mix two experiments).
pub(crate) fn record_configuration(cfg: &PipelineConfig, opts: &RunOptions) -> Result<()> {
    let dir = RunDir::new(&opts.out_dir);
    let path = dir.pipeline_file();
    if opts.resume && path.exists() {
        let before = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let changes = crate::config::effective::differences(&before, &cfg.source.text)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        if !changes.is_empty() && opts.accept_changes {
            tracing::warn!(
                "resuming with a changed configuration (--accept-changes): {}",
                changes.join("; ")
            );
            let log = dir.changes_log();
            let mut text = std::fs::read_to_string(&log).unwrap_or_default();
            text.push_str("--resume --accept-changes:\n");
            for c in &changes {
                text.push_str(&format!("  {c}\n"));
            }
            std::fs::write(&log, text).map_err(|e| Error::io(&log, e))?;
        } else if !changes.is_empty() {
            return Err(Error::invalid(format!(
                "--resume continues the run in {} with the configuration it was started with ({}), but this configuration differs:\n  {}\nUndo the changes (command-line overrides such as --seed count), start a new run with another --out, or, to reuse the finished stages on purpose, add --accept-changes",
                opts.out_dir.display(),
                path.display(),
                changes.join("\n  ")
            )));
        }
    }
    // A Stage II shard may be reading it.
    rediff_formats::reference::write_atomic(&path, cfg.source.text.as_bytes())
}

/// A report with the run's header and data summary, no results yet.
pub(crate) fn new_report(assembled: &Assembled<'_>, prepared: &Prepared) -> Report {
    let train = &prepared.train;
    Report {
        pipeline: assembled.run.pipeline.clone(),
        seed: assembled.run.seed,
        gen_length: assembled.run.gen_length,
        data: DataSummary {
            train_clean: train.iter().filter(|s| s.revise.is_empty()).count(),
            train_pairs: train.iter().filter(|s| !s.revise.is_empty()).count(),
            eval: prepared.items.len(),
        },
        metrics: prepared
            .scorer
            .as_ref()
            .map(|s| s.metrics())
            .unwrap_or_default(),
        interval: bootstrap_description(prepared.items.len()),
        ..Default::default()
    }
}

/// Fills in the timings, tests the comparisons and writes the report into `dir`.
pub(crate) fn finish_report(
    report: &mut Report,
    assembled: &Assembled<'_>,
    data_seconds: f64,
    started: Instant,
    dir: &Path,
) -> Result<()> {
    let t = &mut report.timings;
    t.data_seconds = data_seconds;
    for s in &report.training {
        t.training_seconds.insert(s.name.clone(), s.seconds);
        t.train_steps_per_second
            .insert(s.name.clone(), s.steps_per_second);
    }
    t.max_sampler_share = t.largest_sampler_share();
    t.total_seconds = started.elapsed().as_secs_f64();
    report.test_comparisons(&assembled.eval.compare);
    report.write(dir)
}

/// Runs the whole pipeline and writes the report into `opts.out_dir`.
pub fn run(cfg: &PipelineConfig, registry: &Registry, opts: &RunOptions) -> Result<Report> {
    let started = Instant::now();
    let out = &opts.out_dir;
    if !opts.shard.is_lead() {
        return Err(Error::invalid(format!(
            "shard {} only drafts: use pipeline::follow",
            opts.shard
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    record_configuration(cfg, opts)?;

    let mut assembled = assemble_in(cfg, registry, Some(out))?;
    if opts.shard.is_sharded() && assembled.stage2.is_none() {
        return Err(Error::invalid(
            "--shard splits Stage II drafting over processes; the pipeline has no [stage2]",
        ));
    }
    let bar = spinner(opts.progress, "preparing data");
    let prepared = prepare(&mut assembled, &RunDir::new(out), Splits::All)?;
    bar.finish_and_clear();
    // Without a scorer (real captions, no judge) the models are trained and
    // saved; `rediff generate --images` and `rediff score` evaluate them.
    if prepared.scorer.is_none() {
        tracing::warn!("neither the data source nor [eval] scorers score captions: models are trained, not evaluated (add a judge to [eval] scorers, or use `rediff score`)");
    }
    let assembled = assembled;
    let multi = opts.progress.then(MultiProgress::new);
    let shared = Shared::new(&assembled, &prepared, opts, multi.as_ref());
    let data_parallel = assembled.run.train.data_parallel.max(1);

    // Training and evaluation, one model per stage.
    let mut pretrain_report = None;
    let mut init = None;
    if let Some(stage) = &assembled.pretrain {
        // Trains alone: split its batches over data-parallel shards.
        let (model, report) = shared.train(
            &stage.model_name,
            &stage.synthesizers,
            &stage.settings,
            &prepared.examples,
            None,
            data_parallel,
        )?;
        pretrain_report = Some(report);
        init = Some(model);
    }
    let init = init.as_deref();
    let concurrent = assembled.run.train.concurrent_stages && assembled.stages.len() > 1;
    let outcomes: Vec<Result<ModelOutcome>> = if concurrent {
        // Concurrent stages already use every core between them: one shard each.
        map_scoped(&assembled.stages, |stage| {
            shared.train_and_evaluate(stage, init, 1)
        })
    } else {
        assembled
            .stages
            .iter()
            .map(|stage| shared.train_and_evaluate(stage, init, data_parallel))
            .collect()
    };
    let mut report = new_report(&assembled, &prepared);
    report.training.extend(pretrain_report);
    let mut eval_seconds = 0.0;
    // Report the first real error; an `Interrupted` from a sibling stage is a consequence.
    let mut first_error = None;
    let mut stage1_model = None;
    for outcome in outcomes {
        match outcome {
            Ok(o) => {
                if o.training.name == REDIFF_BASE {
                    stage1_model = Some(o.model);
                }
                report.training.push(o.training);
                report.results.extend(o.evaluation.rows);
                report.examples.extend(o.evaluation.examples);
                report.timings.sampler_steps.extend(o.evaluation.timings);
                eval_seconds += o.evaluation.seconds;
            }
            Err(e) => match (&first_error, &e) {
                (None, _) | (Some(Error::Interrupted), _) => first_error = Some(e),
                _ => {}
            },
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some(built) = &assembled.stage2 {
        let template = assembled.model.as_ref();
        let start = match stage1_model {
            Some(model) => RoundModel::Owned(model),
            // An external trainer without [stage1]: Stage II starts from
            // [model] as configured (a published checkpoint, say), saved
            // where the first round's trainer reads its input.
            None if !built.trainer.in_process() => {
                let dir = shared.dir.model(REDIFF_BASE);
                if !dir.join("config.json").is_file() {
                    rediff_nn::checkpoint::write_dir_atomically(&dir, |d| template.save(d))?;
                }
                RoundModel::Template(template)
            }
            None => return Err(Error::invalid("Stage II needs the Stage I model")),
        };
        let stage2 = stage2::run_rounds(&shared, built, start, &mut report)?;
        report.stage2 = Some(stage2);
    }
    let failure = report
        .stage2
        .as_ref()
        .and_then(|s| s.failure())
        .map(str::to_string);
    report.timings.eval_seconds += eval_seconds;
    finish_report(&mut report, &assembled, prepared.data_seconds, started, out)?;
    // A failed Stage II round still leaves its report (failures by kind, no
    // row for a model that did not train), then fails the run.
    if let Some(message) = failure {
        return Err(Error::invalid(format!(
            "{message}; report.json and report.md in {} list the failures",
            out.display()
        )));
    }
    Ok(report)
}

/// Runs shard `opts.shard` (not the lead) of a sharded Stage II: joins the
/// run directory shard 0 started (same configuration), waits for the model
/// the first round drafts with, then drafts and sends to the expert its
/// slice of every round, each round with the model shard 0 trained.
pub fn follow(
    cfg: &PipelineConfig,
    registry: &Registry,
    opts: &RunOptions,
) -> Result<Vec<SliceReport>> {
    let out = RunDir::new(&opts.out_dir);
    if opts.shard.is_lead() {
        return Err(Error::invalid(
            "shard 0 runs the pipeline: use pipeline::run",
        ));
    }
    let mut assembled = assemble(cfg, registry)?;
    let Some(built) = assembled.stage2.take() else {
        return Err(Error::invalid(
            "--shard splits Stage II drafting over processes; the pipeline has no [stage2]",
        ));
    };
    let bar = spinner(opts.progress, "");
    // Shard 0 records the configuration; every shard must run the same.
    let recorded = out.pipeline_file();
    bar.set_message(format!(
        "shard {}: waiting for shard 0 to start in {}",
        opts.shard,
        out.root().display()
    ));
    let text = stage2::shard::wait_for(&opts.interrupt, &bar, || {
        Ok(std::fs::read_to_string(&recorded).ok())
    })?;
    let changes = crate::config::effective::differences(&text, &cfg.source.text)
        .map_err(|e| Error::invalid(format!("{}: {e}", recorded.display())))?;
    if !changes.is_empty() {
        return Err(Error::invalid(format!(
            "shard {} must run the configuration shard 0 runs ({}), and this one differs:\n  {}",
            opts.shard,
            recorded.display(),
            changes.join("\n  ")
        )));
    }
    // Stage I's model (or, without [stage1], the [model] copy shard 0 saves
    // for the trainer) appears once the data is prepared and Stage I trained.
    let stage1 = out.model(REDIFF_BASE);
    let ready = if cfg.stage1.is_some() {
        stage1.join(REPORT_FILE)
    } else if !built.trainer.in_process() {
        stage1.join("config.json")
    } else {
        return Err(Error::invalid("Stage II needs the Stage I model"));
    };
    bar.set_message(format!(
        "shard {}: waiting for shard 0 to prepare the data and the model round 1 drafts with ({})",
        opts.shard,
        ready.display()
    ));
    stage2::shard::wait_for(&opts.interrupt, &bar, || Ok(ready.exists().then_some(())))?;
    bar.finish_and_clear();
    let prepared = match prepare(&mut assembled, &out, Splits::All) {
        Ok(p) => p,
        Err(e) => return Err(stage2::tell_lead(opts, 1, e)),
    };
    let assembled = assembled;
    let multi = opts.progress.then(MultiProgress::new);
    let shared = Shared::new(&assembled, &prepared, opts, multi.as_ref());
    let start = if cfg.stage1.is_some() {
        match assembled.models.load(&stage1) {
            Ok(model) => RoundModel::Owned(model),
            Err(e) => return Err(stage2::tell_lead(opts, 1, e)),
        }
    } else {
        RoundModel::Template(assembled.model.as_ref())
    };
    stage2::follow_rounds(&shared, &built, start)
}
