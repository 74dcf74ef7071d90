//! # rediff-sampler
//!
//! The sampler of **rediff** (section 5 of the specification): semi-autoregressive
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
//!
//! - [`settings`]: geometry, temperature, guard and cache of one run;
//! - [`step`]: one step's plan checked and applied to a response;
//! - [`generate`]: the loop over blocks and steps on a batch;
//! - [`choice`]: the token a position takes and its confidence;
//! - [`step_cache`]: key/value reuse between steps (Fast-dLLM's cache).

pub mod choice;
pub mod generate;
pub mod settings;
pub mod step;
pub mod step_cache;

pub use choice::{choose, choose_scored, Choice};
pub use generate::{Generation, Sampler, StepEvent};
pub use settings::SamplerSettings;
pub use step::{apply_step, first_eot, DecodedAt, Reading, StepFrame, StepOutcome};
