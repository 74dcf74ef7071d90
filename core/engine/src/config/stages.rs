//! Training stages: shared optimiser settings, per-stage budgets, Stage II.

use rediff_api::ComponentSpec;
use serde::{Deserialize, Serialize};

/// Optimiser and schedule settings shared by every training stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSettings {
    /// Samples per optimiser step. Default 64.
    pub batch_size: usize,
    /// Peak learning rate (AdamW). Default 2e-3.
    pub lr: f64,
    /// Final learning rate as a fraction of the peak (cosine decay). Default 0.1.
    pub min_lr_ratio: f64,
    /// Linear warm-up steps. Default 100.
    pub warmup_steps: usize,
    /// Decoupled weight decay. Default 0.01.
    pub weight_decay: f64,
    /// AdamW beta1. Default 0.9.
    pub beta1: f64,
    /// AdamW beta2. Default 0.99.
    pub beta2: f64,
    /// Global gradient-norm clip (0 disables). Default 1.0.
    pub grad_clip: f64,
    /// Save a resumable checkpoint every this many steps (0: only at the end). Default 250.
    pub checkpoint_every: usize,
    /// Train (and evaluate) independent models at the same time, one per
    /// thread, each with single-threaded tensor ops. Small matrices do not
    /// parallelise inside an op; two models do. Default true.
    pub concurrent_stages: bool,
    /// A stage that trains alone (pre-training) splits each batch into this
    /// many shards, one thread each, and sums their gradients. Default 2.
    pub data_parallel: usize,
    /// How each batch draws its diffusion times `t` (mask probability
    /// `p = schedule(t)`). Default `uniform`.
    pub t_sampling: TimeSampling,
    /// Decay of an exponential moving average of the weights, updated after
    /// every optimiser step; each stage then saves the average as its model
    /// (see [`crate::ema`]). Default 0: off, the last step's weights.
    pub ema: f64,
}

/// How a training batch draws its diffusion times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeSampling {
    /// Every sample draws `t ~ U(0, 1)` on its own (LLaDA, the reference).
    #[default]
    Uniform,
    /// Sample `k` of a batch of `B` draws `t ~ U(k/B, (k+1)/B)`: the same
    /// objective in expectation, but every batch covers all mask rates
    /// evenly (the low-discrepancy sampler of MDLM, Sahoo et al. 2024,
    /// <https://arxiv.org/abs/2406.07524>), which lowers the variance of
    /// the `1/p`-weighted loss.
    Stratified,
}

impl TimeSampling {
    /// The time of the `slot`-th sample of a batch of `batch` given a
    /// uniform draw `u` in `[0, 1)`.
    pub fn time(self, u: f32, slot: usize, batch: usize) -> f32 {
        match self {
            TimeSampling::Uniform => u,
            TimeSampling::Stratified => {
                let b = batch.max(1) as f32;
                ((slot as f32 + u) / b).min(1.0)
            }
        }
    }
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            batch_size: 64,
            lr: 2e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 100,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.99,
            grad_clip: 1.0,
            checkpoint_every: 250,
            concurrent_stages: true,
            data_parallel: 2,
            t_sampling: TimeSampling::Uniform,
            ema: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TimeSampling;

    #[test]
    fn uniform_time_is_the_draw() {
        assert_eq!(TimeSampling::Uniform.time(0.37, 5, 8), 0.37);
    }

    #[test]
    fn stratified_times_cover_one_stratum_each() {
        // B = 4: slot k lies in [k/4, (k+1)/4); u = 0.5 puts it in the middle.
        let t: Vec<f32> = (0..4)
            .map(|k| TimeSampling::Stratified.time(0.5, k, 4))
            .collect();
        assert_eq!(t, vec![0.125, 0.375, 0.625, 0.875]);
        assert_eq!(TimeSampling::Stratified.time(0.0, 0, 4), 0.0);
        assert!(TimeSampling::Stratified.time(0.999_999, 3, 4) <= 1.0);
        // Slots beyond the batch (never produced) still stay in range.
        assert_eq!(TimeSampling::Stratified.time(0.9, 7, 4), 1.0);
    }
}

/// Budget of one training stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSettings {
    /// Optimiser steps.
    pub steps: usize,
    /// Peak learning rate for this stage (defaults to `[train].lr`).
    #[serde(default)]
    pub lr: Option<f64>,
}

/// A training stage: budget plus the synthesizers that make its examples.
///
/// The baseline uses a plain masking synthesizer; Stage I adds synthetic errors.
#[derive(Debug, Clone)]
pub struct TrainStageConfig {
    /// Budget.
    pub settings: StageSettings,
    /// Synthesizers, asked in order; the first that accepts a sample corrupts it.
    pub synthesizers: Vec<ComponentSpec>,
}

/// Stage II: rounds of drafting, expert review and training on corrected drafts.
#[derive(Debug, Clone)]
pub struct Stage2Config {
    /// Draft-review-train rounds. Default 1.
    pub rounds: usize,
    /// Training prompts drafted per round (clean-caption samples; a
    /// different seeded draw each round).
    pub drafts: usize,
    /// Tokens per step of the drafts, cycled over the prompts. Default
    /// `[1, 4, 8]`, the reference's mix.
    pub tokens_per_step: Vec<usize>,
    /// The refinement policy that drafts (default `{ kind = "refine" }`).
    pub sampler: ComponentSpec,
    /// Gumbel temperature of the drafts. Default 0 (greedy).
    pub temperature: f64,
    /// Block length of the drafts (semi-autoregressive decoding; divides
    /// `gen_length`). Default: `[eval] block_length`, which is what Stage
    /// II drafted with before it had a key of its own.
    pub block_length: usize,
    /// Prompts per drafting forward pass (default: `[eval] batch_size`).
    pub batch_size: usize,
    /// The expert that reviews drafts.
    pub expert: ComponentSpec,
    /// Expert requests in flight at most. Default 8.
    pub concurrency: usize,
    /// Share of the drafts sent to the expert that must come back with a
    /// usable review (right or revised); below it the round fails, the run
    /// exits non-zero and the report lists the failures by kind. Default 0.5.
    pub min_reviewed: f64,
    /// Optimiser steps and learning rate of each round.
    pub settings: StageSettings,
    /// Share of each round's training set drawn from Stage I samples (the
    /// rest: corrected drafts). Default 0: corrected drafts only, as the reference.
    pub stage1_share: f64,
    /// Synthesizers for the round's samples (default: Stage I's). Corrected
    /// drafts carry pairs, so a `span-pairs`-like synthesizer must accept them.
    pub synthesizers: Vec<ComponentSpec>,
    /// Who trains each round (default `{ kind = "in-process" }`; `command`
    /// runs an external trainer such as the official DeepSpeed script).
    pub trainer: ComponentSpec,
}
