//! Built-in refinement policies: what each sampler step unmasks, revises
//! and remasks.
//!
//! | name | after | unmasks | revises | remasks |
//! |---|---|---|---|---|
//! | `none` | LLaDA | the schedule's budget | never | never |
//! | `refine` | ReDiff (Ji et al., 2025) | the schedule's budget | decoded tokens | never |
//! | `threshold` | Fast-dLLM (Wu et al., 2025) | every mask with `p >= threshold`, at least one | optionally | never |
//! | `remdm` | ReMDM (Wang et al., 2025) | by the posterior's unmask probability | never | with probability `sigma_t` |
//! | `wino` | WINO (Hong et al., 2025) | every mask with `p > threshold`, at least one | never | decoded tokens whose `p < threshold_back` |
//! | `edit` | LLaDA 2.1 (Bie et al., 2026) | every mask with `p > threshold`, at least one | where the new argmax differs with `p > editing_threshold` | never |

mod edit;
mod refine;
mod remdm;
mod threshold;
mod wino;

#[cfg(test)]
pub(crate) mod scripted;

pub use edit::{Edit, EditOptions};
pub use refine::{NoRefinement, NoRefinementOptions, Refine, RefineOptions, Remasking};
pub use remdm::{Remdm, RemdmOptions, RemdmSampler};
pub use threshold::{Threshold, ThresholdOptions};
pub use wino::{Wino, WinoOptions};

/// Refuses `value` outside `[0, 1]`, naming the option.
pub(crate) fn check_unit(name: &str, value: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(format!("{name} must lie in [0, 1], got {value}"))
    }
}
