//! What every model's work in a run shares, and the two things done to
//! each model: training a stage and evaluating it on the grid.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rediff_api::data::{CaptionScorer, Sample};
use rediff_api::error::Result;
use rediff_api::model::ModelBackend;
use rediff_api::schedule::NoiseSchedule;
use rediff_api::synth::ErrorSynthesizer;
use rediff_nn::checkpoint::read_json;
use rediff_report::ExampleSet;
use rediff_sampler::SamplerSettings;

use super::assemble::{Assembled, BuiltStage, EvalSettings, ModelFactory, RunSettings};
use super::prepare::{ImageCache, Prepared};
use super::RunOptions;
use crate::config::StageSettings;
use crate::eval::{encode_batches, EvalItem, EvalRow, EvalRun, SamplerSpec, StepTiming};
use crate::parallel::map_scoped;
use crate::rundir::RunDir;
use crate::train::{StageReport, StageRun, TrainExample, REPORT_FILE};

/// What every model's work shares: the stages' settings, the prepared data
/// and the model factory (never the configuration or the registry).
pub(crate) struct Shared<'a> {
    pub(crate) run: &'a RunSettings,
    pub(crate) eval: &'a EvalSettings,
    pub(crate) dir: RunDir,
    pub(crate) opts: &'a RunOptions,
    pub(crate) schedule: &'a dyn NoiseSchedule,
    pub(crate) samplers: &'a [SamplerSpec],
    /// Training samples, parallel to `examples`.
    pub(crate) train_samples: &'a [Sample],
    pub(crate) examples: &'a [TrainExample],
    pub(crate) items: &'a [EvalItem],
    /// Scores captions; `None`: no evaluation grid.
    pub(crate) scorer: Option<&'a dyn CaptionScorer>,
    pub(crate) models: &'a ModelFactory<'a>,
    pub(crate) multi: Option<&'a MultiProgress>,
    pub(crate) images: Mutex<ImageCache>,
}

impl<'a> Shared<'a> {
    /// The shared state of a run over `prepared` data.
    pub(crate) fn new(
        assembled: &'a Assembled<'a>,
        prepared: &'a Prepared,
        opts: &'a RunOptions,
        multi: Option<&'a MultiProgress>,
    ) -> Self {
        Shared {
            run: &assembled.run,
            eval: &assembled.eval,
            dir: RunDir::new(&opts.out_dir),
            opts,
            schedule: assembled.schedule.as_ref(),
            samplers: &assembled.samplers,
            train_samples: &prepared.train,
            examples: &prepared.examples,
            items: &prepared.items,
            scorer: prepared.scorer.as_deref(),
            models: &assembled.models,
            multi,
            images: Mutex::new(prepared.images.clone()),
        }
    }
}

/// One model's evaluation on the whole grid.
#[derive(Default)]
pub(crate) struct Evaluation {
    pub(crate) rows: Vec<EvalRow>,
    pub(crate) examples: Vec<ExampleSet>,
    pub(crate) timings: Vec<StepTiming>,
    pub(crate) seconds: f64,
}

/// One model with its training report and evaluation.
pub(crate) struct ModelOutcome {
    pub(crate) model: Box<dyn ModelBackend>,
    pub(crate) training: StageReport,
    pub(crate) evaluation: Evaluation,
}

impl Shared<'_> {
    /// A progress bar under the shared multi-bar (hidden without one).
    pub(crate) fn bar(&self, len: u64, template: &str, prefix: &str) -> ProgressBar {
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

    /// Trains model `name` on `examples`, starting from `init`'s weights when
    /// given (or loads it when resuming a finished stage).
    pub(crate) fn train(
        &self,
        name: &str,
        synthesizers: &[Arc<dyn ErrorSynthesizer>],
        settings: &StageSettings,
        examples: &[TrainExample],
        init: Option<&dyn ModelBackend>,
        shards: usize,
    ) -> Result<(Box<dyn ModelBackend>, StageReport)> {
        let (run, opts) = (self.run, self.opts);
        let dirs = self.dir.stage(name);
        let finished = dirs.final_model.join(REPORT_FILE);
        if opts.resume && finished.exists() {
            let model = self.models.load(&dirs.final_model)?;
            tracing::info!(model = %name, "finished earlier; loaded");
            return Ok((model, read_json::<StageReport>(&finished)?));
        }
        let model = self.models.fresh(init)?;
        let report = StageRun {
            name: name.to_string(),
            model: model.as_ref(),
            schedule: self.schedule,
            schedule_spec: Some(&run.schedule),
            synthesizers,
            examples,
            settings: &run.train,
            steps: settings.steps,
            lr: settings.lr.unwrap_or(run.train.lr),
            seed: run.seed,
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
    pub(crate) fn train_and_evaluate(
        &self,
        stage: &BuiltStage,
        init: Option<&dyn ModelBackend>,
        shards: usize,
    ) -> Result<ModelOutcome> {
        let (model, training) = self.train(
            &stage.model_name,
            &stage.synthesizers,
            &stage.settings,
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
    pub(crate) fn evaluate(
        &self,
        name: &str,
        model: &dyn ModelBackend,
        threads: usize,
    ) -> Result<Evaluation> {
        let Some(scorer) = self.scorer else {
            return Ok(Evaluation::default());
        };
        let (run, eval) = (self.run, self.eval);
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
        let contexts = encode_batches(model, self.items, eval.batch_size)?;
        let grid = EvalRun {
            model_name: name,
            model,
            schedule: self.schedule,
            items: self.items,
            contexts: &contexts,
            scorer,
            seed: run.seed,
            examples: eval.examples,
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
                        run.gen_length,
                        eval.block_length,
                        tps,
                        eval.temperature,
                    );
                    let out = grid.run(sampler, s);
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
                e.image = self.dir.relative(Path::new(&e.image)).display().to_string();
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
