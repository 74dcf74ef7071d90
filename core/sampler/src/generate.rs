//! The sampling loop over a batch: blocks, steps, one forward pass a step.

use std::time::{Duration, Instant};

use candle_core::Tensor;

use rediff_api::error::{Error, Result};
use rediff_api::model::{ModelBackend, PromptContext};
use rediff_api::policy::RefinementPolicy;
use rediff_api::schedule::NoiseSchedule;

use crate::choice::{choose, choose_scored};
use crate::settings::SamplerSettings;
use crate::step::{apply_step, first_eot, DecodedAt, Reading, StepFrame};
use crate::step_cache::StepCache;

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
    /// Positions rewritten at this step, with the token they held before.
    pub revised: Vec<(usize, u32)>,
    /// Positions sent back to `[MASK]` at this step.
    pub remasked: Vec<usize>,
    /// The end-of-turn stop after the step, if one was decoded.
    pub stop: Option<usize>,
    /// Picks that the reference's tie order puts in the prompt: those
    /// prompt positions take the model's prediction too, as in the reference
    /// (applied before the sample's next forward pass, when the backend can
    /// rewrite its prompt; see [`ModelBackend::prompt_logits`]).
    pub prompt_picks: usize,
}

/// The result of sampling a batch.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    /// Final responses, full length.
    pub responses: Vec<Vec<u32>>,
    /// Where each sample stopped: its earliest end-of-turn ever decoded.
    pub stops: Vec<Option<usize>>,
    /// Forward passes actually run for the batch.
    pub forward_passes: usize,
    /// Of those, passes over a cached window only (see [`rediff_api::cache`]).
    pub window_passes: usize,
    /// Steps each sample took (its forward passes).
    pub steps: Vec<usize>,
    /// Rewrites of a decoded token that changed it, per sample.
    pub revisions: Vec<usize>,
    /// Decoded tokens sent back to `[MASK]`, per sample.
    pub remasks: Vec<usize>,
    /// Blocks the step guard cut short, per sample (0 unless a policy
    /// failed to finish a block in [`SamplerSettings::block_step_guard`] steps).
    pub guard_stops: Vec<usize>,
    /// Picks that landed in the prompt (see [`StepEvent::prompt_picks`]), per sample.
    pub prompt_picks: Vec<usize>,
    /// Prompt rewrites a later forward pass needed but the backend could
    /// not apply (its [`ModelBackend::prompt_logits`] returns `None`), per sample.
    pub prompt_rewrites_skipped: Vec<usize>,
    /// Time in the model's forward pass.
    pub forward_time: Duration,
    /// Time in the sampler's own work (selection, noise, bookkeeping).
    pub sampler_time: Duration,
}

impl Generation {
    /// Each sample's output: its response up to its stop (all of it when no
    /// end-of-turn was decoded), as the reference returns it.
    pub fn outputs(&self) -> Vec<Vec<u32>> {
        self.responses
            .iter()
            .zip(&self.stops)
            .map(|(r, s)| r[..s.unwrap_or(r.len())].to_vec())
            .collect()
    }
}

/// The sampler: a model, a schedule for per-step budgets and a refinement policy.
pub struct Sampler<'a> {
    /// The model.
    pub model: &'a dyn ModelBackend,
    /// Gives the per-step unmask budgets.
    pub schedule: &'a dyn NoiseSchedule,
    /// Plans every step (`none` = plain denoising).
    pub policy: &'a dyn RefinementPolicy,
    /// The policy's name in errors and logs.
    pub policy_name: &'a str,
    /// Geometry.
    pub settings: SamplerSettings,
}

/// Where one sample is in the block/step loop.
struct Cursor {
    block: usize,
    step: usize,
    counts: Vec<usize>,
    fresh_block: bool,
    done: bool,
    stop: Option<usize>,
    steps_taken: usize,
    /// The last step's plan asked for more of this block.
    more: bool,
    /// Positions the block's previous step unmasked.
    last_unmasked: Option<usize>,
    decoded_at: DecodedAt,
    guard_stops: usize,
    /// Prompt positions picked at the last step, with the response the
    /// step's forward pass saw: rewritten before the next forward pass.
    pending_prompt: Option<(Vec<u32>, Vec<usize>)>,
}

/// The block limits a cursor runs under.
struct Limits {
    blocks: usize,
    block_len: usize,
    steps: usize,
    policy_steps: Option<usize>,
    guard: usize,
}

impl Cursor {
    fn new(l: usize) -> Self {
        Self {
            block: 0,
            step: 0,
            counts: Vec::new(),
            fresh_block: true,
            done: false,
            stop: None,
            steps_taken: 0,
            more: false,
            last_unmasked: None,
            decoded_at: vec![None; l],
            guard_stops: 0,
            pending_prompt: None,
        }
    }

    /// Moves past finished blocks to the next step that needs a forward
    /// pass; false once the sample is finished.
    fn prepare(
        &mut self,
        tokens: &[u32],
        mask: u32,
        lim: &Limits,
        schedule: &dyn NoiseSchedule,
    ) -> bool {
        loop {
            if self.done {
                return false;
            }
            let range = self.block * lim.block_len..(self.block + 1) * lim.block_len;
            if self.fresh_block {
                if self.block >= lim.blocks || self.stop.is_some_and(|s| s <= range.start) {
                    self.done = true;
                    return false;
                }
                let n = tokens[range.clone()].iter().filter(|&&t| t == mask).count();
                self.counts = schedule.unmask_counts(n, lim.steps);
                self.step = 0;
                self.more = false;
                self.last_unmasked = None;
                self.fresh_block = false;
            }
            let stop_reached = self
                .stop
                .is_some_and(|s| !tokens[..s.min(tokens.len())].contains(&mask));
            let decoded = (stop_reached || !tokens[range].contains(&mask)) && !self.more;
            let scheduled_out = lim.policy_steps.is_some_and(|n| self.step >= n);
            let guarded = !decoded && !scheduled_out && self.step >= lim.guard;
            if decoded || scheduled_out || guarded {
                self.guard_stops += usize::from(guarded);
                self.block += 1;
                self.fresh_block = true;
                continue;
            }
            return true;
        }
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
        let steps = self.settings.steps / blocks;
        let limits = Limits {
            blocks,
            block_len: b_len,
            steps,
            policy_steps: self.policy.block_steps(steps),
            guard: self.settings.block_step_guard(),
        };
        let special = self.model.special_tokens().clone();
        let vocab = self.model.vocab_size();
        let batch = context.batch();
        let revises = self.policy.revises();
        let mut tokens = vec![vec![special.mask; l]; batch];
        let mut cursors: Vec<Cursor> = (0..batch).map(|_| Cursor::new(l)).collect();
        let mut cache = StepCache::new(self.settings.cache, self.model)?;
        let mut out = Generation {
            revisions: vec![0; batch],
            remasks: vec![0; batch],
            prompt_picks: vec![0; batch],
            prompt_rewrites_skipped: vec![0; batch],
            ..Default::default()
        };
        loop {
            let t0 = Instant::now();
            let active: Vec<bool> = cursors
                .iter_mut()
                .zip(&tokens)
                .map(|(c, t)| c.prepare(t, special.mask, &limits, self.schedule))
                .collect();
            if !active.contains(&true) {
                out.sampler_time += t0.elapsed();
                break;
            }
            let mut rewrote = false;
            for (i, cursor) in cursors.iter_mut().enumerate() {
                if let (true, Some((seen, positions))) = (active[i], cursor.pending_prompt.take()) {
                    rewrote |=
                        self.rewrite_prompt(context, i, &seen, &positions, revises, rng, &mut out)?;
                }
            }
            let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
            let input = Tensor::from_vec(flat, (batch, l), self.model.device())?;
            let blocks: Vec<std::ops::Range<usize>> = cursors
                .iter()
                .zip(&active)
                .filter(|(_, &a)| a)
                .map(|(c, _)| c.block * b_len..(c.block + 1) * b_len)
                .collect();
            out.sampler_time += t0.elapsed();
            let t1 = Instant::now();
            let logits = cache.forward(self.model, context, &input, blocks, rewrote, vocab)?;
            let t2 = Instant::now();
            out.forward_time += t2 - t1;
            out.forward_passes += 1;
            for (i, sample) in tokens.iter_mut().enumerate() {
                if !active[i] {
                    continue;
                }
                let readings: Vec<Reading> = (0..l)
                    .map(|j| {
                        let off = (i * l + j) * vocab;
                        // The plain sampler suppresses special tokens at masked positions only.
                        let suppressed: &[u32] = if revises || sample[j] == special.mask {
                            &special.suppressed
                        } else {
                            &[]
                        };
                        let (choice, current) = choose_scored(
                            &logits[off..off + vocab],
                            suppressed,
                            self.settings.temperature,
                            rng,
                            Some(sample[j]),
                        );
                        Reading { choice, current }
                    })
                    .collect();
                let cursor = &mut cursors[i];
                let frame = StepFrame {
                    block: cursor.block * b_len..(cursor.block + 1) * b_len,
                    step: cursor.step,
                    steps,
                    budget: cursor.counts.get(cursor.step).copied().unwrap_or(0),
                    prompt_len: context.prompt_len(i),
                    stop: cursor.stop,
                    last_unmasked: cursor.last_unmasked,
                };
                let seen = sample.clone();
                let outcome = apply_step(
                    sample,
                    &mut cursor.decoded_at,
                    &frame,
                    &readings,
                    special.mask,
                    self.policy,
                    self.policy_name,
                    rng,
                )
                .map_err(|e| Error::invalid(format!("sample {i}: {e}")))?;
                if !outcome.prompt_positions.is_empty() {
                    cursor.pending_prompt = Some((seen, outcome.prompt_positions.clone()));
                }
                if let Some(e) = first_eot(sample, &special) {
                    if cursor.stop.is_none_or(|s| e < s) {
                        cursor.stop = Some(e);
                    }
                }
                out.revisions[i] += outcome.revised.len();
                out.remasks[i] += outcome.remasked.len();
                out.prompt_picks[i] += outcome.prompt_picks;
                cursor.more = outcome.more;
                cursor.last_unmasked = Some(outcome.unmasked.len());
                cursor.step += 1;
                cursor.steps_taken += 1;
                if let Some(cb) = on_step.as_deref_mut() {
                    cb(&StepEvent {
                        sample: i,
                        block: frame.block.start / b_len,
                        step: frame.step,
                        tokens: sample.clone(),
                        unmasked: outcome.unmasked,
                        revised: outcome.revised,
                        remasked: outcome.remasked,
                        stop: cursor.stop,
                        prompt_picks: outcome.prompt_picks,
                    });
                }
            }
            out.sampler_time += t2.elapsed();
        }
        for (i, skipped) in out.prompt_rewrites_skipped.iter().enumerate() {
            if *skipped > 0 {
                tracing::warn!(
                    sample = i,
                    skipped,
                    "the reference would rewrite prompt positions here, which this backend cannot; \
its later tokens may differ from the reference's"
                );
            }
        }
        out.guard_stops = cursors.iter().map(|c| c.guard_stops).collect();
        let cut: usize = out.guard_stops.iter().sum();
        if cut > 0 {
            tracing::warn!(
                policy = self.policy_name,
                blocks = cut,
                guard = limits.guard,
                "blocks reached the sampler's step guard before the policy finished them"
            );
        }
        out.window_passes = cache.window_passes;
        out.stops = cursors.iter().map(|c| c.stop).collect();
        out.steps = cursors.iter().map(|c| c.steps_taken).collect();
        out.responses = tokens;
        Ok(out)
    }
}

impl Sampler<'_> {
    /// Rewrites prompt `i`'s `positions` with the model's predictions there
    /// for the step whose forward pass saw `seen`, as the reference's
    /// selection over the whole sequence does; true when it rewrote any.
    #[allow(clippy::too_many_arguments)]
    fn rewrite_prompt(
        &self,
        context: &PromptContext,
        i: usize,
        seen: &[u32],
        positions: &[usize],
        revises: bool,
        rng: &mut impl rand::Rng,
        out: &mut Generation,
    ) -> Result<bool> {
        let Some(rows) = self.model.prompt_logits(context, i, seen, positions)? else {
            out.prompt_rewrites_skipped[i] += positions.len();
            return Ok(false);
        };
        // Prompt positions are never masked: the plain sampler leaves
        // special tokens allowed there, the refining one suppresses them.
        let special = self.model.special_tokens();
        let suppressed: &[u32] = if revises { &special.suppressed } else { &[] };
        for (&p, row) in positions.iter().zip(&rows) {
            let c = choose(row, suppressed, self.settings.temperature, rng);
            context.override_prompt(i, p, c.token);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_outputs_stop_at_the_recorded_stop() {
        let g = Generation {
            responses: vec![vec![1, 2, 9, 3], vec![1, 2, 3, 4]],
            stops: vec![Some(1), None],
            ..Default::default()
        };
        assert_eq!(g.outputs(), vec![vec![1], vec![1, 2, 3, 4]]);
    }
}
