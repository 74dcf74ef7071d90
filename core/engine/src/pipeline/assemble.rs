//! Assembly: every component a pipeline names, built from the
//! [`Registry`] before any work starts, and the settings each stage needs,
//! taken from the configuration once. Stages get these, never the whole
//! configuration or the registry.

use std::path::Path;
use std::sync::Arc;

use rediff_api::data::{CaptionScorer, DataSource};
use rediff_api::error::{Error, Result};
use rediff_api::expert::ExpertCorrector;
use rediff_api::model::ModelBackend;
use rediff_api::policy::RefinementPolicy;
use rediff_api::registry::{BuildContext, LoadOptions, Registry};
use rediff_api::schedule::NoiseSchedule;
use rediff_api::synth::ErrorSynthesizer;
use rediff_api::trainer::Trainer;
use rediff_api::ComponentSpec;
use rediff_nn::checkpoint::copy_varmap;
use rediff_report::compare::Comparison;

use super::{BASELINE, PRETRAIN, REDIFF_BASE};
use crate::config::{PipelineConfig, Stage2Config, StageSettings, TrainSettings};
use crate::eval::SamplerSpec;

/// A training stage with its components built.
pub struct BuiltStage {
    /// Model name in reports (`baseline`, `rediff-base`).
    pub model_name: String,
    /// Budget.
    pub settings: StageSettings,
    /// Built synthesizers.
    pub synthesizers: Vec<Arc<dyn ErrorSynthesizer>>,
}

/// Stage II with its components built.
pub struct BuiltStage2 {
    /// Rounds, budgets and specs (`block_length` resolved).
    pub config: Stage2Config,
    /// The drafting policy.
    pub sampler: Arc<dyn RefinementPolicy>,
    /// The expert.
    pub expert: Arc<dyn ExpertCorrector>,
    /// Synthesizers for the round's training samples.
    pub synthesizers: Vec<Arc<dyn ErrorSynthesizer>>,
    /// Who trains each round.
    pub trainer: Arc<dyn Trainer>,
}

/// What every stage of one run shares.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The pipeline's name (its file) in reports.
    pub pipeline: String,
    /// Master seed.
    pub seed: u64,
    /// Response length `L`.
    pub gen_length: usize,
    /// Optimiser settings of every training stage.
    pub train: TrainSettings,
    /// The noise schedule's spec, recorded with every trained model.
    pub schedule: ComponentSpec,
}

/// The evaluation grid's settings.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    /// Held-out samples scored per setting.
    pub samples: usize,
    /// Block length of the evaluated samplers.
    pub block_length: usize,
    /// Gumbel temperature.
    pub temperature: f64,
    /// Prompts per forward pass.
    pub batch_size: usize,
    /// Example captions per setting in `report.md`.
    pub examples: usize,
    /// Comparisons the report tests.
    pub compare: Vec<Comparison>,
}

/// Builds fresh models of the pipeline's `[model]` and loads the
/// checkpoints a run writes, on the `[model]`'s device and precision.
pub struct ModelFactory<'r> {
    registry: &'r Registry,
    spec: ComponentSpec,
    context: BuildContext,
    load: LoadOptions,
}

impl ModelFactory<'_> {
    /// A fresh model, with `init`'s weights when given.
    pub fn fresh(&self, init: Option<&dyn ModelBackend>) -> Result<Box<dyn ModelBackend>> {
        let model = self.registry.build_model(&self.spec, &self.context)?;
        if let Some(init) = init {
            let (Some(from), Some(to)) = (init.varmap(), model.varmap()) else {
                return Err(Error::invalid("continued training needs a trainable model"));
            };
            copy_varmap(from, to)?;
        }
        Ok(model)
    }

    /// Loads a checkpoint directory this run wrote.
    pub fn load(&self, dir: &Path) -> Result<Box<dyn ModelBackend>> {
        self.registry.load_model(dir, &self.load)
    }

    /// Models built from now on use the vocabulary the prepared data defines.
    pub fn set_tokenizer(&mut self, tokenizer: Option<rediff_api::TextTokenizer>) {
        if tokenizer.is_some() {
            self.context.tokenizer = tokenizer;
        }
    }
}

/// Every component of a pipeline, built and validated, with the settings
/// of each stage.
pub struct Assembled<'r> {
    /// The data source (not yet prepared).
    pub data: Box<dyn DataSource>,
    /// The model, freshly initialised (a template: each stage builds its own).
    pub model: Box<dyn ModelBackend>,
    /// Builds and loads the models of each stage.
    pub models: ModelFactory<'r>,
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
    /// Scorers of `[eval] scorers` (the data source's own scorer comes with
    /// the prepared data).
    pub scorers: Vec<Arc<dyn CaptionScorer>>,
    /// What every stage shares.
    pub run: RunSettings,
    /// The evaluation grid's settings.
    pub eval: EvalSettings,
}

/// Builds every component of `cfg`, so any option error surfaces before
/// any work starts (nothing runs: components that keep files get no
/// output directory, as in `rediff check`).
pub fn assemble<'r>(cfg: &PipelineConfig, registry: &'r Registry) -> Result<Assembled<'r>> {
    assemble_in(cfg, registry, None)
}

/// [`assemble`] for a run or evaluation writing to `out_dir`, where
/// components keep their own files (a judge's call cache).
pub fn assemble_in<'r>(
    cfg: &PipelineConfig,
    registry: &'r Registry,
    out_dir: Option<&Path>,
) -> Result<Assembled<'r>> {
    let ctx = BuildContext::new(cfg.seed)
        .with_base_dir(cfg.base_dir.clone())
        .with_out_dir(out_dir.map(|d| d.to_path_buf()))
        .with_checkpoints(registry.checkpoint_loader());
    let data = registry.build_data(&cfg.data, &ctx)?;
    let ctx = ctx.with_tokenizer(data.tokenizer());
    let model = registry.build_model(&cfg.model, &ctx)?;
    let schedule = registry.build_schedule(&cfg.schedule, &ctx)?;
    let synthesizers = |specs: &[ComponentSpec]| -> Result<Vec<Arc<dyn ErrorSynthesizer>>> {
        specs
            .iter()
            .map(|s| registry.build_synthesizer(s, &ctx))
            .collect()
    };
    let build_stage = |name: &str, stage: &crate::config::TrainStageConfig| {
        Ok::<_, Error>(BuiltStage {
            model_name: name.to_string(),
            settings: stage.settings.clone(),
            synthesizers: synthesizers(&stage.synthesizers)?,
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
            synthesizers: synthesizers(&s2.synthesizers)?,
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
    let scorers = cfg
        .eval
        .scorers
        .iter()
        .map(|s| registry.build_scorer(s, &ctx))
        .collect::<Result<Vec<_>>>()?;
    let models = ModelFactory {
        registry,
        spec: cfg.model.clone(),
        load: model.load_options(),
        context: ctx,
    };
    let e = &cfg.eval;
    Ok(Assembled {
        data,
        model,
        models,
        schedule,
        pretrain,
        stages,
        stage2,
        samplers,
        scorers,
        run: RunSettings {
            pipeline: cfg.source.name.clone(),
            seed: cfg.seed,
            gen_length: cfg.gen_length,
            train: cfg.train.clone(),
            schedule: cfg.schedule.clone(),
        },
        eval: EvalSettings {
            samples: e.samples,
            block_length: e.block_length,
            temperature: e.temperature,
            batch_size: e.batch_size,
            examples: e.examples,
            compare: e.compare.clone(),
        },
    })
}
