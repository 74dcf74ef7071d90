//! The denoising and refining sampler (section 5 of the specification), step
//! for step as the reference's `generate_with_embeds` runs it.
//!
//! Per sample and block (semi-autoregressive; one block when `B = L`): the
//! schedule splits the block's masked positions over its steps. Each step:
//! one forward pass; special tokens suppressed (at masked positions only for
//! plain denoising, everywhere when refining); `x0 = argmax(logits +
//! temperature * Gumbel)` and `conf = softmax(logits)[x0]` in float64; the
//! step's budget goes to the most confident masked positions before the
//! block's end (before the stop, once there is one), chosen exactly as the
//! reference's `torch.topk` over `[prompt | response]` chooses, ties
//! included; then the [`RefinementPolicy`] picks which positions decoded
//! before the step take `x0` too. After every step the response is scanned
//! for the end-of-turn token: the stop is the earliest one ever decoded
//! (it never moves later). A block ends early when it has no mask left, a
//! sample ends once no mask remains before its stop, and its output is the
//! response up to the stop.

use std::time::{Duration, Instant};

use candle_core::Tensor;

use rediff_api::error::{Error, Result};
use rediff_api::model::{ModelBackend, PromptContext};
use rediff_api::policy::{RefinementPolicy, RevisionCandidate, RevisionContext};
use rediff_api::sampling::{choose, Choice};
use rediff_api::schedule::NoiseSchedule;
use rediff_api::tokens::SpecialTokens;
use rediff_api::topk::torch_topk_indices;

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

    /// Checks the geometry; returns the number of blocks.
    pub fn validate(&self) -> Result<usize> {
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
    /// Positions rewritten at this step, with the token they held before.
    pub revised: Vec<(usize, u32)>,
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
    /// Steps each sample took (its forward passes).
    pub steps: Vec<usize>,
    /// Rewrites of a decoded token that changed it, per sample.
    pub revisions: Vec<usize>,
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

/// The geometry one step of one sample runs in.
#[derive(Debug, Clone)]
pub struct StepFrame {
    /// The current block's response positions.
    pub block: std::ops::Range<usize>,
    /// Step index within the block.
    pub step: usize,
    /// Steps per block.
    pub steps: usize,
    /// The schedule's budget for this step.
    pub budget: usize,
    /// Prompt length in the model's sequence; `None` when the backend does
    /// not say (then budget picks beyond the candidates go to the prompt, as
    /// they do for any prompt at least `64 x budget` long).
    pub prompt_len: Option<usize>,
    /// The end-of-turn stop before the step.
    pub stop: Option<usize>,
}

/// What one step did to one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutcome {
    /// Positions unmasked.
    pub unmasked: Vec<usize>,
    /// Decoded positions whose token changed, with the old token.
    pub revised: Vec<(usize, u32)>,
    /// Picks that fell in the prompt (positions when the prompt length is
    /// known; otherwise only counted).
    pub prompt_picks: usize,
    /// The prompt positions picked, when the prompt length is known.
    pub prompt_positions: Vec<usize>,
}

/// One step's updates for one sample, given the choices at every response
/// position (`choices[j]` for position `j`). Pure function: this is the
/// whole sampling rule, tested in isolation.
///
/// The budget goes to the masked positions before the block's end (before
/// the stop, once there is one) with the highest confidence, selected over
/// `[prompt | response]` as the reference's `torch.topk` does; then the
/// policy's revisions of positions decoded before the step are applied.
pub fn apply_step(
    tokens: &mut [u32],
    frame: &StepFrame,
    choices: &[Choice],
    mask: u32,
    policy: &dyn RefinementPolicy,
) -> StepOutcome {
    let l = tokens.len();
    debug_assert_eq!(choices.len(), l);
    let masked: Vec<bool> = tokens.iter().map(|&t| t == mask).collect();
    let limit = frame.stop.unwrap_or(frame.block.end).min(l);
    let p = frame.prompt_len.unwrap_or(64 * frame.budget);
    let mut conf = vec![f64::NEG_INFINITY; p + l];
    for j in 0..limit {
        if masked[j] {
            conf[p + j] = choices[j].confidence;
        }
    }
    let mut out = StepOutcome::default();
    let mut picks: Vec<usize> = Vec::new();
    for i in torch_topk_indices(&conf, frame.budget) {
        match i.checked_sub(p) {
            Some(j) => picks.push(j),
            None => {
                out.prompt_picks += 1;
                if frame.prompt_len.is_some() {
                    out.prompt_positions.push(i);
                }
            }
        }
    }
    picks.sort_unstable();
    for j in picks {
        let new = choices[j].token;
        if masked[j] {
            out.unmasked.push(j);
        } else if tokens[j] != new {
            out.revised.push((j, tokens[j]));
        }
        tokens[j] = new;
    }
    if policy.revises() {
        let candidates: Vec<RevisionCandidate> = frame
            .block
            .clone()
            .filter(|&j| !masked[j])
            .map(|j| RevisionCandidate {
                position: j,
                confidence: if j < limit {
                    choices[j].confidence
                } else {
                    f64::NEG_INFINITY
                },
            })
            .collect();
        if !candidates.is_empty() {
            let prompt_picks = std::cell::RefCell::new(Vec::new());
            let ctx = RevisionContext::new(
                frame.step,
                frame.steps,
                &candidates,
                frame.prompt_len,
                l,
                &prompt_picks,
            );
            let mut chosen = policy.select(&ctx);
            let prompt_picks = prompt_picks.into_inner();
            out.prompt_picks += prompt_picks.len();
            out.prompt_positions.extend(prompt_picks);
            chosen.sort_unstable();
            chosen.dedup();
            for j in chosen.into_iter().filter(|&j| j < l) {
                let new = choices[j].token;
                if tokens[j] == mask && new != mask {
                    out.unmasked.push(j);
                } else if tokens[j] != new {
                    out.revised.push((j, tokens[j]));
                }
                tokens[j] = new;
            }
        }
    }
    out.unmasked.sort_unstable();
    out.unmasked.dedup();
    out.prompt_positions.sort_unstable();
    out.prompt_positions.dedup();
    out
}

/// The earliest end-of-turn position in `tokens`, if any.
pub fn first_eot(tokens: &[u32], special: &SpecialTokens) -> Option<usize> {
    tokens.iter().position(|&t| t == special.eot)
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
    /// Prompt positions picked at the last step, with the response the
    /// step's forward pass saw: rewritten before the next forward pass.
    pending_prompt: Option<(Vec<u32>, Vec<usize>)>,
}

impl Cursor {
    fn new() -> Self {
        Self {
            block: 0,
            step: 0,
            counts: Vec::new(),
            fresh_block: true,
            done: false,
            stop: None,
            steps_taken: 0,
            pending_prompt: None,
        }
    }

    /// Moves past the reference's breaks to the next step that needs a
    /// forward pass; false once the sample is finished.
    fn prepare(
        &mut self,
        tokens: &[u32],
        mask: u32,
        blocks: usize,
        block_len: usize,
        steps: usize,
        schedule: &dyn NoiseSchedule,
    ) -> bool {
        loop {
            if self.done {
                return false;
            }
            let range = self.block * block_len..(self.block + 1) * block_len;
            if self.fresh_block {
                if self.block >= blocks || self.stop.is_some_and(|s| s <= range.start) {
                    self.done = true;
                    return false;
                }
                let n = tokens[range.clone()].iter().filter(|&&t| t == mask).count();
                self.counts = schedule.unmask_counts(n, steps);
                self.step = 0;
                self.fresh_block = false;
            }
            let stop_reached = self
                .stop
                .is_some_and(|s| !tokens[..s.min(tokens.len())].contains(&mask));
            if self.step >= steps || stop_reached || !tokens[range].contains(&mask) {
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
        let special = self.model.special_tokens().clone();
        let vocab = self.model.vocab_size();
        let batch = context.batch();
        let revises = self.policy.revises();
        let mut tokens = vec![vec![special.mask; l]; batch];
        let mut cursors: Vec<Cursor> = (0..batch).map(|_| Cursor::new()).collect();
        let mut out = Generation {
            revisions: vec![0; batch],
            prompt_picks: vec![0; batch],
            prompt_rewrites_skipped: vec![0; batch],
            ..Default::default()
        };
        loop {
            let t0 = Instant::now();
            let active: Vec<bool> = cursors
                .iter_mut()
                .zip(&tokens)
                .map(|(c, t)| c.prepare(t, special.mask, blocks, b_len, steps, self.schedule))
                .collect();
            if !active.contains(&true) {
                out.sampler_time += t0.elapsed();
                break;
            }
            for (i, cursor) in cursors.iter_mut().enumerate() {
                if let (true, Some((seen, positions))) = (active[i], cursor.pending_prompt.take()) {
                    self.rewrite_prompt(context, i, &seen, &positions, revises, rng, &mut out)?;
                }
            }
            let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
            let input = Tensor::from_vec(flat, (batch, l), self.model.device())?;
            out.sampler_time += t0.elapsed();
            let t1 = Instant::now();
            let logits = self
                .model
                .forward(context, &input)?
                .to_device(&candle_core::Device::Cpu)?
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let t2 = Instant::now();
            out.forward_time += t2 - t1;
            out.forward_passes += 1;
            for (i, sample) in tokens.iter_mut().enumerate() {
                if !active[i] {
                    continue;
                }
                let choices: Vec<Choice> = (0..l)
                    .map(|j| {
                        let off = (i * l + j) * vocab;
                        // The plain sampler suppresses special tokens at masked positions only.
                        let suppressed: &[u32] = if revises || sample[j] == special.mask {
                            &special.suppressed
                        } else {
                            &[]
                        };
                        choose(
                            &logits[off..off + vocab],
                            suppressed,
                            self.settings.temperature,
                            rng,
                        )
                    })
                    .collect();
                let cursor = &mut cursors[i];
                let frame = StepFrame {
                    block: cursor.block * b_len..(cursor.block + 1) * b_len,
                    step: cursor.step,
                    steps,
                    budget: cursor.counts[cursor.step],
                    prompt_len: context.prompt_len(i),
                    stop: cursor.stop,
                };
                let seen = sample.clone();
                let outcome = apply_step(sample, &frame, &choices, special.mask, self.policy);
                if !outcome.prompt_positions.is_empty() {
                    cursor.pending_prompt = Some((seen, outcome.prompt_positions.clone()));
                }
                if let Some(e) = first_eot(sample, &special) {
                    if cursor.stop.is_none_or(|s| e < s) {
                        cursor.stop = Some(e);
                    }
                }
                out.revisions[i] += outcome.revised.len();
                out.prompt_picks[i] += outcome.prompt_picks;
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
        out.stops = cursors.iter().map(|c| c.stop).collect();
        out.steps = cursors.iter().map(|c| c.steps_taken).collect();
        out.responses = tokens;
        Ok(out)
    }
}

impl Sampler<'_> {
    /// Rewrites prompt `i`'s `positions` with the model's predictions there
    /// for the step whose forward pass saw `seen`, as the reference's
    /// selection over the whole sequence does.
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
    ) -> Result<()> {
        let Some(rows) = self.model.prompt_logits(context, i, seen, positions)? else {
            out.prompt_rewrites_skipped[i] += positions.len();
            return Ok(());
        };
        // Prompt positions are never masked: the plain sampler leaves
        // special tokens allowed there, the refining one suppresses them.
        let special = self.model.special_tokens();
        let suppressed: &[u32] = if revises { &special.suppressed } else { &[] };
        for (&p, row) in positions.iter().zip(&rows) {
            let c = choose(row, suppressed, self.settings.temperature, rng);
            context.override_prompt(i, p, c.token);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoRevise;
    impl RefinementPolicy for NoRevise {
        fn select(&self, _: &RevisionContext<'_>) -> Vec<usize> {
            Vec::new()
        }
        fn revises(&self) -> bool {
            false
        }
    }
    struct ReviseAll;
    impl RefinementPolicy for ReviseAll {
        fn select(&self, c: &RevisionContext<'_>) -> Vec<usize> {
            c.candidates.iter().map(|c| c.position).collect()
        }
    }

    fn ch(token: u32, confidence: f64) -> Choice {
        Choice { token, confidence }
    }

    fn frame(block: std::ops::Range<usize>, budget: usize, stop: Option<usize>) -> StepFrame {
        StepFrame {
            block,
            step: 0,
            steps: 4,
            budget,
            prompt_len: Some(1000),
            stop,
        }
    }

    #[test]
    fn plain_step_unmasks_top_k_masked_only() {
        const M: u32 = 99;
        let mut t = vec![5, M, M, M];
        let choices = [ch(7, 0.9), ch(1, 0.2), ch(2, 0.8), ch(3, 0.5)];
        let o = apply_step(&mut t, &frame(0..4, 2, None), &choices, M, &NoRevise);
        assert_eq!(o.unmasked, vec![2, 3]);
        assert!(o.revised.is_empty());
        assert_eq!(t, vec![5, M, 2, 3]);
    }

    #[test]
    fn refine_step_never_revises_tokens_unmasked_in_the_same_step() {
        const M: u32 = 99;
        let mut t = vec![5, M, 6, M];
        // Position 0 and 2 were decoded before; x0 differs at both.
        let choices = [ch(7, 0.9), ch(1, 0.95), ch(8, 0.1), ch(3, 0.5)];
        let o = apply_step(&mut t, &frame(0..4, 1, None), &choices, M, &ReviseAll);
        assert_eq!(o.unmasked, vec![1]);
        assert_eq!(o.revised, vec![(0, 5), (2, 6)]);
        assert_eq!(t, vec![7, 1, 8, M]);
    }

    #[test]
    fn step_respects_block_offsets() {
        const M: u32 = 99;
        let mut t = vec![1, 2, M, M];
        let choices = [ch(0, 1.0), ch(0, 1.0), ch(4, 0.3), ch(5, 0.6)];
        let o = apply_step(&mut t, &frame(2..4, 1, None), &choices, M, &NoRevise);
        assert_eq!(o.unmasked, vec![3]);
        assert_eq!(t, vec![1, 2, M, 5]);
        // A mask of the *next* block is never a candidate without a stop.
        let mut t = vec![M, M, M, M];
        let choices = [ch(4, 0.1), ch(5, 0.2), ch(6, 0.9), ch(7, 0.9)];
        apply_step(&mut t, &frame(0..2, 1, None), &choices, M, &NoRevise);
        assert_eq!(t, vec![M, 5, M, M]);
    }

    #[test]
    fn after_a_stop_the_budget_goes_to_masks_before_it() {
        const M: u32 = 99;
        // Stop at 3: masks at 1, 2 (before) and 4, 5 (after). Budget 3: the
        // two masks before the stop, the third pick is a prompt tie.
        let mut t = vec![9, M, M, 8, M, M];
        let choices = [
            ch(1, 0.1),
            ch(2, 0.3),
            ch(3, 0.2),
            ch(4, 0.9),
            ch(5, 0.99),
            ch(6, 0.99),
        ];
        let o = apply_step(&mut t, &frame(0..6, 3, Some(3)), &choices, M, &NoRevise);
        assert_eq!(o.unmasked, vec![1, 2]);
        assert_eq!(o.prompt_picks, 1);
        assert_eq!(t, vec![9, 2, 3, 8, M, M]);
    }

    #[test]
    fn generation_outputs_stop_at_the_recorded_stop() {
        let g = Generation {
            responses: vec![vec![1, 2, 9, 3], vec![1, 2, 3, 4]],
            stops: vec![Some(1), None],
            ..Default::default()
        };
        assert_eq!(g.outputs(), vec![vec![1], vec![1, 2, 3, 4]]);
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
