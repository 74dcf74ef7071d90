//! The sampler (section 5 of the specification): semi-autoregressive
//! blocks, one forward pass per step, and a [`RefinementPolicy`] that
//! decides each step's plan. With the `none` and `refine` policies it runs
//! step for step as the reference's `generate_with_embeds`.
//!
//! Per sample and block (one block when `B = L`): the schedule splits the
//! block's masked positions over its steps (the *budget*). Each step: one
//! forward pass; special tokens suppressed (at masked positions only when
//! the policy never revises, everywhere otherwise); `x0 = argmax(logits +
//! temperature * Gumbel)`, `conf = softmax(logits)[x0]` and the current
//! token's probability, in float64; the policy's [`StepPlan`] is checked
//! (an impossible plan is an error naming the policy) and applied: unmask,
//! revise, remask. After every step the response is scanned for the
//! end-of-turn token: the stop is the earliest one ever decoded (it never
//! moves later). A block ends when no mask is left in it (or before the
//! stop) and the policy asks for no more, when it has run the policy's
//! [`RefinementPolicy::block_steps`], or at the sampler's guard
//! ([`SamplerSettings::max_block_steps`], counted in
//! [`Generation::guard_stops`] and logged). A sample ends once no mask
//! remains before its stop; its output is the response up to the stop.
//! Samples of a batch finish at different steps.

use std::time::{Duration, Instant};

use candle_core::Tensor;

use rediff_api::cache::CacheSettings;
use rediff_api::error::{Error, Result};
use rediff_api::model::{ModelBackend, PromptContext};
use rediff_api::policy::{PositionState, PositionView, RefinementPolicy, StepPlan, StepView};
use rediff_api::sampling::{choose, choose_scored, Choice};
use rediff_api::schedule::NoiseSchedule;
use rediff_api::tokens::SpecialTokens;

use crate::step_cache::StepCache;

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
    /// Guard on the steps one block may take, for policies that run until
    /// the block is decoded; `None` = 4 x max(block length, steps per
    /// block). A block cut by it is counted in [`Generation::guard_stops`].
    pub max_block_steps: Option<usize>,
    /// Key/value reuse between steps ([`CacheSettings::OFF`]: every step a
    /// full pass, token-exact with the reference).
    pub cache: CacheSettings,
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
            max_block_steps: None,
            cache: CacheSettings::OFF,
        }
    }

    /// The same settings with `cache`.
    pub fn with_cache(self, cache: CacheSettings) -> Self {
        Self { cache, ..self }
    }

    /// The guard on steps per block (see [`SamplerSettings::max_block_steps`]).
    pub fn block_step_guard(&self) -> usize {
        let blocks = (self.gen_length / self.block_length.max(1)).max(1);
        self.max_block_steps
            .unwrap_or(4 * self.block_length.max(self.steps / blocks))
            .max(1)
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

/// The geometry one step of one sample runs in.
#[derive(Debug, Clone)]
pub struct StepFrame {
    /// The current block's response positions.
    pub block: std::ops::Range<usize>,
    /// Step index within the block.
    pub step: usize,
    /// The schedule's steps per block.
    pub steps: usize,
    /// The schedule's budget for this step.
    pub budget: usize,
    /// Prompt length in the model's sequence; `None` when the backend does
    /// not say (then budget picks beyond the candidates go to the prompt, as
    /// they do for any prompt at least `64 x budget` long).
    pub prompt_len: Option<usize>,
    /// The end-of-turn stop before the step.
    pub stop: Option<usize>,
    /// Positions the block's previous step unmasked (`None` at its first step).
    pub last_unmasked: Option<usize>,
}

/// The model's reading of one position at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// `x0` and its confidence.
    pub choice: Choice,
    /// The probability of the position's current token.
    pub current: f64,
}

impl From<Choice> for Reading {
    fn from(choice: Choice) -> Self {
        Self {
            choice,
            current: 0.0,
        }
    }
}

/// What one step did to one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutcome {
    /// Positions unmasked.
    pub unmasked: Vec<usize>,
    /// Decoded positions whose token changed, with the old token.
    pub revised: Vec<(usize, u32)>,
    /// Positions sent back to `[MASK]`.
    pub remasked: Vec<usize>,
    /// Picks that fell in the prompt (positions when the prompt length is
    /// known; otherwise only counted).
    pub prompt_picks: usize,
    /// The prompt positions picked, when the prompt length is known.
    pub prompt_positions: Vec<usize>,
    /// The policy asked for another step of the block.
    pub more: bool,
}

/// When each response position was last unmasked, and with what confidence
/// (`None` while masked).
pub type DecodedAt = Vec<Option<(usize, f64)>>;

/// One step for one sample, given the model's reading of every response
/// position (`readings[j]` for position `j`). Pure function of its inputs
/// and `rng`: this is the whole sampling rule, tested in isolation.
///
/// Builds the policy's [`StepView`] of the block, checks its [`StepPlan`]
/// (an impossible plan is an error naming `policy_name`) and applies it;
/// `decoded_at` is kept up to date.
#[allow(clippy::too_many_arguments)]
pub fn apply_step(
    tokens: &mut [u32],
    decoded_at: &mut DecodedAt,
    frame: &StepFrame,
    readings: &[Reading],
    mask: u32,
    policy: &dyn RefinementPolicy,
    policy_name: &str,
    rng: &mut dyn rand::RngCore,
) -> Result<StepOutcome> {
    let l = tokens.len();
    debug_assert_eq!(readings.len(), l);
    debug_assert_eq!(decoded_at.len(), l);
    let limit = frame.stop.unwrap_or(frame.block.end).min(l);
    // The reference ranks every masked position before the block's end (or
    // the stop): earlier blocks are finished, but a revision to the mask
    // token masks a position there again, and a stop past the block lets
    // later masks before it be filled.
    let window = 0..frame.block.end.max(limit);
    let positions: Vec<PositionView> = window
        .map(|j| PositionView {
            position: j,
            state: match (tokens[j] == mask, decoded_at[j]) {
                (true, _) => PositionState::Masked,
                (false, Some((since, confidence))) => PositionState::Decoded { since, confidence },
                (false, None) => PositionState::Decoded {
                    since: 0,
                    confidence: 1.0,
                },
            },
            token: tokens[j],
            predicted: readings[j].choice.token,
            confidence: readings[j].choice.confidence,
            current_confidence: readings[j].current,
            before_stop: j < limit,
        })
        .collect();
    let prompt_picks = std::cell::RefCell::new(Vec::new());
    let view = StepView::new(
        frame.block.clone(),
        frame.step,
        frame.steps,
        frame.budget,
        &positions,
        frame.stop,
        l,
        frame.prompt_len,
        &prompt_picks,
    )
    .with_last_unmasked(frame.last_unmasked);
    let plan: StepPlan = policy.plan(&view, rng);
    plan.check(&view).map_err(|why| {
        Error::invalid(format!(
            "refinement policy `{policy_name}` {why} (block {}..{}, step {})",
            frame.block.start, frame.block.end, frame.step
        ))
    })?;
    let mut out = StepOutcome {
        more: plan.more,
        ..Default::default()
    };
    let prompt_picks = prompt_picks.into_inner();
    out.prompt_picks = prompt_picks.len();
    if frame.prompt_len.is_some() {
        out.prompt_positions = prompt_picks;
    }
    let mut unmask = plan.unmask;
    unmask.sort_unstable();
    for j in unmask {
        tokens[j] = readings[j].choice.token;
        decoded_at[j] = Some((frame.step, readings[j].choice.confidence));
        out.unmasked.push(j);
    }
    let mut revise = plan.revise;
    revise.sort_unstable();
    for j in revise {
        let new = readings[j].choice.token;
        if tokens[j] != new {
            out.revised.push((j, tokens[j]));
        }
        tokens[j] = new;
    }
    let mut remask = plan.remask;
    remask.sort_unstable();
    for j in remask {
        tokens[j] = mask;
        decoded_at[j] = None;
        out.remasked.push(j);
    }
    out.prompt_positions.sort_unstable();
    out.prompt_positions.dedup();
    Ok(out)
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
    use rand::SeedableRng;

    struct NoRevise;
    impl RefinementPolicy for NoRevise {
        fn plan(&self, v: &StepView<'_>, _: &mut dyn rand::RngCore) -> StepPlan {
            StepPlan::unmask(v.schedule_unmask())
        }
        fn revises(&self) -> bool {
            false
        }
    }
    struct ReviseAll;
    impl RefinementPolicy for ReviseAll {
        fn plan(&self, v: &StepView<'_>, _: &mut dyn rand::RngCore) -> StepPlan {
            StepPlan::unmask(v.schedule_unmask())
                .with_revise(v.decoded().map(|p| p.position).collect())
        }
    }
    /// Asks for whatever it was built with.
    struct Fixed(StepPlan);
    impl RefinementPolicy for Fixed {
        fn plan(&self, _: &StepView<'_>, _: &mut dyn rand::RngCore) -> StepPlan {
            self.0.clone()
        }
    }

    fn ch(token: u32, confidence: f64) -> Reading {
        Choice { token, confidence }.into()
    }

    fn frame(block: std::ops::Range<usize>, budget: usize, stop: Option<usize>) -> StepFrame {
        StepFrame {
            block,
            step: 0,
            steps: 4,
            budget,
            prompt_len: Some(1000),
            stop,
            last_unmasked: None,
        }
    }

    fn step(
        t: &mut [u32],
        f: &StepFrame,
        readings: &[Reading],
        policy: &dyn RefinementPolicy,
    ) -> Result<StepOutcome> {
        let mut at = vec![None; t.len()];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        apply_step(t, &mut at, f, readings, 99, policy, "test", &mut rng)
    }

    #[test]
    fn plain_step_unmasks_top_k_masked_only() {
        const M: u32 = 99;
        let mut t = vec![5, M, M, M];
        let choices = [ch(7, 0.9), ch(1, 0.2), ch(2, 0.8), ch(3, 0.5)];
        let o = step(&mut t, &frame(0..4, 2, None), &choices, &NoRevise).unwrap();
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
        let o = step(&mut t, &frame(0..4, 1, None), &choices, &ReviseAll).unwrap();
        assert_eq!(o.unmasked, vec![1]);
        assert_eq!(o.revised, vec![(0, 5), (2, 6)]);
        assert_eq!(t, vec![7, 1, 8, M]);
    }

    #[test]
    fn step_respects_block_offsets() {
        const M: u32 = 99;
        let mut t = vec![1, 2, M, M];
        let choices = [ch(0, 1.0), ch(0, 1.0), ch(4, 0.3), ch(5, 0.6)];
        let o = step(&mut t, &frame(2..4, 1, None), &choices, &NoRevise).unwrap();
        assert_eq!(o.unmasked, vec![3]);
        assert_eq!(t, vec![1, 2, M, 5]);
        // A mask of the *next* block is never a candidate without a stop.
        let mut t = vec![M, M, M, M];
        let choices = [ch(4, 0.1), ch(5, 0.2), ch(6, 0.9), ch(7, 0.9)];
        step(&mut t, &frame(0..2, 1, None), &choices, &NoRevise).unwrap();
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
        let o = step(&mut t, &frame(0..6, 3, Some(3)), &choices, &NoRevise).unwrap();
        assert_eq!(o.unmasked, vec![1, 2]);
        assert_eq!(o.prompt_picks, 1);
        assert_eq!(t, vec![9, 2, 3, 8, M, M]);
    }

    #[test]
    fn remask_sends_decoded_tokens_back_and_forgets_them() {
        const M: u32 = 99;
        let mut t = vec![5, M, 6, M];
        let mut at = vec![Some((0, 0.4)), None, Some((1, 0.9)), None];
        let choices = [ch(7, 0.9), ch(1, 0.95), ch(8, 0.1), ch(3, 0.5)];
        let plan = StepPlan::unmask(vec![1]).with_remask(vec![0]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut f = frame(0..4, 1, None);
        f.step = 2;
        let o = apply_step(
            &mut t,
            &mut at,
            &f,
            &choices,
            M,
            &Fixed(plan),
            "fixed",
            &mut rng,
        )
        .unwrap();
        assert_eq!(o.remasked, vec![0]);
        assert_eq!(t, vec![M, 1, 6, M]);
        assert_eq!(at, vec![None, Some((2, 0.95)), Some((1, 0.9)), None]);
    }

    #[test]
    fn impossible_plans_are_errors_that_name_the_policy() {
        const M: u32 = 99;
        let choices = [ch(7, 0.9), ch(1, 0.95), ch(8, 0.1), ch(3, 0.5)];
        for (plan, why) in [
            (
                StepPlan::unmask(vec![0]),
                "unmask position 0, which is already decoded",
            ),
            (
                StepPlan::default().with_remask(vec![1]),
                "remask position 1, which is already masked",
            ),
            (
                StepPlan::unmask(vec![9]),
                "position 9, outside the current block 0..4",
            ),
        ] {
            let mut t = vec![5, M, 6, M];
            let before = t.clone();
            let e = step(&mut t, &frame(0..4, 1, None), &choices, &Fixed(plan))
                .unwrap_err()
                .to_string();
            assert!(e.contains("refinement policy `test`"), "{e}");
            assert!(e.contains(why), "{e}");
            assert_eq!(t, before, "a refused plan changes nothing");
        }
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
        assert_eq!(s.block_step_guard(), 32);
        let bad = SamplerSettings { steps: 4, ..s };
        assert!(bad.validate().is_err());
    }
}
