//! `none` (LLaDA's plain denoising) and `refine` (ReDiff, Ji et al. 2025,
//! <https://arxiv.org/abs/2510.19871>): both unmask the schedule's budget
//! as the reference's `generate_with_embeds` does; `refine` also rewrites
//! decoded tokens with the new prediction. Both take the reference's
//! `remasking`: rank the masks by confidence (default) or at random.

use rand::{Rng, RngCore};
use rediff_api::policy::{PositionView, RefinementPolicy, StepPlan, StepView};
use serde::Deserialize;

/// How a step ranks positions when it picks its budget of masks (and
/// `refine`'s `topk` share of decoded ones): the reference's `remasking`
/// argument of LLaDA's `generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remasking {
    /// By the confidence of each prediction (`low_confidence`: the lowest
    /// stay masked); LLaDA's and ReDiff's default.
    #[default]
    LowConfidence,
    /// By a uniform draw per position and step (`random`): which masks a
    /// step fills ignores the model, so the hardest words are not all left
    /// to the last step.
    Random,
}

impl Remasking {
    /// Each response position's ranking score this step, by position: its
    /// confidence, or a uniform draw (one per response position, in order,
    /// so a seed gives the same picks).
    fn scores(self, view: &StepView<'_>, rng: &mut dyn RngCore) -> Vec<f64> {
        match self {
            Remasking::LowConfidence => confidences(view),
            Remasking::Random => (0..view.gen_length).map(|_| rng.random::<f64>()).collect(),
        }
    }
}

/// Each response position's confidence, by position (`-inf` where the
/// view has none).
fn confidences(view: &StepView<'_>) -> Vec<f64> {
    let mut s = vec![f64::NEG_INFINITY; view.gen_length];
    for p in view.positions {
        s[p.position] = p.confidence;
    }
    s
}

/// The schedule's budget of masks before the stop with the highest `scores`,
/// picked as the reference's `torch.topk` picks them.
fn unmask_by(view: &StepView<'_>, scores: &[f64]) -> Vec<usize> {
    let score = |p: &PositionView| (p.is_masked() && p.before_stop).then(|| scores[p.position]);
    view.reference_top_k(view.budget, score)
}

/// Options of the `none` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoRefinementOptions {
    /// How masks are ranked (default `low_confidence`).
    pub remasking: Remasking,
}

/// Plain denoising: the schedule's budget of the most confident masks (or
/// of random ones, with `remasking = "random"`); decoded tokens are never
/// rewritten. `NoRefinement::default()` is LLaDA's default sampler.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRefinement {
    /// Its options.
    pub options: NoRefinementOptions,
}

impl RefinementPolicy for NoRefinement {
    fn plan(&self, view: &StepView<'_>, rng: &mut dyn RngCore) -> StepPlan {
        match self.options.remasking {
            Remasking::LowConfidence => StepPlan::unmask(view.schedule_unmask()),
            Remasking::Random => {
                let scores = Remasking::Random.scores(view, rng);
                StepPlan::unmask(unmask_by(view, &scores))
            }
        }
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
    /// How masks (and the `topk` share) are ranked (default `low_confidence`).
    pub remasking: Remasking,
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
        self.revisions_by(view, &confidences(view))
    }

    /// [`Refine::revisions`] with the `topk` share ranked by `scores` (by
    /// position): confidences, or the step's random draws.
    fn revisions_by(&self, view: &StepView<'_>, scores: &[f64]) -> Vec<usize> {
        if view.step < self.first_step(view.steps) {
            return Vec::new();
        }
        match self.options.topk {
            None => view.decoded().map(|p| p.position).collect(),
            Some(f) => {
                let k = (view.decoded().count() as f32 * f as f32) as usize;
                // Decoded positions of this block only: the reference
                // clears earlier blocks (`block_unmask_index[:, :block_start]`).
                view.reference_top_k(k, |p| {
                    (p.is_decoded() && p.before_stop && view.block.contains(&p.position))
                        .then(|| scores[p.position])
                })
            }
        }
    }
}

impl RefinementPolicy for Refine {
    fn plan(&self, view: &StepView<'_>, rng: &mut dyn RngCore) -> StepPlan {
        let scores = self.options.remasking.scores(view, rng);
        let mut unmask = match self.options.remasking {
            Remasking::LowConfidence => view.schedule_unmask(),
            Remasking::Random => unmask_by(view, &scores),
        };
        let mut revise = Vec::new();
        for j in self.revisions_by(view, &scores) {
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
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn both_unmask_the_budget_of_most_confident_masks() {
        let p = plan(&NoRefinement::default(), &block(), 0, 4, 2, None, 0);
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
    fn topk_ranks_only_the_current_block() {
        // Block 4..8 of a response of 8; positions 0..4 (an earlier block)
        // are decoded with the highest confidences, yet only this block's
        // decoded tokens (4: 0.3, 6: 0.7) may be revised.
        let rows: Vec<(u32, u32, f64, f64)> = vec![
            (1, 11, 0.99, 0.0),
            (2, 12, 0.98, 0.0),
            (3, 13, 0.97, 0.0),
            (4, 14, 0.96, 0.0),
            (5, 15, 0.3, 0.0),
            (MASK, 16, 0.8, 0.0),
            (6, 17, 0.7, 0.0),
            (MASK, 18, 0.2, 0.0),
        ];
        let all = positions(0, &rows);
        let picks = std::cell::RefCell::new(Vec::new());
        let view = StepView::new(4..8, 1, 4, 1, &all, None, 8, Some(100), &picks);
        for remasking in [Remasking::LowConfidence, Remasking::Random] {
            let p = Refine::new(RefineOptions {
                start: Some(0),
                topk: Some(0.5),
                remasking,
                ..Default::default()
            })
            .unwrap();
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
            let plan = p.plan(&view, &mut rng);
            plan.check(&view).expect("a valid plan");
            // floor(2 * 0.5) = 1 of the block's two decoded tokens.
            assert_eq!(plan.revise.len(), 1, "{remasking:?}: {plan:?}");
            assert!([4, 6].contains(&plan.revise[0]), "{remasking:?}: {plan:?}");
        }
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
        let p = plan(&NoRefinement::default(), &block(), 3, 4, 1, None, 0);
        assert!(p.revise.is_empty());
        assert!(!NoRefinement::default().revises());
    }

    fn random_none() -> NoRefinement {
        NoRefinement {
            options: NoRefinementOptions {
                remasking: Remasking::Random,
            },
        }
    }

    #[test]
    fn random_remasking_picks_budget_masks_reproducibly_whatever_the_confidence() {
        let none = random_none();
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let p = plan(&none, &block(), 0, 4, 2, None, seed);
            // Two distinct masked positions, never a decoded one.
            assert_eq!(p.unmask.len(), 2, "{p:?}");
            assert!(p.unmask.iter().all(|j| [1, 2, 4, 7].contains(j)), "{p:?}");
            assert!(p.unmask[0] < p.unmask[1]);
            assert!(p.revise.is_empty());
            // Same seed, same picks.
            assert_eq!(plan(&none, &block(), 0, 4, 2, None, seed).unmask, p.unmask);
            seen.extend(p.unmask);
        }
        // Confidence order would always pick 1 and 2 (0.6, 0.8); random
        // order reaches the least confident masks too.
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 2, 4, 7]);
        // Masks after the stop are never picked.
        let mut b = block();
        b.iter_mut()
            .filter(|p| p.position >= 4)
            .for_each(|p| p.before_stop = false);
        for seed in 0..16 {
            let p = plan(&none, &b, 0, 4, 2, None, seed);
            assert_eq!(p.unmask, vec![1, 2], "{p:?}");
        }
    }

    #[test]
    fn random_refine_rewrites_every_decoded_token_and_ranks_topk_at_random() {
        let random = |topk| {
            Refine::new(RefineOptions {
                start: Some(0),
                topk,
                remasking: Remasking::Random,
                ..Default::default()
            })
            .unwrap()
        };
        let p = plan(&random(None), &block(), 0, 4, 1, None, 3);
        assert_eq!(p.revise, vec![0, 3, 5, 6]);
        assert_eq!(p.unmask.len(), 1);
        // topk 0.5 of 4 decoded: two of them, not always the two most confident.
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let p = plan(&random(Some(0.5)), &block(), 0, 4, 1, None, seed);
            assert_eq!(p.revise.len(), 2, "{p:?}");
            seen.extend(p.revise);
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 3, 5, 6]);
    }

    #[test]
    fn remasking_parses_as_the_reference_spells_it() {
        let parse = |text: &str| rediff_api::ComponentSpec::from_toml_str("p.toml", text).unwrap();
        let o: NoRefinementOptions = parse("kind = \"none\"\nremasking = \"random\"")
            .options()
            .unwrap();
        assert_eq!(o.remasking, Remasking::Random);
        let o: RefineOptions = parse("kind = \"refine\"\nremasking = \"low_confidence\"")
            .options()
            .unwrap();
        assert_eq!(o.remasking, Remasking::LowConfidence);
        let err = parse("kind = \"none\"\nremasking = \"lowest\"")
            .options::<NoRefinementOptions>()
            .unwrap_err();
        assert!(err.message.contains("low_confidence"), "{err}");
    }
}
