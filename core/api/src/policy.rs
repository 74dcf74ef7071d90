//! Refinement policies: which response positions the sampler rewrites with
//! the model's new prediction after it has unmasked the step's budget.

use std::cell::RefCell;

use crate::topk::torch_topk_indices;

/// A decoded position of the current block at one sampler step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RevisionCandidate {
    /// Response position.
    pub position: usize,
    /// The model's probability of its new prediction `x0` there; `-inf` at
    /// or after the end-of-turn stop (the reference excludes those).
    pub confidence: f64,
}

/// What a policy sees at one step of one sample.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RevisionContext<'a> {
    /// Step index within the block (0-based).
    pub step: usize,
    /// Steps per block.
    pub steps: usize,
    /// Positions of the current block decoded at the *start* of the step
    /// (a position unmasked in this step is never among them).
    pub candidates: &'a [RevisionCandidate],
    /// Prompt length in the model's sequence (the reference ranks over
    /// `[prompt | response]`, see [`RevisionContext::reference_top_k`]);
    /// `None` when the backend does not say.
    pub prompt_len: Option<usize>,
    /// Response length `L`.
    pub gen_length: usize,
    /// Prompt positions [`RevisionContext::reference_top_k`] picked (the
    /// sampler rewrites them as the reference does).
    pub prompt_picks: &'a RefCell<Vec<usize>>,
}

impl<'a> RevisionContext<'a> {
    /// The state at `step` of `steps` (within a block): the decoded
    /// `candidates`, the prompt length when prompt positions may be revised,
    /// the response length, and where prompt picks are recorded.
    pub fn new(
        step: usize,
        steps: usize,
        candidates: &'a [RevisionCandidate],
        prompt_len: Option<usize>,
        gen_length: usize,
        prompt_picks: &'a RefCell<Vec<usize>>,
    ) -> Self {
        Self {
            step,
            steps,
            candidates,
            prompt_len,
            gen_length,
            prompt_picks,
        }
    }
}

impl RevisionContext<'_> {
    /// The response positions the reference's `torch.topk(conf, k)` over
    /// the whole sequence picks, where only the candidates hold finite
    /// confidences: the `k` most confident candidates, and, when fewer are
    /// finite, the `-inf` entries PyTorch's tie order lands on; picks in the
    /// prompt are recorded in `prompt_picks`.
    /// An unknown prompt length counts as one long enough (`64 k`) for
    /// the tie picks to land in the prompt.
    pub fn reference_top_k(&self, k: usize) -> Vec<usize> {
        let p = self.prompt_len.unwrap_or(64 * k);
        let mut conf = vec![f64::NEG_INFINITY; p + self.gen_length];
        for c in self.candidates {
            conf[p + c.position] = c.confidence;
        }
        let mut out = Vec::new();
        for i in torch_topk_indices(&conf, k) {
            match i.checked_sub(p) {
                Some(j) => out.push(j),
                None if self.prompt_len.is_some() => self.prompt_picks.borrow_mut().push(i),
                None => {}
            }
        }
        out
    }
}

/// Chooses which response positions take the model's new prediction.
///
/// Implementations are registered under [`crate::ComponentKind::Policy`].
pub trait RefinementPolicy: Send + Sync {
    /// Positions to rewrite with `x0` at this step (normally a subset of
    /// the candidates).
    fn select(&self, ctx: &RevisionContext<'_>) -> Vec<usize>;

    /// Whether this policy ever revises (`false` = plain denoising, which
    /// also keeps special tokens allowed at decoded positions, as the
    /// reference's plain sampler does).
    fn revises(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_top_k_ranks_candidates_and_records_prompt_picks() {
        let c = [
            RevisionCandidate {
                position: 1,
                confidence: 0.2,
            },
            RevisionCandidate {
                position: 3,
                confidence: 0.9,
            },
        ];
        let picks = RefCell::new(Vec::new());
        let ctx = RevisionContext {
            step: 0,
            steps: 4,
            candidates: &c,
            prompt_len: Some(500),
            gen_length: 8,
            prompt_picks: &picks,
        };
        assert_eq!(ctx.reference_top_k(1), vec![3]);
        let mut two = ctx.reference_top_k(2);
        two.sort_unstable();
        assert_eq!(two, vec![1, 3]);
        // k exceeds the finite entries: on the heap path the tie picks are
        // the first (prompt) indices, recorded apart.
        let mut three = ctx.reference_top_k(3);
        three.sort_unstable();
        assert_eq!(three, vec![1, 3]);
        assert_eq!(picks.borrow().len(), 1);
        assert!(picks.borrow()[0] < 3, "{:?}", picks.borrow());
    }
}
