//! The denoising and refining sampler (section 5 of the specification).
//!
//! For each block (semi-autoregressive; one block when `B = L`), each step:
//! one forward pass; special tokens suppressed; `x0 = argmax(logits +
//! temperature * Gumbel)` and `conf = softmax(logits)[x0]` (float64); the top
//! `k_step` masked positions of the block by confidence take `x0`; then the
//! [`RefinementPolicy`] picks which positions decoded *before* the step take
//! `x0` too. A sample stops once it holds an end-of-turn token with no mask
//! before it.

use std::time::{Duration, Instant};

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::model::{ModelBackend, PromptContext};
use crate::policy::{RefinementPolicy, RevisionCandidate};
use crate::schedule::NoiseSchedule;
use crate::tokens::{cut_at_eot, SpecialTokens};

/// Geometry and temperature of one sampling run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerSettings {
    /// Response length `L`.
    pub gen_length: usize,
    /// Block length `B` (divides `L`).
    pub block_length: usize,
    /// Total steps `S` (divisible by `L / B`).
    pub steps: usize,
    /// Gumbel temperature; 0 is greedy.
    pub temperature: f64,
}

impl SamplerSettings {
    /// Settings for `tokens_per_step` over a length `gen_length` in blocks of `block_length`.
    pub fn for_tokens_per_step(
        gen_length: usize,
        block_length: usize,
        tokens_per_step: usize,
        temperature: f64,
    ) -> Self {
        Self {
            gen_length,
            block_length,
            steps: gen_length / tokens_per_step.max(1),
            temperature,
        }
    }

    fn validate(&self) -> Result<usize> {
        let SamplerSettings {
            gen_length: l,
            block_length: b,
            steps: s,
            ..
        } = *self;
        if l == 0 || b == 0 || l % b != 0 {
            return Err(Error::invalid(format!(
                "block length {b} must divide generation length {l}"
            )));
        }
        let blocks = l / b;
        if s == 0 || s % blocks != 0 {
            return Err(Error::invalid(format!(
                "steps {s} must be a positive multiple of the {blocks} block(s)"
            )));
        }
        Ok(blocks)
    }
}

/// What happened at one step for one sample (for `--trace`).
#[derive(Debug, Clone, PartialEq)]
pub struct StepEvent {
    /// Sample index in the batch.
    pub sample: usize,
    /// Block index.
    pub block: usize,
    /// Step index within the block.
    pub step: usize,
    /// The response after the step.
    pub tokens: Vec<u32>,
    /// Positions unmasked at this step.
    pub unmasked: Vec<usize>,
    /// Positions revised at this step, with the token they held before.
    pub revised: Vec<(usize, u32)>,
}

/// The result of sampling a batch.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    /// Final responses, full length.
    pub responses: Vec<Vec<u32>>,
    /// Forward passes actually run (early stop makes it less than `steps`).
    pub forward_passes: usize,
    /// Revisions applied that changed a token, per sample.
    pub revisions: Vec<usize>,
    /// Time in the model's forward pass.
    pub forward_time: Duration,
    /// Time in the sampler's own work (selection, noise, bookkeeping).
    pub sampler_time: Duration,
}

impl Generation {
    /// Responses cut at their first end-of-turn token.
    pub fn outputs(&self, eot: u32) -> Vec<Vec<u32>> {
        self.responses
            .iter()
            .map(|r| cut_at_eot(r, eot).to_vec())
            .collect()
    }
}

/// The sampler: a model, a schedule for per-step counts and a refinement policy.
pub struct Sampler<'a> {
    /// The model.
    pub model: &'a dyn ModelBackend,
    /// Gives the per-step unmask counts.
    pub schedule: &'a dyn NoiseSchedule,
    /// Chooses revisions (`none` = plain denoising).
    pub policy: &'a dyn RefinementPolicy,
    /// Geometry.
    pub settings: SamplerSettings,
}

/// Per-position choice: the sampled token and its probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// `argmax(logits + temperature * gumbel)` over allowed tokens.
    pub token: u32,
    /// `softmax(logits)[token]` over allowed tokens, in float64.
    pub confidence: f64,
}

/// Picks `x0` and its confidence from one position's logits, with
/// `suppressed` tokens excluded (their logit treated as `-inf`).
pub fn choose(
    logits: &[f32],
    suppressed: &[u32],
    temperature: f64,
    rng: &mut impl rand::Rng,
) -> Choice {
    let mut best = 0usize;
    let mut best_score = f64::NEG_INFINITY;
    let mut max_logit = f64::NEG_INFINITY;
    for (v, &l) in logits.iter().enumerate() {
        if suppressed.contains(&(v as u32)) {
            continue;
        }
        let l = f64::from(l);
        max_logit = max_logit.max(l);
        let score = if temperature > 0.0 {
            let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
            l + temperature * -(-u.ln()).ln()
        } else {
            l
        };
        if score > best_score {
            best_score = score;
            best = v;
        }
    }
    let mut denom = 0f64;
    for (v, &l) in logits.iter().enumerate() {
        if !suppressed.contains(&(v as u32)) {
            denom += (f64::from(l) - max_logit).exp();
        }
    }
    let confidence = (f64::from(logits[best]) - max_logit).exp() / denom;
    Choice {
        token: best as u32,
        confidence,
    }
}

/// Indices of the `k` highest-confidence entries (ties: lower position first).
pub fn top_k_by_confidence(candidates: &[RevisionCandidate], k: usize) -> Vec<usize> {
    let mut sorted: Vec<&RevisionCandidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(a.position.cmp(&b.position))
    });
    sorted.into_iter().take(k).map(|c| c.position).collect()
}

/// One step's updates for one sample, given the choices at each block position.
///
/// Returns (unmasked positions, revised positions with their old token).
/// Pure function: this is the whole sampling rule, tested in isolation.
pub fn apply_step(
    tokens: &mut [u32],
    block: std::ops::Range<usize>,
    choices: &[Choice],
    mask: u32,
    k_step: usize,
    step: usize,
    policy: &dyn RefinementPolicy,
) -> (Vec<usize>, Vec<(usize, u32)>) {
    debug_assert_eq!(choices.len(), block.len());
    let mut masked = Vec::new();
    let mut decoded = Vec::new();
    for (j, pos) in block.clone().enumerate() {
        let cand = RevisionCandidate {
            position: pos,
            confidence: choices[j].confidence,
        };
        if tokens[pos] == mask {
            masked.push(cand);
        } else {
            decoded.push(cand);
        }
    }
    let unmask = top_k_by_confidence(&masked, k_step);
    // Candidates for revision were fixed at the start of the step, so a
    // position unmasked now is never among them.
    let revise = if policy.revises() && !decoded.is_empty() {
        policy.select(step, &decoded)
    } else {
        Vec::new()
    };
    for &pos in &unmask {
        tokens[pos] = choices[pos - block.start].token;
    }
    let mut revised = Vec::new();
    for pos in revise {
        let new = choices[pos - block.start].token;
        if tokens[pos] != new {
            revised.push((pos, tokens[pos]));
            tokens[pos] = new;
        }
    }
    (unmask, revised)
}

/// Whether a response is finished: an end-of-turn with no mask before it.
pub fn finished(tokens: &[u32], special: &SpecialTokens) -> bool {
    match tokens.iter().position(|&t| t == special.eot) {
        Some(i) => !tokens[..i].contains(&special.mask),
        None => false,
    }
}

impl Sampler<'_> {
    /// Samples responses for every prompt in `context`.
    ///
    /// `on_step`, when given, receives every sample's [`StepEvent`].
    pub fn generate(
        &self,
        context: &PromptContext,
        rng: &mut impl rand::Rng,
        mut on_step: Option<&mut dyn FnMut(&StepEvent)>,
    ) -> Result<Generation> {
        let blocks = self.settings.validate()?;
        let l = self.settings.gen_length;
        let b_len = self.settings.block_length;
        let steps_per_block = self.settings.steps / blocks;
        let special = self.model.special_tokens().clone();
        let vocab = self.model.vocab_size();
        let batch = context.batch();
        let mut tokens = vec![vec![special.mask; l]; batch];
        let mut done = vec![false; batch];
        let mut out = Generation {
            revisions: vec![0; batch],
            ..Default::default()
        };
        'blocks: for block in 0..blocks {
            let range = block * b_len..(block + 1) * b_len;
            let counts: Vec<Vec<usize>> = tokens
                .iter()
                .map(|t| {
                    let n = t[range.clone()]
                        .iter()
                        .filter(|&&x| x == special.mask)
                        .count();
                    self.schedule.unmask_counts(n, steps_per_block)
                })
                .collect();
            #[allow(clippy::needless_range_loop)] // `step` is also the policy's step index
            for step in 0..steps_per_block {
                if done.iter().all(|&d| d) {
                    break 'blocks;
                }
                let t0 = Instant::now();
                let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
                let input = Tensor::from_vec(flat, (batch, l), self.model.device())?;
                let logits = self.model.forward(context, &input)?;
                let logits = logits
                    .narrow(1, range.start, range.len())?
                    .to_device(&candle_core::Device::Cpu)?
                    .to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let t1 = Instant::now();
                out.forward_time += t1 - t0;
                out.forward_passes += 1;
                for (i, sample) in tokens.iter_mut().enumerate() {
                    if done[i] {
                        continue;
                    }
                    let choices: Vec<Choice> = (0..range.len())
                        .map(|j| {
                            let off = (i * range.len() + j) * vocab;
                            choose(
                                &logits[off..off + vocab],
                                &special.suppressed,
                                self.settings.temperature,
                                rng,
                            )
                        })
                        .collect();
                    let (unmasked, revised) = apply_step(
                        sample,
                        range.clone(),
                        &choices,
                        special.mask,
                        counts[i][step],
                        step,
                        self.policy,
                    );
                    out.revisions[i] += revised.len();
                    if let Some(cb) = on_step.as_deref_mut() {
                        cb(&StepEvent {
                            sample: i,
                            block,
                            step,
                            tokens: sample.clone(),
                            unmasked,
                            revised,
                        });
                    }
                    if finished(sample, &special) {
                        done[i] = true;
                    }
                }
                out.sampler_time += t1.elapsed();
            }
        }
        out.responses = tokens;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    struct NoRevise;
    impl RefinementPolicy for NoRevise {
        fn select(&self, _: usize, _: &[RevisionCandidate]) -> Vec<usize> {
            Vec::new()
        }
        fn revises(&self) -> bool {
            false
        }
    }
    struct ReviseAll;
    impl RefinementPolicy for ReviseAll {
        fn select(&self, _: usize, c: &[RevisionCandidate]) -> Vec<usize> {
            c.iter().map(|c| c.position).collect()
        }
    }

    fn ch(token: u32, confidence: f64) -> Choice {
        Choice { token, confidence }
    }

    #[test]
    fn choose_is_argmax_and_softmax_with_suppression() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let logits = [0.0f32, 3.0, 1.0, 2.0];
        let c = choose(&logits, &[], 0.0, &mut rng);
        assert_eq!(c.token, 1);
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        assert!((c.confidence - 3f64.exp() / z).abs() < 1e-12);
        // Suppressing the best token renormalises over the rest.
        let c = choose(&logits, &[1], 0.0, &mut rng);
        assert_eq!(c.token, 3);
        let z: f64 = [0.0f64, 1.0, 2.0].iter().map(|l| l.exp()).sum();
        assert!((c.confidence - 2f64.exp() / z).abs() < 1e-12);
    }

    #[test]
    fn gumbel_sampling_follows_the_softmax() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let logits = [0.0f32, (3f32).ln()];
        let n = 20000;
        let ones = (0..n)
            .filter(|_| choose(&logits, &[], 1.0, &mut rng).token == 1)
            .count();
        let share = ones as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }

    #[test]
    fn plain_step_unmasks_top_k_masked_only() {
        const M: u32 = 99;
        let mut t = vec![5, M, M, M];
        let choices = [ch(7, 0.9), ch(1, 0.2), ch(2, 0.8), ch(3, 0.5)];
        let (un, rev) = apply_step(&mut t, 0..4, &choices, M, 2, 0, &NoRevise);
        assert_eq!(un, vec![2, 3]);
        assert!(rev.is_empty());
        assert_eq!(t, vec![5, M, 2, 3]);
    }

    #[test]
    fn refine_step_never_revises_tokens_unmasked_in_the_same_step() {
        const M: u32 = 99;
        let mut t = vec![5, M, 6, M];
        // Position 0 and 2 were decoded before; x0 differs at both.
        let choices = [ch(7, 0.9), ch(1, 0.95), ch(8, 0.1), ch(3, 0.5)];
        let (un, rev) = apply_step(&mut t, 0..4, &choices, M, 1, 0, &ReviseAll);
        assert_eq!(un, vec![1]);
        assert_eq!(rev, vec![(0, 5), (2, 6)]);
        assert_eq!(t, vec![7, 1, 8, M]);
    }

    #[test]
    fn step_respects_block_offsets() {
        const M: u32 = 99;
        let mut t = vec![1, 2, M, M];
        let choices = [ch(4, 0.3), ch(5, 0.6)];
        let (un, _) = apply_step(&mut t, 2..4, &choices, M, 1, 0, &NoRevise);
        assert_eq!(un, vec![3]);
        assert_eq!(t, vec![1, 2, M, 5]);
    }

    #[test]
    fn finished_needs_eot_without_mask_before() {
        let sp = SpecialTokens {
            mask: 9,
            eot: 8,
            suppressed: vec![],
            all: vec![],
        };
        assert!(finished(&[1, 8, 9], &sp));
        assert!(!finished(&[9, 8, 1], &sp));
        assert!(!finished(&[1, 2, 3], &sp));
    }

    #[test]
    fn settings_validate_geometry() {
        let s = SamplerSettings::for_tokens_per_step(24, 8, 4, 0.0);
        assert_eq!(s.steps, 6);
        assert_eq!(s.validate().unwrap(), 3);
        let bad = SamplerSettings { steps: 4, ..s };
        assert!(bad.validate().is_err());
    }
}
