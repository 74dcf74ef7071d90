//! `none` (LLaDA's plain denoising) and `refine` (ReDiff, Ji et al. 2025,
//! <https://arxiv.org/abs/2510.19871>): both unmask the schedule's budget
//! as the reference's `generate_with_embeds` does; `refine` also rewrites
//! decoded tokens with the new prediction.

use rand::RngCore;
use rediff_api::policy::{RefinementPolicy, StepPlan, StepView};
use serde::Deserialize;

/// Plain denoising: the schedule's budget of the most confident masks;
/// decoded tokens are never rewritten.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRefinement;

impl RefinementPolicy for NoRefinement {
    fn plan(&self, view: &StepView<'_>, _rng: &mut dyn RngCore) -> StepPlan {
        StepPlan::unmask(view.schedule_unmask())
    }

    fn revises(&self) -> bool {
        false
    }
}

/// Options of the `refine` policy (the reference's `revise_*` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefineOptions {
    /// The share of each block's steps, counted from its end, that revise
    /// (the reference's `revise_start`): revision starts at step
    /// `steps - ceil(steps * revise_start)`. Default 1.0: every step.
    pub revise_start: Option<f64>,
    /// Alternatively, the first revising step as an index within the block
    /// (rediff's own option; not with `revise_start`).
    pub start: Option<usize>,
    /// Revise only the `floor(n * topk)` most confident of the `n` decoded
    /// positions (the reference's `revise_topk`; its product is taken in
    /// float32 as PyTorch does); absent = all of them.
    #[serde(alias = "revise_topk")]
    pub topk: Option<f64>,
}

/// ReDiff refinement: positions decoded before the step take the new
/// prediction (all of them, or the most confident `topk` share), from the
/// `revise_start` share of the block's steps on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refine {
    options: RefineOptions,
}

impl Refine {
    /// Validates the options.
    pub fn new(options: RefineOptions) -> Result<Self, String> {
        if let Some(f) = options.topk {
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!("topk must lie in (0, 1], got {f}"));
            }
        }
        if let Some(f) = options.revise_start {
            super::check_unit("revise_start", f)?;
            if options.start.is_some() {
                return Err("give either revise_start (a share of the steps) or start (a step index), not both".into());
            }
        }
        Ok(Self { options })
    }

    /// The first step (within a block of `steps`) that revises.
    pub fn first_step(&self, steps: usize) -> usize {
        match (self.options.start, self.options.revise_start) {
            (Some(s), _) => s,
            (None, f) => steps - ((steps as f64 * f.unwrap_or(1.0)).ceil() as usize).min(steps),
        }
    }
}

impl Refine {
    /// The positions the reference's revision selects at this step: all
    /// decoded positions, or the `topk` share ranked as its `torch.topk`
    /// over `[prompt | response]` ranks them (ties included: a tie pick on a
    /// masked position of the block takes its prediction too, as in the
    /// reference; one in the prompt is handed to the sampler).
    pub fn revisions(&self, view: &StepView<'_>) -> Vec<usize> {
        if view.step < self.first_step(view.steps) {
            return Vec::new();
        }
        match self.options.topk {
            None => view.decoded().map(|p| p.position).collect(),
            Some(f) => {
                let k = (view.decoded().count() as f32 * f as f32) as usize;
                view.reference_top_k(k, |p| {
                    (p.is_decoded() && p.before_stop).then_some(p.confidence)
                })
            }
        }
    }
}

impl RefinementPolicy for Refine {
    fn plan(&self, view: &StepView<'_>, _rng: &mut dyn RngCore) -> StepPlan {
        let mut unmask = view.schedule_unmask();
        let mut revise = Vec::new();
        for j in self.revisions(view) {
            match view.get(j) {
                Some(p) if p.is_decoded() => revise.push(j),
                Some(_) if !unmask.contains(&j) => unmask.push(j),
                // A tie pick outside the block, or already unmasked.
                _ => {}
            }
        }
        StepPlan::unmask(unmask).with_revise(revise)
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripted::{plan, positions, MASK};
    use super::*;

    /// Decoded at 0 (0.1), 3 (0.9), 5 (0.5), 6 (0.7); masked at 1, 2, 4, 7.
    fn block() -> Vec<rediff_api::policy::PositionView> {
        positions(
            0,
            &[
                (1, 11, 0.1, 0.0),
                (MASK, 12, 0.6, 0.0),
                (MASK, 13, 0.8, 0.0),
                (2, 14, 0.9, 0.0),
                (MASK, 15, 0.3, 0.0),
                (3, 16, 0.5, 0.0),
                (4, 17, 0.7, 0.0),
                (MASK, 18, 0.2, 0.0),
            ],
        )
    }

    fn revised(p: &Refine, step: usize, steps: usize) -> Vec<usize> {
        plan(p, &block(), step, steps, 1, None, 0).revise
    }

    fn refine(revise_start: Option<f64>, start: Option<usize>, topk: Option<f64>) -> Refine {
        Refine::new(RefineOptions {
            revise_start,
            start,
            topk,
        })
        .unwrap()
    }

    #[test]
    fn both_unmask_the_budget_of_most_confident_masks() {
        let p = plan(&NoRefinement, &block(), 0, 4, 2, None, 0);
        assert_eq!(p.unmask, vec![1, 2]);
        assert!(p.revise.is_empty() && p.remask.is_empty() && !p.more);
        let p = plan(&refine(None, None, None), &block(), 0, 4, 1, None, 0);
        assert_eq!(p.unmask, vec![2]);
    }

    #[test]
    fn revise_start_is_a_share_of_the_block_steps_from_the_end() {
        // Default 1.0: from step 0.
        assert_eq!(revised(&refine(None, None, None), 0, 8), vec![0, 3, 5, 6]);
        // 0.6 of 8 steps: 8 - ceil(4.8) = 3.
        let p = refine(Some(0.6), None, None);
        assert_eq!(p.first_step(8), 3);
        assert!(revised(&p, 2, 8).is_empty());
        assert_eq!(revised(&p, 3, 8), vec![0, 3, 5, 6]);
        // 0.5 of 16: from 8; 0 never revises.
        assert_eq!(refine(Some(0.5), None, None).first_step(16), 8);
        assert_eq!(refine(Some(0.0), None, None).first_step(16), 16);
        // An absolute start.
        assert_eq!(refine(None, Some(2), None).first_step(16), 2);
    }

    #[test]
    fn topk_keeps_the_floor_of_the_share_most_confident() {
        // floor(4 * 0.5) = 2: positions 3 (0.9) and 6 (0.7).
        assert_eq!(revised(&refine(None, None, Some(0.5)), 0, 4), vec![3, 6]);
        // floor(4 * 0.3) = 1 (the reference's int(), not a ceiling).
        assert_eq!(revised(&refine(None, None, Some(0.3)), 0, 4), vec![3]);
        // floor(4 * 0.2) = 0: nothing.
        assert!(revised(&refine(None, None, Some(0.2)), 0, 4).is_empty());
    }

    #[test]
    fn bad_options_are_refused() {
        let bad = |o: RefineOptions| Refine::new(o).is_err();
        assert!(bad(RefineOptions {
            topk: Some(0.0),
            ..Default::default()
        }));
        assert!(bad(RefineOptions {
            revise_start: Some(1.5),
            ..Default::default()
        }));
        assert!(bad(RefineOptions {
            revise_start: Some(0.5),
            start: Some(1),
            ..Default::default()
        }));
    }

    #[test]
    fn none_never_revises() {
        let p = plan(&NoRefinement, &block(), 3, 4, 1, None, 0);
        assert!(p.revise.is_empty());
        assert!(!NoRefinement.revises());
    }
}
