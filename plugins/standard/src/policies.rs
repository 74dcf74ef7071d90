//! Refinement policies.

use rediff_core::policy::{RefinementPolicy, RevisionCandidate};
use rediff_core::sampler::top_k_by_confidence;
use serde::Deserialize;

/// `none` takes no options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoOptions {}

/// Plain denoising: decoded tokens are never rewritten.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRefinement;

impl RefinementPolicy for NoRefinement {
    fn select(&self, _step: usize, _candidates: &[RevisionCandidate]) -> Vec<usize> {
        Vec::new()
    }

    fn revises(&self) -> bool {
        false
    }
}

/// Options of the `refine` policy.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefineOptions {
    /// First step (0-based, within each block) at which decoded tokens are
    /// revised (the reference's `revise_start`). Default 0.
    pub start: usize,
    /// Revise only the top `topk` share (0 < topk <= 1) of decoded positions
    /// by confidence, rounded up; absent = all of them.
    pub topk: Option<f64>,
}

/// ReDiff refinement: every position decoded before the step takes the new
/// prediction (or only the most confident `topk` share).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refine {
    options: RefineOptions,
}

impl Refine {
    /// Validates `topk`.
    pub fn new(options: RefineOptions) -> Result<Self, String> {
        if let Some(f) = options.topk {
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!("topk must lie in (0, 1], got {f}"));
            }
        }
        Ok(Self { options })
    }
}

impl RefinementPolicy for Refine {
    fn select(&self, step: usize, candidates: &[RevisionCandidate]) -> Vec<usize> {
        if step < self.options.start {
            return Vec::new();
        }
        match self.options.topk {
            None => candidates.iter().map(|c| c.position).collect(),
            Some(f) => {
                let k = (f * candidates.len() as f64).ceil() as usize;
                top_k_by_confidence(candidates, k)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands() -> Vec<RevisionCandidate> {
        [(0, 0.1), (3, 0.9), (5, 0.5), (6, 0.7)]
            .iter()
            .map(|&(position, confidence)| RevisionCandidate {
                position,
                confidence,
            })
            .collect()
    }

    #[test]
    fn refine_rewrites_all_from_start() {
        let p = Refine::new(RefineOptions {
            start: 2,
            topk: None,
        })
        .unwrap();
        assert!(p.select(0, &cands()).is_empty());
        assert!(p.select(1, &cands()).is_empty());
        assert_eq!(p.select(2, &cands()), vec![0, 3, 5, 6]);
        assert_eq!(p.select(9, &cands()), vec![0, 3, 5, 6]);
    }

    #[test]
    fn refine_topk_takes_the_most_confident_share() {
        let p = Refine::new(RefineOptions {
            start: 0,
            topk: Some(0.5),
        })
        .unwrap();
        assert_eq!(p.select(0, &cands()), vec![3, 6]);
        // ceil(0.3 * 4) = 2
        let p = Refine::new(RefineOptions {
            start: 0,
            topk: Some(0.3),
        })
        .unwrap();
        assert_eq!(p.select(0, &cands()), vec![3, 6]);
        assert!(Refine::new(RefineOptions {
            start: 0,
            topk: Some(0.0)
        })
        .is_err());
    }

    #[test]
    fn none_never_revises() {
        assert!(NoRefinement.select(3, &cands()).is_empty());
        assert!(!NoRefinement.revises());
    }
}
