//! Refinement policies: which already-decoded positions the sampler rewrites.

/// A candidate for revision at one sampler step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RevisionCandidate {
    /// Response position.
    pub position: usize,
    /// The model's probability of its current prediction `x0` there.
    pub confidence: f64,
}

/// Chooses which already-decoded positions take the model's new prediction.
///
/// Implementations are registered under [`crate::ComponentKind::Policy`].
/// Candidates are exactly the positions of the current block that were
/// decoded at the *start* of the step, so a position unmasked in a step is
/// never revised in that same step.
pub trait RefinementPolicy: Send + Sync {
    /// Positions to rewrite at `step` (0-based, counted within the block).
    fn select(&self, step: usize, candidates: &[RevisionCandidate]) -> Vec<usize>;

    /// Whether this policy ever revises (`false` = plain denoising).
    fn revises(&self) -> bool {
        true
    }
}
