//! Refinement policies: at every sampler step, a policy reads the current
//! block (each position's state, current token, the model's new prediction
//! and both confidences) and returns a [`StepPlan`]: which masked positions
//! to unmask, which decoded positions take the new prediction, and which go
//! back to `[MASK]`.
//!
//! One trait covers the refiners the field compares: fixed-budget denoising
//! (LLaDA), ReDiff's revision of decoded tokens, confidence-threshold
//! parallel decoding (Fast-dLLM), remasking samplers (ReMDM), draft and
//! verify (WINO) and token editing (LLaDA 2.1). The sampler applies the
//! plan, refuses an impossible one with an error naming the policy, counts
//! forward passes and ends the block (see [`StepPlan::more`]).

use std::cell::RefCell;
use std::ops::Range;

use crate::topk::torch_topk_indices;

/// The random stream a policy draws from (re-exported so a plugin uses the
/// same `rand` as the host).
pub use rand::RngCore;

/// Where a position of the current block stands at the start of a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PositionState {
    /// Still `[MASK]`.
    Masked,
    /// Holds a token.
    Decoded {
        /// The step within the block at which it was last unmasked.
        since: usize,
        /// The confidence its token had when it was unmasked (ReMDM's `psi`).
        confidence: f64,
    },
}

/// One position of the current block, as the new forward pass sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PositionView {
    /// Response position (index into the whole response, not the block).
    pub position: usize,
    /// Masked or decoded (and since when).
    pub state: PositionState,
    /// Its current token (the mask id while masked).
    pub token: u32,
    /// The model's new prediction `x0` there (Gumbel-argmax at the run's temperature).
    pub predicted: u32,
    /// `p(x0)`: the softmax probability of `predicted`, float64, noise-free,
    /// over the tokens allowed there.
    pub confidence: f64,
    /// The probability the new logits give the *current* token (0 when it
    /// is suppressed there; for a masked position, the mask id's).
    pub current_confidence: f64,
    /// Whether it lies before the end-of-turn stop (always, without one).
    /// Positions at or after the stop are cut from the output.
    pub before_stop: bool,
}

impl PositionView {
    /// Whether it is still `[MASK]`.
    pub fn is_masked(&self) -> bool {
        self.state == PositionState::Masked
    }

    /// Whether it holds a token.
    pub fn is_decoded(&self) -> bool {
        !self.is_masked()
    }
}

/// What a policy sees at one step of one sample.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StepView<'a> {
    /// The current block's response positions.
    pub block: Range<usize>,
    /// Step index within the block (0-based; may exceed `steps` for
    /// policies that run until the block is decoded).
    pub step: usize,
    /// The schedule's steps per block.
    pub steps: usize,
    /// The schedule's unmask budget for this step (0 past its last step).
    pub budget: usize,
    /// Every response position from the start up to the block's end (or
    /// up to the stop, when an end-of-turn past the block was decoded), in
    /// order. Earlier blocks are finished, but a revision to the mask token
    /// masks a position there again, and the reference fills every mask
    /// before the block's end or the stop: [`StepView::unmaskable`] covers
    /// them all; [`StepView::decoded`] and [`StepView::in_block`] only the block.
    pub positions: &'a [PositionView],
    /// The end-of-turn stop before the step (earliest one ever decoded).
    pub stop: Option<usize>,
    /// Response length `L`.
    pub gen_length: usize,
    /// Prompt length in the model's sequence (the reference ranks over
    /// `[prompt | response]`); `None` when the backend does not say.
    pub prompt_len: Option<usize>,
    /// Positions this block's previous step unmasked; `None` at its first step.
    pub last_unmasked: Option<usize>,
    prompt_picks: &'a RefCell<Vec<usize>>,
}

impl<'a> StepView<'a> {
    /// The view of one step: the block's `positions` at `step` of `steps`
    /// with the schedule's `budget`; `prompt_picks` collects the prompt
    /// positions the reference-order helpers pick (see
    /// [`StepView::schedule_unmask`]).
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    pub fn new(
        block: Range<usize>,
        step: usize,
        steps: usize,
        budget: usize,
        positions: &'a [PositionView],
        stop: Option<usize>,
        gen_length: usize,
        prompt_len: Option<usize>,
        prompt_picks: &'a RefCell<Vec<usize>>,
    ) -> Self {
        Self {
            block,
            step,
            steps,
            budget,
            positions,
            stop,
            gen_length,
            prompt_len,
            last_unmasked: None,
            prompt_picks,
        }
    }

    /// The same view with how many positions the block's previous step unmasked.
    #[doc(hidden)]
    pub fn with_last_unmasked(mut self, n: Option<usize>) -> Self {
        self.last_unmasked = n;
        self
    }

    /// The view of response position `j`, when it lies in the block (or
    /// between the block and the stop).
    pub fn get(&self, j: usize) -> Option<&PositionView> {
        j.checked_sub(self.positions.first()?.position)
            .and_then(|i| self.positions.get(i))
    }

    /// Masked positions before the stop (and before the block's end, or in
    /// it): those a policy may unmask.
    pub fn unmaskable(&self) -> impl Iterator<Item = &PositionView> + '_ {
        self.positions
            .iter()
            .filter(|p| p.is_masked() && p.before_stop)
    }

    /// Positions of the block decoded before this step.
    pub fn decoded(&self) -> impl Iterator<Item = &PositionView> + '_ {
        self.in_block().filter(|p| p.is_decoded())
    }

    /// The positions of the block itself.
    pub fn in_block(&self) -> impl Iterator<Item = &PositionView> + '_ {
        self.positions
            .iter()
            .filter(|p| self.block.contains(&p.position))
    }

    /// Whether any position of the block is still masked.
    pub fn any_masked(&self) -> bool {
        self.in_block().any(PositionView::is_masked)
    }

    /// The schedule's rule (LLaDA, and the ReDiff reference): the
    /// [`StepView::budget`] most confident masked positions before the
    /// stop, chosen as the reference's `torch.topk` over `[prompt |
    /// response]` chooses, ties included. Picks that tie order lands in the
    /// prompt are recorded for the sampler, which rewrites those prompt
    /// positions as the reference does.
    pub fn schedule_unmask(&self) -> Vec<usize> {
        self.reference_top_k(self.budget, |p| {
            (p.is_masked() && p.before_stop).then_some(p.confidence)
        })
    }

    /// The `k` picks of the reference's `torch.topk(conf, k)` over
    /// `[prompt | response]`, where `score` gives the finite confidences
    /// (`None` = `-inf`). Response picks are returned in ascending order
    /// (and may include `-inf` positions when fewer than `k` are finite);
    /// prompt picks are recorded for the sampler (counted only, when the
    /// prompt length is unknown: it then counts as one long enough, `64 k`,
    /// for tie picks to land in the prompt).
    pub fn reference_top_k(
        &self,
        k: usize,
        score: impl Fn(&PositionView) -> Option<f64>,
    ) -> Vec<usize> {
        if k == 0 {
            return Vec::new();
        }
        let p = self.prompt_len.unwrap_or(64 * k);
        let mut conf = vec![f64::NEG_INFINITY; p + self.gen_length];
        for v in self.positions {
            if let Some(c) = score(v) {
                conf[p + v.position] = c;
            }
        }
        let mut out = Vec::new();
        for i in torch_topk_indices(&conf, k) {
            match i.checked_sub(p) {
                Some(j) => out.push(j),
                None => self.prompt_picks.borrow_mut().push(i),
            }
        }
        out.sort_unstable();
        out
    }
}

/// The positions with the `k` highest scores (ties: lower position first).
pub fn top_k(scored: impl IntoIterator<Item = (usize, f64)>, k: usize) -> Vec<usize> {
    let mut v: Vec<(usize, f64)> = scored.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().take(k).map(|(j, _)| j).collect()
}

/// The positions with the `k` lowest scores (ties: lower position first).
pub fn bottom_k(scored: impl IntoIterator<Item = (usize, f64)>, k: usize) -> Vec<usize> {
    let mut v: Vec<(usize, f64)> = scored.into_iter().collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    v.into_iter().take(k).map(|(j, _)| j).collect()
}

/// What a policy asks of one step. Positions are response positions inside
/// the current block; the three lists must be disjoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepPlan {
    /// Masked positions that take their prediction.
    pub unmask: Vec<usize>,
    /// Positions decoded before the step that take their new prediction.
    pub revise: Vec<usize>,
    /// Positions decoded before the step that go back to `[MASK]`.
    pub remask: Vec<usize>,
    /// Keep stepping this block even when nothing in it is masked (token
    /// editing until it converges). Otherwise the block ends once no mask
    /// is left before the stop.
    pub more: bool,
}

impl StepPlan {
    /// A plan that unmasks `unmask` and nothing else.
    pub fn unmask(unmask: Vec<usize>) -> Self {
        Self {
            unmask,
            ..Self::default()
        }
    }

    /// The same plan, also revising `revise`.
    pub fn with_revise(mut self, revise: Vec<usize>) -> Self {
        self.revise = revise;
        self
    }

    /// The same plan, also remasking `remask`.
    pub fn with_remask(mut self, remask: Vec<usize>) -> Self {
        self.remask = remask;
        self
    }

    /// The same plan, asking for another step of the block (see [`StepPlan::more`]).
    pub fn with_more(mut self, more: bool) -> Self {
        self.more = more;
        self
    }

    /// Checks the plan against the view; the message says what is wrong.
    #[doc(hidden)]
    pub fn check(&self, view: &StepView<'_>) -> std::result::Result<(), String> {
        let mut seen = std::collections::BTreeMap::new();
        for (list, what) in [
            (&self.unmask, "unmask"),
            (&self.revise, "revise"),
            (&self.remask, "remask"),
        ] {
            for &j in list {
                let outside = || {
                    format!(
                        "asked to {what} position {j}, outside the current block {}..{}",
                        view.block.start, view.block.end
                    )
                };
                if what != "unmask" && !view.block.contains(&j) {
                    return Err(outside());
                }
                let Some(p) = view.get(j) else {
                    return Err(outside());
                };
                match (what, p.is_masked()) {
                    ("unmask", false) => {
                        return Err(format!(
                            "asked to unmask position {j}, which is already decoded"
                        ))
                    }
                    ("revise", true) => {
                        return Err(format!("asked to revise position {j}, which is masked"))
                    }
                    ("remask", true) => {
                        return Err(format!(
                            "asked to remask position {j}, which is already masked"
                        ))
                    }
                    _ => {}
                }
                if let Some(other) = seen.insert(j, what) {
                    return Err(format!(
                        "asked to {other} and {what} position {j} in one step"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Decides, at every sampler step, what to unmask, revise and remask.
///
/// Implementations are registered under [`crate::ComponentKind::Policy`];
/// third-party ones ship as plugins (see [`crate::export_plugin!`]).
pub trait RefinementPolicy: Send + Sync {
    /// The plan for this step. `rng` is the run's seeded stream (the same
    /// seed gives the same plans).
    fn plan(&self, view: &StepView<'_>, rng: &mut dyn RngCore) -> StepPlan;

    /// Whether this policy rewrites decoded tokens. `false` keeps special
    /// tokens allowed at decoded positions (their predictions and
    /// confidences), as the reference's plain sampler does; `true`
    /// suppresses them everywhere, as its refining sampler does.
    fn revises(&self) -> bool {
        true
    }

    /// The most steps a block runs, given the schedule's `scheduled` steps
    /// per block: `Some(scheduled)` (the default) follows the schedule as
    /// the reference does; `None` runs until the block is decoded (and the
    /// policy asks for no more), bounded by the sampler's reported guard.
    fn block_steps(&self, scheduled: usize) -> Option<usize> {
        Some(scheduled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(position: usize, masked: bool, confidence: f64) -> PositionView {
        PositionView {
            position,
            state: if masked {
                PositionState::Masked
            } else {
                PositionState::Decoded {
                    since: 0,
                    confidence: 1.0,
                }
            },
            token: if masked { 99 } else { 1 },
            predicted: 2,
            confidence,
            current_confidence: 0.5,
            before_stop: true,
        }
    }

    #[test]
    fn reference_top_k_ranks_and_records_prompt_picks() {
        let ps = [pos(4, true, 0.2), pos(5, false, 0.8), pos(6, true, 0.9)];
        let picks = RefCell::new(Vec::new());
        let view = StepView::new(4..7, 0, 4, 1, &ps, None, 8, Some(500), &picks);
        assert_eq!(view.schedule_unmask(), vec![6]);
        let two = view.reference_top_k(2, |p| p.is_masked().then_some(p.confidence));
        assert_eq!(two, vec![4, 6]);
        // k exceeds the finite entries: the tie picks land in the prompt.
        let three = view.reference_top_k(3, |p| p.is_masked().then_some(p.confidence));
        assert_eq!(three, vec![4, 6]);
        assert_eq!(picks.borrow().len(), 1);
        assert!(picks.borrow()[0] < 3, "{:?}", picks.borrow());
    }

    #[test]
    fn plans_are_checked_against_the_block() {
        let ps = [pos(4, true, 0.2), pos(5, false, 0.8)];
        let picks = RefCell::new(Vec::new());
        let view = StepView::new(4..6, 0, 4, 1, &ps, None, 8, None, &picks);
        assert!(StepPlan::unmask(vec![4])
            .with_revise(vec![5])
            .check(&view)
            .is_ok());
        let err = |p: StepPlan| p.check(&view).unwrap_err();
        assert!(err(StepPlan::unmask(vec![5])).contains("already decoded"));
        assert!(err(StepPlan::default().with_remask(vec![4])).contains("already masked"));
        assert!(err(StepPlan::default().with_revise(vec![4])).contains("masked"));
        assert!(err(StepPlan::unmask(vec![7])).contains("outside the current block 4..6"));
        assert!(err(StepPlan::unmask(vec![3])).contains("outside"));
        let both = StepPlan::default()
            .with_revise(vec![5])
            .with_remask(vec![5]);
        assert!(err(both).contains("revise and remask position 5"));
        assert!(err(StepPlan::unmask(vec![4, 4])).contains("unmask and unmask"));
    }

    #[test]
    fn top_and_bottom_k_break_ties_by_position() {
        let s = [(3, 0.5), (1, 0.5), (2, 0.9), (0, 0.1)];
        assert_eq!(top_k(s, 2), vec![2, 1]);
        assert_eq!(bottom_k(s, 2), vec![0, 1]);
    }
}
