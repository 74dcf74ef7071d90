//! Schedule and policy stand-ins shared by the sampler's tests.

use rediff_api::policy::{RefinementPolicy, StepPlan, StepView};
use rediff_api::schedule::{uniform_unmask_counts, NoiseSchedule};

/// `p = t`, uniform unmask counts.
pub struct Uniform;

impl NoiseSchedule for Uniform {
    fn mask_probability(&self, t: f32) -> f32 {
        t
    }
    fn unmask_counts(&self, masked: usize, steps: usize) -> Vec<usize> {
        uniform_unmask_counts(masked, steps)
    }
}

/// Plain denoising: the schedule's budget, no revisions.
pub struct Plain;

impl RefinementPolicy for Plain {
    fn plan(&self, v: &StepView<'_>, _: &mut dyn rand::RngCore) -> StepPlan {
        StepPlan::unmask(v.schedule_unmask())
    }
    fn revises(&self) -> bool {
        false
    }
}
