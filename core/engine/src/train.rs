//! The training loop shared by the baseline, Stage I and (later) Stage II:
//! seeded batches of synthesizer-corrupted samples, the weighted loss, AdamW
//! with warm-up + cosine decay and gradient clipping, periodic resumable
//! checkpoints and a progress bar.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::Tensor;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rand::Rng as _;
use rediff_api::image::SourceImage;

use crate::config::TrainSettings;
use crate::ema::Ema;
use crate::optim::{lr_at, AdamW, AdamWConfig};
use crate::parallel::map_scoped;
use crate::rundir::StageDirs;
use rediff_api::error::{Error, Result};
use rediff_api::model::{ModelBackend, Prompt};
use rediff_api::schedule::NoiseSchedule;
use rediff_api::synth::{ErrorSynthesizer, GroupRole, SkipReason, SynthContext, TokenizedSample};
use rediff_nn::checkpoint::{
    load_varmap, read_json, read_safetensors, save_varmap, write_dir_atomically, write_json,
    write_safetensors, TrainerState, OPTIMIZER_FILE, STATE_FILE,
};
use rediff_nn::loss::weighted_loss;
use rediff_nn::rng;

/// The weight average in a stage's `latest/` checkpoint (with `[train].ema`).
pub const EMA_FILE: &str = "ema.safetensors";

/// One training example: image, prompt ids and the tokenized answer.
#[derive(Debug, Clone)]
pub struct TrainExample {
    /// Decoded image.
    pub image: Arc<SourceImage>,
    /// Prompt ids from the backend's template.
    pub prompt: Vec<u32>,
    /// Tokenized response.
    pub tokens: TokenizedSample,
}

/// A training stage to run.
pub struct StageRun<'a> {
    /// Stage name (`baseline`, `stage1`, ...).
    pub name: String,
    /// The model to train in place.
    pub model: &'a dyn ModelBackend,
    /// Gives the mask probability for each sampled `t`.
    pub schedule: &'a dyn NoiseSchedule,
    /// The schedule's configuration, saved with the final model as
    /// [`SCHEDULE_FILE`] so `rediff generate` samples with it.
    pub schedule_spec: Option<&'a rediff_api::ComponentSpec>,
    /// Synthesizers, asked in order.
    pub synthesizers: &'a [Arc<dyn ErrorSynthesizer>],
    /// The examples to draw batches from.
    pub examples: &'a [TrainExample],
    /// Optimiser settings.
    pub settings: &'a TrainSettings,
    /// Steps to run.
    pub steps: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Pipeline seed.
    pub seed: u64,
    /// Where checkpoints go.
    pub dirs: StageDirs,
    /// Continue from `dirs.latest` if present.
    pub resume: bool,
    /// Where to draw the progress bar (`None`: no bar).
    pub progress: Option<MultiProgress>,
    /// Set by Ctrl-C: save and stop.
    pub interrupt: &'a AtomicBool,
    /// Data-parallel shards per batch (1: one thread).
    pub shards: usize,
}

pub use rediff_report::StageReport;

/// File a final model directory carries with the noise schedule it was
/// trained with (`kind = "..."` plus options).
pub const SCHEDULE_FILE: &str = "schedule.toml";

/// Writes `spec` as [`SCHEDULE_FILE`] into the model directory `dir`.
pub fn write_schedule(dir: &std::path::Path, spec: &rediff_api::ComponentSpec) -> Result<()> {
    let path = dir.join(SCHEDULE_FILE);
    let text = toml::to_string(&spec.to_toml_value())
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

/// File the final model directory carries with its [`StageReport`].
pub const REPORT_FILE: &str = "training.json";

/// One training batch: prompts, and per response position the input token,
/// the label and the loss weight, row-major `[batch, L]`.
#[derive(Debug, Clone)]
pub struct TrainBatch {
    /// Encoded once per shard.
    pub prompts: Vec<Prompt>,
    /// Corrupted responses fed to the model.
    pub input: Vec<u32>,
    /// Clean responses (the targets).
    pub labels: Vec<u32>,
    /// Per-position loss weights (see [`rediff_nn::loss`]).
    pub weights: Vec<f32>,
}

/// The batch loss and its gradients. With `shards > 1` the batch is split
/// into that many contiguous shards, each forward and backward pass runs on
/// its own thread, and the gradients are summed in shard order (so the
/// result does not depend on thread timing).
pub fn loss_and_grads(
    model: &dyn ModelBackend,
    batch: &TrainBatch,
    shards: usize,
) -> Result<(f32, GradStore)> {
    let n = batch.prompts.len();
    let l = batch.input.len() / n.max(1);
    let device = model.device();
    let shards = shards.clamp(1, n);
    let bounds: Vec<(usize, usize)> = (0..shards)
        .map(|k| (k * n / shards, (k + 1) * n / shards))
        .collect();
    let shard = |(a, b): (usize, usize)| -> Result<(f32, GradStore)> {
        let m = b - a;
        let input = Tensor::from_vec(batch.input[a * l..b * l].to_vec(), (m, l), device)?;
        let labels = Tensor::from_vec(batch.labels[a * l..b * l].to_vec(), (m, l), device)?;
        let weights = Tensor::from_vec(batch.weights[a * l..b * l].to_vec(), (m, l), device)?;
        let context = model.encode_prompts(&batch.prompts[a..b])?;
        let logits = model.forward(&context, &input)?;
        // Each shard's mean, weighted by its share: the sum is the batch mean.
        let loss = (weighted_loss(&logits, &labels, &weights)? * (m as f64 / n as f64))?;
        Ok((loss.to_scalar::<f32>()?, loss.backward()?))
    };
    let mut results = map_scoped(&bounds, |&bound| shard(bound));
    let (mut loss, mut grads) = results.remove(0)?;
    let varmap = model
        .varmap()
        .ok_or_else(|| Error::invalid("model has no trainable variables"))?;
    let vars = varmap.all_vars();
    for result in results {
        let (shard_loss, shard_grads) = result?;
        loss += shard_loss;
        for var in &vars {
            let t = var.as_tensor();
            if let Some(g) = shard_grads.get(t) {
                let sum = match grads.get(t) {
                    Some(acc) => (acc + g)?,
                    None => g.clone(),
                };
                grads.insert(t, sum);
            }
        }
    }
    Ok((loss, grads))
}

impl StageRun<'_> {
    fn eligible(&self) -> Vec<usize> {
        (0..self.examples.len())
            .filter(|&i| {
                self.synthesizers
                    .iter()
                    .any(|s| s.accepts(&self.examples[i].tokens))
            })
            .collect()
    }

    /// The batch optimiser step `step` trains on (a pure function of the
    /// seed, the stage name and the step), for inspection.
    pub fn batch_at(&self, step: usize) -> Result<TrainBatch> {
        let mut report = StageReport::default();
        self.make_batch(step, &self.eligible(), &mut report)
    }

    fn make_batch(
        &self,
        step: usize,
        eligible: &[usize],
        report: &mut StageReport,
    ) -> Result<TrainBatch> {
        let mut rng = rng::stream(self.seed, &format!("{}/batch", self.name), step as u64);
        let special = self.model.special_tokens();
        let ctx = SynthContext::new(self.model.vocab_size(), special, self.model.tokenizer());
        let b = self.settings.batch_size;
        let mut batch = TrainBatch {
            prompts: Vec::with_capacity(b),
            input: Vec::new(),
            labels: Vec::new(),
            weights: Vec::new(),
        };
        let mut attempts = 0usize;
        while batch.prompts.len() < b {
            attempts += 1;
            if attempts > 100 * b {
                return Err(Error::invalid(format!(
                    "stage {}: synthesizers dropped almost every sample; check the data's revise pairs",
                    self.name
                )));
            }
            let ex = &self.examples[eligible[rng.random_range(0..eligible.len())]];
            let Some((si, synth)) = self
                .synthesizers
                .iter()
                .enumerate()
                .find(|(_, s)| s.accepts(&ex.tokens))
            else {
                continue;
            };
            let u: f32 = rng.random();
            let t = self.settings.t_sampling.time(u, batch.prompts.len(), b);
            let p = self.schedule.mask_probability(t);
            let corruption = synth.corrupt(&ex.tokens, p, &ctx, &mut rng)?;
            for reason in &corruption.dropped {
                *report.dropped.entry(skip_name(reason)).or_default() += 1;
            }
            let Some(sample) = corruption.sample else {
                continue;
            };
            *report.synthesized.entry(si.to_string()).or_default() += 1;
            for g in &sample.groups {
                *report.group_positions.entry(role_name(g.role)).or_default() += g.positions.len();
            }
            batch.weights.extend(sample.weight_row());
            batch.input.extend_from_slice(&sample.input);
            batch.labels.extend_from_slice(&sample.labels);
            batch.prompts.push(Prompt {
                image: Some(ex.image.clone()),
                ids: ex.prompt.clone(),
            });
        }
        Ok(batch)
    }

    fn save_latest(
        &self,
        opt: &AdamW,
        ema: Option<&Ema>,
        state: &mut TrainerState,
        report: &StageReport,
    ) -> Result<()> {
        state.synthesized = report.synthesized.clone();
        state.group_positions = report.group_positions.clone();
        state.dropped = report.dropped.clone();
        let varmap = self
            .model
            .varmap()
            .ok_or_else(|| Error::invalid("model has no trainable variables"))?;
        write_dir_atomically(&self.dirs.latest, |dir| {
            save_varmap(varmap, &dir.join("weights.safetensors"))?;
            write_safetensors(&dir.join(OPTIMIZER_FILE), &opt.state())?;
            if let Some(ema) = ema {
                write_safetensors(&dir.join(EMA_FILE), &ema.state())?;
            }
            write_json(&dir.join(STATE_FILE), &*state)
        })
    }

    /// Runs the stage to completion (or until interrupted), then writes the
    /// final model to `dirs.final_model` with its [`StageReport`].
    pub fn run(&self) -> Result<StageReport> {
        let varmap = self.model.varmap().ok_or_else(|| {
            Error::invalid(format!(
                "the `{}` model is frozen (loaded for inference only), so it cannot be trained; \
                 use it to draft, evaluate or as a `model` expert",
                self.model.kind()
            ))
        })?;
        let eligible = self.eligible();
        self.model.set_training(true);
        let _restore = RestoreInference(self.model);
        if eligible.is_empty() {
            return Err(Error::invalid(format!(
                "stage {}: no training sample is accepted by any configured synthesizer",
                self.name
            )));
        }
        let s = self.settings;
        let mut opt = AdamW::new(
            varmap,
            AdamWConfig {
                beta1: s.beta1,
                beta2: s.beta2,
                eps: 1e-8,
                weight_decay: s.weight_decay,
            },
        )?;
        let mut ema = (s.ema > 0.0).then(|| Ema::new(varmap, s.ema)).transpose()?;
        let mut state = TrainerState {
            stage: self.name.clone(),
            step: 0,
            total_steps: self.steps,
            seed: self.seed,
            losses: Vec::new(),
            seconds: 0.0,
            pending_loss: (0.0, 0),
            synthesized: BTreeMap::new(),
            group_positions: BTreeMap::new(),
            dropped: BTreeMap::new(),
        };
        if self.resume && self.dirs.latest.join(STATE_FILE).exists() {
            let saved: TrainerState = read_json(&self.dirs.latest.join(STATE_FILE))?;
            if saved.seed != self.seed || saved.total_steps != self.steps {
                return Err(Error::invalid(format!(
                    "cannot resume stage {}: checkpoint was made with seed {} and {} steps, the pipeline now says seed {} and {} steps",
                    self.name, saved.seed, saved.total_steps, self.seed, self.steps
                )));
            }
            load_varmap(varmap, &self.dirs.latest.join("weights.safetensors"))?;
            let opt_state =
                read_safetensors(&self.dirs.latest.join(OPTIMIZER_FILE), self.model.device())?;
            opt.load_state(&opt_state, saved.step)?;
            if let Some(ema) = &mut ema {
                let path = self.dirs.latest.join(EMA_FILE);
                if !path.exists() {
                    return Err(Error::invalid(format!(
                        "cannot resume stage {} with `ema`: its checkpoint {} was saved without a weight average",
                        self.name,
                        self.dirs.latest.display()
                    )));
                }
                ema.load_state(&read_safetensors(&path, self.model.device())?)?;
            }
            tracing::info!(stage = %self.name, step = saved.step, "resuming");
            state = saved;
        }
        let mut report = StageReport {
            name: self.name.clone(),
            synthesized: state.synthesized.clone(),
            group_positions: state.group_positions.clone(),
            dropped: state.dropped.clone(),
            ..Default::default()
        };
        let bar = if let Some(multi) = &self.progress {
            let bar = multi.add(ProgressBar::new(self.steps as u64));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>9} [{bar:30}] {pos}/{len} steps {per_sec} eta {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(self.name.clone());
            bar.set_position(state.step as u64);
            bar
        } else {
            ProgressBar::hidden()
        };
        let log_every = (self.steps / 50).max(1);
        let mut acc = state.pending_loss;
        let started = Instant::now();
        let seconds_before = state.seconds;
        while state.step < self.steps {
            if self.interrupt.load(Ordering::SeqCst) {
                state.seconds = seconds_before + started.elapsed().as_secs_f64();
                state.pending_loss = acc;
                self.save_latest(&opt, ema.as_ref(), &mut state, &report)?;
                bar.abandon_with_message("interrupted; saved");
                return Err(Error::Interrupted);
            }
            let step = state.step;
            let batch = self.make_batch(step, &eligible, &mut report)?;
            let (loss_value, grads) = loss_and_grads(self.model, &batch, self.shards)?;
            if !loss_value.is_finite() {
                return Err(Error::invalid(format!(
                    "stage {}: loss became {loss_value} at step {step}; lower the learning rate",
                    self.name
                )));
            }
            let scale = if s.grad_clip > 0.0 {
                let norm = opt.grad_norm(&grads)?;
                if norm > s.grad_clip {
                    s.grad_clip / norm
                } else {
                    1.0
                }
            } else {
                1.0
            };
            let lr = lr_at(step, self.steps, s.warmup_steps, self.lr, s.min_lr_ratio);
            opt.step(&grads, lr, scale)?;
            if let Some(ema) = &mut ema {
                ema.update()?;
            }
            state.step += 1;
            acc.0 += f64::from(loss_value);
            acc.1 += 1;
            if state.step % log_every == 0 || state.step == self.steps {
                let mean = (acc.0 / acc.1 as f64) as f32;
                state.losses.push((state.step, mean));
                bar.set_message(format!("loss {mean:.3}"));
                acc = (0.0, 0);
            }
            bar.inc(1);
            if s.checkpoint_every > 0
                && state.step % s.checkpoint_every == 0
                && state.step < self.steps
            {
                state.seconds = seconds_before + started.elapsed().as_secs_f64();
                state.pending_loss = acc;
                self.save_latest(&opt, ema.as_ref(), &mut state, &report)?;
            }
        }
        bar.finish_and_clear();
        state.seconds = seconds_before + started.elapsed().as_secs_f64();
        report.steps = state.step;
        report.seconds = state.seconds;
        report.steps_per_second = if state.seconds > 0.0 {
            state.step as f64 / state.seconds
        } else {
            0.0
        };
        report.final_loss = state.losses.last().map_or(f32::NAN, |l| l.1);
        report.losses = state.losses.clone();
        state.pending_loss = acc;
        self.save_latest(&opt, ema.as_ref(), &mut state, &report)?;
        if let Some(ema) = &ema {
            // The stage's model is the average (the checkpoint above keeps
            // the raw weights and the average apart).
            ema.copy_into_weights()?;
        }
        write_dir_atomically(&self.dirs.final_model, |dir| {
            self.model.save(dir)?;
            if let Some(spec) = self.schedule_spec {
                write_schedule(dir, spec)?;
            }
            write_json(&dir.join(REPORT_FILE), &report)
        })?;
        Ok(report)
    }
}

/// Puts the model back in inference mode however the stage ends.
struct RestoreInference<'a>(&'a dyn ModelBackend);

impl Drop for RestoreInference<'_> {
    fn drop(&mut self) {
        self.0.set_training(false);
    }
}

fn skip_name(reason: &SkipReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{reason:?}"))
}

fn role_name(role: GroupRole) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{role:?}"))
}
