//! # rediff-standard
//!
//! The built-in schedules, error synthesizers, refinement policies and
//! reference-format data source of
//! [ReDiff](https://arxiv.org/abs/2510.19871), registered through the same
//! [`Registrar`](rediff_api::Registrar) API a third-party plugin uses.
//!
//! | kind | name | what |
//! |---|---|---|
//! | data | `conversations` | LLaVA conversations and ViCrit samples (the reference formats) from JSON / JSON Lines files |
//! | schedule | `linear` | `p = (1 - eps) t + eps`; uniform per-step unmask counts |
//! | synthesizer | `masked` | plain masked diffusion (LLaDA objective), the baseline |
//! | synthesizer | `random-replace` | mask, then replace unmasked tokens at `rate`; three group means |
//! | synthesizer | `span-pairs` | hallucination pairs located in the response; revise-span mean |
//! | policy | `none` | plain denoising (LLaDA) |
//! | policy | `refine` | ReDiff: rewrite decoded tokens from step `start`, optionally only the `topk` share |
//! | policy | `threshold` | Fast-dLLM: unmask every mask with `p >= threshold` (or the `factor` rule) |
//! | policy | `remdm` | ReMDM: remask decoded tokens with probability `sigma_t` (`cap`, `rescale`, `conf`, `loop`) |
//! | policy | `wino` | WINO: draft above `threshold`, remask decoded tokens below `threshold_back` |
//! | policy | `edit` | LLaDA 2.1: unmask above `threshold`, edit tokens whose new argmax clears `editing_threshold` |

mod conversations;
mod policies;
mod schedules;
mod spans;
mod synthesizers;
mod trainers;

pub use conversations::{Conversations, ConversationsOptions};
pub use policies::{
    Edit, EditOptions, NoRefinement, NoRefinementOptions, Refine, RefineOptions, Remasking, Remdm,
    RemdmOptions, RemdmSampler, Threshold, ThresholdOptions, Wino, WinoOptions,
};
pub use schedules::{Linear, LinearOptions};
pub use spans::{locate_pairs, LocatedPairs};
pub use synthesizers::{
    Masked, MaskedOptions, RandomReplace, RandomReplaceOptions, SpanPairs, SpanPairsOptions,
};
pub use trainers::{log_tail, CommandOptions, CommandTrainer, InProcessTrainer, PLACEHOLDERS};

use std::sync::Arc;

use rediff_api::registry::{Plugin, Registrar, RegistryError};

/// Registers every component of this crate.
#[derive(Debug, Default, Clone, Copy)]
pub struct StandardPlugin;

impl Plugin for StandardPlugin {
    fn name(&self) -> &str {
        "rediff-standard"
    }

    fn build(&self, r: &mut Registrar<'_>) -> Result<(), RegistryError> {
        r.data_source(
            "conversations",
            "LLaVA conversations and ViCrit samples from JSON / JSON Lines files (reference formats)",
            |spec, ctx| {
                Ok(Box::new(
                    Conversations::new(spec.options::<ConversationsOptions>()?.resolved(ctx))
                    .map_err(|m| spec.error(m))?,
                ))
            },
        )?;
        r.trainer(
            "in-process",
            "the engine's own trainer: Stage II rounds train in this process (the default)",
            |_, _| Ok(Arc::new(trainers::InProcessTrainer)),
        )?;
        r.trainer(
            "command",
            "runs a command per Stage II round (e.g. the official DeepSpeed script) and loads the checkpoint it writes",
            |spec, ctx| {
                let mut options: CommandOptions = spec.options()?;
                if options.cwd.is_none() {
                    options.cwd = ctx.base_dir.clone();
                }
                Ok(Arc::new(
                    CommandTrainer::new(options).map_err(|m| spec.error(m))?,
                ))
            },
        )?;
        r.schedule(
            "linear",
            "linear mask probability p = (1-eps) t + eps; uniform unmask counts, remainder first",
            |spec, _| {
                Ok(Arc::new(
                    Linear::new(spec.options()?).map_err(|m| spec.error(m))?,
                ))
            },
        )?;
        r.synthesizer(
            "masked",
            "plain masked diffusion (LLaDA): loss on masked positions, sum / (L p)",
            |spec, _| Ok(Arc::new(Masked::new(spec.options()?))),
        )?;
        r.synthesizer(
            "random-replace",
            "mask, then replace unmasked tokens at `rate`; masked/replaced/kept group means / p",
            |spec, _| {
                Ok(Arc::new(
                    RandomReplace::new(spec.options()?).map_err(|m| spec.error(m))?,
                ))
            },
        )?;
        r.synthesizer(
            "span-pairs",
            "hallucination pairs {org, target} located in the response; mean CE over revise spans",
            |spec, _| {
                Ok(Arc::new(
                    SpanPairs::new(spec.options()?).map_err(|m| spec.error(m))?,
                ))
            },
        )?;
        r.policy(
            "none",
            "plain denoising: decoded tokens are final (`remasking` low_confidence / random)",
            |spec, _| {
                Ok(Arc::new(NoRefinement {
                    options: spec.options()?,
                }))
            },
        )?;
        r.policy(
            "refine",
            "ReDiff refinement: rewrite decoded tokens (the last `revise_start` share of the steps; top `topk` share; `remasking`)",
            |spec, _| Ok(Arc::new(Refine::new(spec.options()?).map_err(|m| spec.error(m))?)),
        )?;
        r.policy(
            "threshold",
            "Fast-dLLM: unmask every mask with p >= `threshold` (at least one) or by the `factor` rule; `revise` adds ReDiff's rewrites",
            |spec, _| Ok(Arc::new(Threshold::new(spec.options()?).map_err(|m| spec.error(m))?)),
        )?;
        r.policy(
            "remdm",
            "ReMDM: remask decoded tokens with probability sigma_t (`sampler` cap / rescale / conf / loop, `eta`)",
            |spec, _| Ok(Arc::new(Remdm::new(spec.options()?).map_err(|m| spec.error(m))?)),
        )?;
        r.policy(
            "wino",
            "WINO: draft masks with p > `threshold`, remask decoded tokens with p < `threshold_back`",
            |spec, _| Ok(Arc::new(Wino::new(spec.options()?).map_err(|m| spec.error(m))?)),
        )?;
        r.policy(
            "edit",
            "LLaDA 2.1: unmask with p > `threshold`, rewrite tokens whose new argmax has p > `editing_threshold`",
            |spec, _| Ok(Arc::new(Edit::new(spec.options()?).map_err(|m| spec.error(m))?)),
        )?;
        Ok(())
    }
}
