//! Refinement policies.

use rediff_api::policy::{RefinementPolicy, RevisionContext};
use serde::Deserialize;

/// `none` takes no options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoOptions {}

/// Plain denoising: decoded tokens are never rewritten.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRefinement;

impl RefinementPolicy for NoRefinement {
    fn select(&self, _ctx: &RevisionContext<'_>) -> Vec<usize> {
        Vec::new()
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
            if !(0.0..=1.0).contains(&f) {
                return Err(format!("revise_start must lie in [0, 1], got {f}"));
            }
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

impl RefinementPolicy for Refine {
    fn select(&self, ctx: &RevisionContext<'_>) -> Vec<usize> {
        if ctx.step < self.first_step(ctx.steps) {
            return Vec::new();
        }
        match self.options.topk {
            None => ctx.candidates.iter().map(|c| c.position).collect(),
            Some(f) => {
                let k = (ctx.candidates.len() as f32 * f as f32) as usize;
                ctx.reference_top_k(k)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rediff_api::policy::RevisionCandidate;

    fn cands() -> Vec<RevisionCandidate> {
        [(0, 0.1), (3, 0.9), (5, 0.5), (6, 0.7)]
            .iter()
            .map(|&(position, confidence)| RevisionCandidate {
                position,
                confidence,
            })
            .collect()
    }

    fn select(p: &Refine, step: usize, steps: usize) -> Vec<usize> {
        let c = cands();
        let picks = std::cell::RefCell::new(Vec::new());
        let mut v = p.select(&RevisionContext::new(step, steps, &c, Some(700), 8, &picks));
        v.sort_unstable();
        v
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
    fn revise_start_is_a_share_of_the_block_steps_from_the_end() {
        // Default 1.0: from step 0.
        assert_eq!(select(&refine(None, None, None), 0, 8), vec![0, 3, 5, 6]);
        // 0.6 of 8 steps: 8 - ceil(4.8) = 3.
        let p = refine(Some(0.6), None, None);
        assert_eq!(p.first_step(8), 3);
        assert!(select(&p, 2, 8).is_empty());
        assert_eq!(select(&p, 3, 8), vec![0, 3, 5, 6]);
        // 0.5 of 16: from 8; 0 never revises.
        assert_eq!(refine(Some(0.5), None, None).first_step(16), 8);
        assert_eq!(refine(Some(0.0), None, None).first_step(16), 16);
        // An absolute start.
        assert_eq!(refine(None, Some(2), None).first_step(16), 2);
    }

    #[test]
    fn topk_keeps_the_floor_of_the_share_most_confident() {
        // floor(4 * 0.5) = 2: positions 3 (0.9) and 6 (0.7).
        assert_eq!(select(&refine(None, None, Some(0.5)), 0, 4), vec![3, 6]);
        // floor(4 * 0.3) = 1 (the reference's int(), not a ceiling).
        assert_eq!(select(&refine(None, None, Some(0.3)), 0, 4), vec![3]);
        // floor(4 * 0.2) = 0: nothing.
        assert!(select(&refine(None, None, Some(0.2)), 0, 4).is_empty());
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
        let c = cands();
        let picks = std::cell::RefCell::new(Vec::new());
        let ctx = RevisionContext::new(3, 4, &c, None, 8, &picks);
        assert!(NoRefinement.select(&ctx).is_empty());
        assert!(!NoRefinement.revises());
    }
}
