//! The pipeline: data -> shared pre-training -> baseline and Stage I (in
//! parallel) -> Stage II rounds -> evaluation of every model -> report,
//! assembled from a [`PipelineConfig`] through the [`Registry`].
//!
//! Run directory layout:
//!
//! ```text
//! <out>/pipeline.toml                 the effective configuration (overrides applied)
//! <out>/data/                         rendered images, tokenizer.json
//! <out>/checkpoints/<model>/latest/   resumable state (weights, optimizer, progress)
//! <out>/models/<model>/               final checkpoints (rediff generate --model)
//! <out>/stage2/round-<r>/             Stage II journals (see crate::stage2;
//!                                     sharded runs: see the shard module)
//! <out>/report.{json,md}, quality_vs_parallelism.png
//! ```

mod evaluate;
mod external;
mod seeds;
mod shard;
mod stage2;

pub use evaluate::{evaluate_run, models_of_run, EvalOptions};
pub use seeds::{aggregate, run_seeds, seed_config, seed_dir, seed_dirs};
pub use shard::{Shard, SliceReport};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::config::{PipelineConfig, StageSettings, TrainStageConfig};
use crate::eval::{encode_batches, EvalItem, EvalRow, EvalRun, SamplerSpec, StepTiming};
use crate::parallel::map_scoped;
use crate::sampler::SamplerSettings;
use crate::train::{StageReport, StageRun, TrainExample, REPORT_FILE};
use rediff_api::data::{CaptionScorer, DataContext, DataSource, Sample, Split};
use rediff_api::error::{Error, Result};
use rediff_api::image::SourceImage;
use rediff_api::model::ModelBackend;
use rediff_api::registry::{BuildContext, LoadOptions, Registry};
use rediff_api::schedule::NoiseSchedule;
use rediff_api::synth::{ErrorSynthesizer, TokenizedSample};
use rediff_api::tokens::pad_response;
use rediff_formats::image::load_image;
use rediff_nn::checkpoint::{copy_varmap, read_json, StageDirs};
use rediff_report::{DataSummary, ExampleSet, Report};

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

/// A training stage with its components built.
pub struct BuiltStage {
    /// Model name in reports (`baseline`, `rediff-base`).
    pub model_name: String,
    /// Budget and specs.
    pub config: TrainStageConfig,
    /// Built synthesizers.
    pub synthesizers: Vec<Arc<dyn ErrorSynthesizer>>,
}

/// Stage II with its components built.
pub struct BuiltStage2 {
    /// Rounds, budgets and specs.
    pub config: crate::config::Stage2Config,
    /// The drafting policy.
    pub sampler: Arc<dyn rediff_api::policy::RefinementPolicy>,
    /// The expert.
    pub expert: Arc<dyn rediff_api::expert::ExpertCorrector>,
    /// Synthesizers for the round's training samples.
    pub synthesizers: Vec<Arc<dyn ErrorSynthesizer>>,
    /// Who trains each round.
    pub trainer: Arc<dyn rediff_api::trainer::Trainer>,
}

/// Every component of a pipeline, built and validated.
pub struct Assembled {
    /// The data source (not yet prepared).
    pub data: Box<dyn DataSource>,
    /// The model, freshly initialised (a template: each stage builds its own).
    pub model: Box<dyn ModelBackend>,
    /// Noise schedule.
    pub schedule: Arc<dyn NoiseSchedule>,
    /// Shared pre-training, if configured.
    pub pretrain: Option<BuiltStage>,
    /// Training stages that yield evaluated models, in order.
    pub stages: Vec<BuiltStage>,
    /// Stage II, if configured.
    pub stage2: Option<BuiltStage2>,
    /// Samplers to evaluate.
    pub samplers: Vec<SamplerSpec>,
    /// The context every component was built with; models built later in
    /// the run (one per stage) are built with it too.
    pub context: BuildContext,
}

/// Builds every component of `cfg`, so any option error surfaces before
/// any work starts.
pub fn assemble(cfg: &PipelineConfig, registry: &Registry) -> Result<Assembled> {
    let ctx = BuildContext::new(cfg.seed)
        .with_base_dir(cfg.base_dir.clone())
        .with_checkpoints(registry.checkpoint_loader());
    let data = registry.build_data(&cfg.data, &ctx)?;
    let ctx = ctx.with_tokenizer(data.tokenizer());
    let model = registry.build_model(&cfg.model, &ctx)?;
    let schedule = registry.build_schedule(&cfg.schedule, &ctx)?;
    let build_stage = |name: &str, stage: &TrainStageConfig| -> Result<BuiltStage> {
        let synthesizers = stage
            .synthesizers
            .iter()
            .map(|s| registry.build_synthesizer(s, &ctx))
            .collect::<Result<Vec<_>>>()?;
        Ok(BuiltStage {
            model_name: name.to_string(),
            config: stage.clone(),
            synthesizers,
        })
    };
    let pretrain = cfg
        .pretrain
        .as_ref()
        .map(|s| build_stage(PRETRAIN, s))
        .transpose()?;
    let mut stages = Vec::new();
    for (name, stage) in [(BASELINE, &cfg.baseline), (REDIFF_BASE, &cfg.stage1)] {
        if let Some(stage) = stage {
            stages.push(build_stage(name, stage)?);
        }
    }
    let stage2 = match &cfg.stage2 {
        Some(s2) => Some(BuiltStage2 {
            config: s2.clone(),
            sampler: registry.build_policy(&s2.sampler, &ctx)?,
            expert: registry.build_expert(&s2.expert, &ctx)?,
            trainer: registry.build_trainer(&s2.trainer, &ctx)?,
            synthesizers: s2
                .synthesizers
                .iter()
                .map(|s| registry.build_synthesizer(s, &ctx))
                .collect::<Result<Vec<_>>>()?,
        }),
        None => None,
    };
    let samplers = cfg
        .eval
        .samplers
        .iter()
        .map(|s| {
            Ok(SamplerSpec {
                name: s.name.clone(),
                kind: s.policy.kind().to_string(),
                policy: registry.build_policy(&s.policy, &ctx)?,
                tokens_per_step: s.tokens_per_step(&cfg.eval).to_vec(),
                max_block_steps: s.max_block_steps,
                cache: s.cache,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Assembled {
        data,
        model,
        schedule,
        pretrain,
        stages,
        stage2,
        samplers,
        context: ctx,
    })
}

/// Decoded images shared between samples that use the same file.
#[derive(Default)]
struct ImageCache {
    images: HashMap<PathBuf, Arc<SourceImage>>,
}

impl ImageCache {
    fn get(&mut self, path: &Path) -> Result<Arc<SourceImage>> {
        if let Some(img) = self.images.get(path) {
            return Ok(img.clone());
        }
        let img = Arc::new(load_image(path)?);
        self.images.insert(path.to_path_buf(), img.clone());
        Ok(img)
    }
}

/// Tokenizes a sample's answer into a fixed-length response.
pub fn tokenize_sample(
    model: &dyn ModelBackend,
    sample: &Sample,
    gen_length: usize,
) -> Result<TokenizedSample> {
    let ids = model.tokenizer().encode(&sample.answer)?;
    let response = pad_response(&ids, model.special_tokens().eot, gen_length)
        .map_err(|e| Error::invalid(format!("sample {}: {e}", sample.id)))?;
    Ok(TokenizedSample {
        response,
        prompt: model.prompt_ids(&sample.question)?,
        answer_len: ids.len(),
        answer: sample.answer.clone(),
        revise: sample.revise.clone(),
    })
}

fn spinner(progress: bool, message: &str) -> ProgressBar {
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
        .prepare(&DataContext::new(out.join("data"), cfg.seed))?;
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

/// The run directory's copy of the effective configuration.
pub const PIPELINE_FILE: &str = "pipeline.toml";
/// Where `--resume --accept-changes` records what changed.
pub const CHANGES_FILE: &str = "config-changes.log";

/// Writes the effective configuration into the run directory; with
/// `--resume`, first checks it equals the one the run was started with
/// (a resumed run with other settings would mix two experiments).
fn record_configuration(cfg: &PipelineConfig, opts: &RunOptions) -> Result<()> {
    let path = opts.out_dir.join(PIPELINE_FILE);
    if opts.resume && path.exists() {
        let before = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let changes = crate::config::effective::differences(&before, &cfg.source.text)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
        if !changes.is_empty() && opts.accept_changes {
            tracing::warn!(
                "resuming with a changed configuration (--accept-changes): {}",
                changes.join("; ")
            );
            let log = opts.out_dir.join(CHANGES_FILE);
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

    let mut assembled = assemble(cfg, registry)?;
    if opts.shard.is_sharded() && assembled.stage2.is_none() {
        return Err(Error::invalid(
            "--shard splits Stage II drafting over processes; the pipeline has no [stage2]",
        ));
    }
    let prepared = prepare_data(cfg, &mut assembled, opts)?;
    let template = assembled.model.as_ref();
    let multi = opts.progress.then(MultiProgress::new);
    let shared = prepared.shared(cfg, registry, opts, &assembled, multi.as_ref());
    let Prepared {
        train,
        examples,
        items,
        scorer,
        data_seconds,
        ..
    } = &prepared;
    let (examples, items, data_seconds) = (examples.as_slice(), items.as_slice(), *data_seconds);

    // Training and evaluation, one model per stage.
    let mut pretrain_report = None;
    let mut init = None;
    if let Some(stage) = &assembled.pretrain {
        // Trains alone: split its batches over data-parallel shards.
        let (model, report) = shared.train(
            &stage.model_name,
            &stage.synthesizers,
            &stage.config.settings,
            examples,
            None,
            cfg.train.data_parallel.max(1),
        )?;
        pretrain_report = Some(report);
        init = Some(model);
    }
    let init = init.as_deref();
    let concurrent = cfg.train.concurrent_stages && assembled.stages.len() > 1;
    let outcomes: Vec<Result<ModelOutcome>> = if concurrent {
        // Concurrent stages already use every core between them: one shard each.
        map_scoped(&assembled.stages, |stage| {
            shared.train_and_evaluate(stage, init, 1)
        })
    } else {
        let shards = cfg.train.data_parallel.max(1);
        assembled
            .stages
            .iter()
            .map(|stage| shared.train_and_evaluate(stage, init, shards))
            .collect()
    };
    let mut report = Report {
        pipeline: cfg.source.name.clone(),
        seed: cfg.seed,
        gen_length: cfg.gen_length,
        data: DataSummary {
            train_clean: train.iter().filter(|s| s.revise.is_empty()).count(),
            train_pairs: train.iter().filter(|s| !s.revise.is_empty()).count(),
            eval: items.len(),
        },
        metrics: scorer.as_ref().map(|s| s.metrics()).unwrap_or_default(),
        interval: crate::eval::bootstrap_description(items.len()),
        ..Default::default()
    };
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
        let start = match stage1_model {
            Some(model) => stage2::RoundModel::Owned(model),
            // An external trainer without [stage1]: Stage II starts from
            // [model] as configured (a published checkpoint, say), saved
            // where the first round's trainer reads its input.
            None if !built.trainer.in_process() => {
                let dir = StageDirs::new(&opts.out_dir, REDIFF_BASE).final_model;
                if !dir.join("config.json").is_file() {
                    rediff_nn::checkpoint::write_dir_atomically(&dir, |d| template.save(d))?;
                }
                stage2::RoundModel::Template(template)
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
    let t = &mut report.timings;
    t.eval_seconds += eval_seconds;
    t.data_seconds = data_seconds;
    for s in &report.training {
        t.training_seconds.insert(s.name.clone(), s.seconds);
        t.train_steps_per_second
            .insert(s.name.clone(), s.steps_per_second);
    }
    t.max_sampler_share = t.largest_sampler_share();
    t.total_seconds = started.elapsed().as_secs_f64();
    report.test_comparisons(&cfg.eval.compare);
    report.write(out)?;
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

/// The prepared data every stage shares.
struct Prepared {
    train: Vec<Sample>,
    /// Training samples as the models see them, parallel to `train`.
    examples: Vec<TrainExample>,
    items: Vec<EvalItem>,
    scorer: Option<Arc<dyn CaptionScorer>>,
    images: ImageCache,
    data_seconds: f64,
}

/// Prepares the data source in `<out>/data` and tokenizes every sample.
fn prepare_data(
    cfg: &PipelineConfig,
    assembled: &mut Assembled,
    opts: &RunOptions,
) -> Result<Prepared> {
    let bar = spinner(opts.progress, "preparing data");
    let started = Instant::now();
    assembled
        .data
        .prepare(&DataContext::new(opts.out_dir.join("data"), cfg.seed))?;
    // Preparing may define the vocabulary (a tokenizer written with the
    // data): the models every stage builds use the prepared one.
    if let Some(tokenizer) = assembled.data.tokenizer() {
        assembled.context.tokenizer = Some(tokenizer);
    }
    let train = assembled.data.samples(Split::Train)?;
    let mut eval = assembled.data.samples(Split::Eval)?;
    eval.truncate(cfg.eval.samples);
    // Without ground truth (real captions) the models are trained and saved;
    // score them with an external benchmark from `rediff generate --images`.
    let scorer = assembled.data.scorer();
    if scorer.is_none() && opts.shard.is_lead() {
        tracing::warn!("the data source has no caption scorer: models are trained, not evaluated");
    }
    let template = assembled.model.as_ref();
    let mut images = ImageCache::default();
    let mut examples = Vec::with_capacity(train.len());
    for s in &train {
        examples.push(TrainExample {
            image: images.get(&s.image)?,
            prompt: template.prompt_ids(&s.question)?,
            tokens: tokenize_sample(template, s, cfg.gen_length)?,
        });
    }
    let items = eval_items(template, &eval, &mut images)?;
    bar.finish_and_clear();
    Ok(Prepared {
        train,
        examples,
        items,
        scorer,
        images,
        data_seconds: started.elapsed().as_secs_f64(),
    })
}

impl Prepared {
    /// What every model's work shares (the image cache moves into it).
    fn shared<'a>(
        &'a self,
        cfg: &'a PipelineConfig,
        registry: &'a Registry,
        opts: &'a RunOptions,
        assembled: &'a Assembled,
        multi: Option<&'a MultiProgress>,
    ) -> Shared<'a> {
        Shared {
            cfg,
            registry,
            opts,
            schedule: assembled.schedule.as_ref(),
            samplers: &assembled.samplers,
            train_samples: &self.train,
            examples: &self.examples,
            items: &self.items,
            scorer: self.scorer.as_deref(),
            context: &assembled.context,
            load: assembled.model.load_options(),
            multi,
            images: std::sync::Mutex::new(ImageCache {
                images: self.images.images.clone(),
            }),
        }
    }
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
    let out = &opts.out_dir;
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
    let recorded = out.join(PIPELINE_FILE);
    bar.set_message(format!(
        "shard {}: waiting for shard 0 to start in {}",
        opts.shard,
        out.display()
    ));
    let text = shard::wait_for(&opts.interrupt, &bar, || {
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
    let stage1 = StageDirs::new(out, REDIFF_BASE).final_model;
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
    shard::wait_for(&opts.interrupt, &bar, || Ok(ready.exists().then_some(())))?;
    bar.finish_and_clear();
    let prepared = match prepare_data(cfg, &mut assembled, opts) {
        Ok(p) => p,
        Err(e) => return Err(stage2::tell_lead(opts, 1, e)),
    };
    let multi = opts.progress.then(MultiProgress::new);
    let shared = prepared.shared(cfg, registry, opts, &assembled, multi.as_ref());
    let start = if cfg.stage1.is_some() {
        match shared.load_model(&stage1) {
            Ok(model) => stage2::RoundModel::Owned(model),
            Err(e) => return Err(stage2::tell_lead(opts, 1, e)),
        }
    } else {
        stage2::RoundModel::Template(assembled.model.as_ref())
    };
    stage2::follow_rounds(&shared, &built, start)
}

/// The held-out samples as the models see them: image and prompt ids.
fn eval_items(
    template: &dyn ModelBackend,
    eval: &[Sample],
    images: &mut ImageCache,
) -> Result<Vec<EvalItem>> {
    eval.iter()
        .map(|s| {
            Ok(EvalItem {
                sample: s.clone(),
                image: images.get(&s.image)?,
                prompt: template.prompt_ids(&s.question)?,
            })
        })
        .collect()
}

/// What every model's work shares.
struct Shared<'a> {
    cfg: &'a PipelineConfig,
    registry: &'a Registry,
    opts: &'a RunOptions,
    schedule: &'a dyn NoiseSchedule,
    samplers: &'a [SamplerSpec],
    /// Training samples, parallel to `examples`.
    train_samples: &'a [Sample],
    examples: &'a [TrainExample],
    items: &'a [EvalItem],
    /// Scores captions; `None`: no evaluation grid.
    scorer: Option<&'a dyn CaptionScorer>,
    /// The context of [`assemble`], for the models each stage builds.
    context: &'a BuildContext,
    /// How trained checkpoints are loaded: like the `[model]`.
    load: LoadOptions,
    multi: Option<&'a MultiProgress>,
    images: std::sync::Mutex<ImageCache>,
}

/// One model's evaluation on the whole grid.
#[derive(Default)]
struct Evaluation {
    rows: Vec<EvalRow>,
    examples: Vec<ExampleSet>,
    timings: Vec<StepTiming>,
    seconds: f64,
}

/// One model with its training report and evaluation.
struct ModelOutcome {
    model: Box<dyn ModelBackend>,
    training: StageReport,
    evaluation: Evaluation,
}

impl Shared<'_> {
    /// A progress bar under the shared multi-bar (hidden without one).
    fn bar(&self, len: u64, template: &str, prefix: &str) -> ProgressBar {
        match self.multi {
            Some(m) => {
                let b = m.add(ProgressBar::new(len));
                b.set_style(
                    ProgressStyle::with_template(template)
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                b.set_prefix(prefix.to_string());
                b
            }
            None => ProgressBar::hidden(),
        }
    }

    /// Loads a checkpoint this run wrote, on the `[model]`'s device and
    /// precision.
    fn load_model(&self, dir: &Path) -> Result<Box<dyn ModelBackend>> {
        self.registry.load_model(dir, &self.load)
    }

    /// A fresh model, with `init`'s weights when given.
    fn fresh_model(&self, init: Option<&dyn ModelBackend>) -> Result<Box<dyn ModelBackend>> {
        let model = self.registry.build_model(&self.cfg.model, self.context)?;
        if let Some(init) = init {
            let (Some(from), Some(to)) = (init.varmap(), model.varmap()) else {
                return Err(Error::invalid("continued training needs a trainable model"));
            };
            copy_varmap(from, to)?;
        }
        Ok(model)
    }

    /// Trains model `name` on `examples`, starting from `init`'s weights when
    /// given (or loads it when resuming a finished stage).
    fn train(
        &self,
        name: &str,
        synthesizers: &[Arc<dyn ErrorSynthesizer>],
        settings: &StageSettings,
        examples: &[TrainExample],
        init: Option<&dyn ModelBackend>,
        shards: usize,
    ) -> Result<(Box<dyn ModelBackend>, StageReport)> {
        let (cfg, opts) = (self.cfg, self.opts);
        let dirs = StageDirs::new(&opts.out_dir, name);
        let finished = dirs.final_model.join(REPORT_FILE);
        if opts.resume && finished.exists() {
            let model = self.load_model(&dirs.final_model)?;
            tracing::info!(model = %name, "finished earlier; loaded");
            return Ok((model, read_json::<StageReport>(&finished)?));
        }
        let model = self.fresh_model(init)?;
        let report = StageRun {
            name: name.to_string(),
            model: model.as_ref(),
            schedule: self.schedule,
            schedule_spec: Some(&cfg.schedule),
            synthesizers,
            examples,
            settings: &cfg.train,
            steps: settings.steps,
            lr: settings.lr.unwrap_or(cfg.train.lr),
            seed: cfg.seed,
            dirs,
            resume: opts.resume,
            progress: self.multi.cloned(),
            interrupt: &opts.interrupt,
            shards,
        }
        .run()?;
        Ok((model, report))
    }

    /// Trains the stage's model, then evaluates it on the whole grid.
    fn train_and_evaluate(
        &self,
        stage: &BuiltStage,
        init: Option<&dyn ModelBackend>,
        shards: usize,
    ) -> Result<ModelOutcome> {
        let (model, training) = self.train(
            &stage.model_name,
            &stage.synthesizers,
            &stage.config.settings,
            self.examples,
            init,
            shards,
        )?;
        let evaluation = self.evaluate(&stage.model_name, model.as_ref(), 1)?;
        Ok(ModelOutcome {
            model,
            training,
            evaluation,
        })
    }

    /// Evaluates `model` on every sampler x tokens-per-step setting, the
    /// settings spread over `threads` threads.
    fn evaluate(&self, name: &str, model: &dyn ModelBackend, threads: usize) -> Result<Evaluation> {
        let cfg = self.cfg;
        let Some(scorer) = self.scorer else {
            return Ok(Evaluation::default());
        };
        let started = Instant::now();
        let settings: Vec<(&SamplerSpec, usize)> = self
            .samplers
            .iter()
            .flat_map(|s| s.tokens_per_step.iter().map(move |&t| (s, t)))
            .collect();
        let bar = self.bar(
            settings.len() as u64,
            "{prefix:>11} eval [{bar:25}] {pos}/{len} {msg}",
            name,
        );
        let contexts = encode_batches(model, self.items, cfg.eval.batch_size)?;
        let run = EvalRun {
            model_name: name,
            model,
            schedule: self.schedule,
            items: self.items,
            contexts: &contexts,
            scorer,
            seed: cfg.seed,
            examples: cfg.eval.examples,
        };
        let threads = threads.clamp(1, settings.len().max(1));
        let groups: Vec<Vec<usize>> = (0..threads)
            .map(|k| (k..settings.len()).step_by(threads).collect())
            .collect();
        let results = map_scoped(&groups, |group| {
            group
                .iter()
                .map(|&i| {
                    let (sampler, tps) = settings[i];
                    bar.set_message(format!("{} {tps} tok/step", sampler.name));
                    let s = SamplerSettings::for_tokens_per_step(
                        cfg.gen_length,
                        cfg.eval.block_length,
                        tps,
                        cfg.eval.temperature,
                    );
                    let out = run.run(sampler, s);
                    bar.inc(1);
                    out.map(|o| (i, o))
                })
                .collect::<Result<Vec<_>>>()
        });
        let mut done = Vec::with_capacity(settings.len());
        for r in results {
            done.extend(r?);
        }
        done.sort_by_key(|(i, _)| *i);
        let mut out = Evaluation::default();
        for (i, (row, mut examples, timing)) in done {
            let (sampler, tps) = settings[i];
            for e in &mut examples {
                // Paths relative to the run directory keep reports portable.
                if let Ok(rel) = Path::new(&e.image).strip_prefix(&self.opts.out_dir) {
                    e.image = rel.display().to_string();
                }
            }
            out.rows.push(row);
            out.examples.push(ExampleSet {
                model: name.to_string(),
                sampler: sampler.name.clone(),
                tokens_per_step: tps,
                examples,
            });
            out.timings.push(timing);
        }
        bar.finish_and_clear();
        out.seconds = started.elapsed().as_secs_f64();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "seed = 3\ngen_length = 8\n[data]\nkind = \"shapes\"\n[model]\nkind = \"tiny-vlm\"\n[schedule]\nkind = \"linear\"\n[eval]\nsamples = 4\ntokens_per_step = [1, 8]\nsamplers = [{ name = \"denoise\", policy = { kind = \"none\" } }]\n";

    fn options(dir: &Path, resume: bool, accept_changes: bool) -> RunOptions {
        RunOptions {
            out_dir: dir.to_path_buf(),
            resume,
            retry_all: false,
            accept_changes,
            progress: false,
            interrupt: Arc::default(),
            shard: Shard::SINGLE,
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
