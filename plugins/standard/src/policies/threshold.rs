//! `threshold`: confidence-threshold parallel decoding after Fast-dLLM
//! (Wu et al., 2025, "Fast-dLLM: Training-free Acceleration of Diffusion LLM
//! by Enabling KV Cache and Parallel Decoding", <https://arxiv.org/abs/2505.22618>;
//! code: NVlabs/Fast-dLLM `llada/generate.py`, `get_transfer_index` and
//! `get_transfer_index_dynamic`).
//!
//! Every masked position of the block (before the stop) whose confidence is
//! at least `threshold` is unmasked; the most confident one always is
//! ("at least one"), so a block of `B` positions takes at most `B` steps.
//! The schedule's budget is ignored: the number of tokens per step follows
//! the model's confidence. With `factor`, the paper's adaptive rule accepts
//! the top `n` when `c_(n) >= 1 - factor / (n + 1)`. With `revise = true`,
//! decoded tokens also take the new prediction at every step (ReDiff's
//! revision on top of threshold decoding).

use rand::RngCore;
use rediff_api::policy::{top_k, RefinementPolicy, StepPlan, StepView};
use serde::Deserialize;

/// Options of the `threshold` policy.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdOptions {
    /// Unmask every mask with confidence `>= threshold` (Fast-dLLM's
    /// `threshold`; the paper's default 0.9).
    #[serde(alias = "tau")]
    pub threshold: f64,
    /// Fast-dLLM's adaptive `factor` rule instead of the fixed threshold
    /// (absent = off; the released scripts use 1.0).
    pub factor: Option<f64>,
    /// Also rewrite decoded tokens with the new prediction every step
    /// (default false: Fast-dLLM never touches decoded tokens).
    pub revise: bool,
}

impl Default for ThresholdOptions {
    fn default() -> Self {
        Self {
            threshold: 0.9,
            factor: None,
            revise: false,
        }
    }
}

/// Fast-dLLM's confidence-threshold unmasking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    options: ThresholdOptions,
}

impl Threshold {
    /// Validates the options.
    pub fn new(options: ThresholdOptions) -> Result<Self, String> {
        super::check_unit("threshold", options.threshold)?;
        if let Some(f) = options.factor {
            if !(f > 0.0 && f.is_finite()) {
                return Err(format!("factor must be positive, got {f}"));
            }
        }
        Ok(Self { options })
    }

    /// How many of the `sorted` (descending) confidences the rule accepts.
    pub fn accepted(&self, sorted: &[f64]) -> usize {
        let n = sorted.len();
        if n == 0 {
            return 0;
        }
        match self.options.factor {
            // Rank 0 is always kept; the others need `>= threshold`.
            None => {
                1 + sorted[1..]
                    .iter()
                    .filter(|&&c| c >= self.options.threshold)
                    .count()
            }
            Some(f) => {
                // As `get_transfer_index_dynamic`: thresholds 1 - f/(r+2)
                // per rank r (rank 0: -1); the first failing rank cuts,
                // except that a failure at the last rank still accepts all
                // (the released code's `top_i == N-1` bump).
                let fail = (1..n).find(|&r| sorted[r] < 1.0 - f / (r as f64 + 2.0));
                match fail {
                    Some(r) if r < n - 1 => r,
                    _ => n,
                }
            }
        }
    }
}

impl RefinementPolicy for Threshold {
    fn plan(&self, view: &StepView<'_>, _rng: &mut dyn RngCore) -> StepPlan {
        let scored: Vec<(usize, f64)> = view
            .unmaskable()
            .map(|p| (p.position, p.confidence))
            .collect();
        let ranked = top_k(scored.iter().copied(), scored.len());
        let sorted: Vec<f64> = ranked
            .iter()
            .map(|j| view.get(*j).map_or(f64::NEG_INFINITY, |p| p.confidence))
            .collect();
        let n = self.accepted(&sorted);
        let unmask = ranked.into_iter().take(n).collect();
        let revise = if self.options.revise {
            view.decoded().map(|p| p.position).collect()
        } else {
            Vec::new()
        };
        StepPlan::unmask(unmask).with_revise(revise)
    }

    fn revises(&self) -> bool {
        self.options.revise
    }

    fn block_steps(&self, _scheduled: usize) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripted::{plan, positions, MASK};
    use super::*;

    fn threshold(threshold: f64, factor: Option<f64>, revise: bool) -> Threshold {
        Threshold::new(ThresholdOptions {
            threshold,
            factor,
            revise,
        })
        .unwrap()
    }

    /// Masked at 0 (0.95), 1 (0.9), 2 (0.89), 4 (0.3); decoded at 3.
    fn block() -> Vec<rediff_api::policy::PositionView> {
        positions(
            0,
            &[
                (MASK, 10, 0.95, 0.0),
                (MASK, 11, 0.9, 0.0),
                (MASK, 12, 0.89, 0.0),
                (3, 13, 0.99, 0.2),
                (MASK, 14, 0.3, 0.0),
            ],
        )
    }

    #[test]
    fn unmasks_every_mask_at_or_above_the_threshold() {
        let p = plan(&threshold(0.9, None, false), &block(), 0, 5, 1, None, 0);
        // 0.9 itself is kept (>=); the decoded position is never touched.
        assert_eq!(p.unmask, vec![0, 1]);
        assert!(p.revise.is_empty() && p.remask.is_empty() && !p.more);
    }

    #[test]
    fn at_least_the_most_confident_mask_is_unmasked() {
        let p = plan(&threshold(0.99, None, false), &block(), 0, 5, 1, None, 0);
        assert_eq!(p.unmask, vec![0]);
        // Only one mask left, far below the threshold.
        let last = positions(0, &[(1, 1, 0.9, 0.9), (MASK, 2, 0.01, 0.0)]);
        assert_eq!(
            plan(&threshold(0.9, None, false), &last, 0, 2, 1, None, 0).unmask,
            vec![1]
        );
    }

    #[test]
    fn revise_rewrites_decoded_tokens_too() {
        let t = threshold(0.9, None, true);
        let p = plan(&t, &block(), 0, 5, 1, None, 0);
        assert_eq!(p.unmask, vec![0, 1]);
        assert_eq!(p.revise, vec![3]);
        assert!(t.revises());
        assert!(!threshold(0.9, None, false).revises());
        assert_eq!(t.block_steps(8), None);
    }

    #[test]
    fn factor_rule_follows_the_released_code() {
        let t = threshold(0.9, Some(1.0), false);
        // Rank r (0-based) needs 1 - 1/(r+2): rank 1 0.667, rank 2 0.75,
        // rank 3 0.8; rank 0 always passes.
        assert_eq!(t.accepted(&[0.95, 0.7, 0.68, 0.2, 0.1]), 2);
        // Fails at rank 1 of 3: one.
        assert_eq!(t.accepted(&[0.9, 0.4, 0.3]), 1);
        // All pass.
        assert_eq!(t.accepted(&[0.95, 0.9, 0.8]), 3);
        // The last rank fails but the code's bump accepts it anyway.
        assert_eq!(t.accepted(&[0.9, 0.7, 0.5]), 3);
        assert_eq!(t.accepted(&[0.2]), 1);
        assert_eq!(t.accepted(&[]), 0);
        let p = plan(&t, &block(), 0, 5, 1, None, 0);
        // Sorted 0.95, 0.9, 0.89, 0.3: rank 3 needs 0.8 and fails, but it
        // is the last rank, so the bump accepts all four.
        assert_eq!(p.unmask, vec![0, 1, 2, 4]);
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(Threshold::new(ThresholdOptions {
            threshold: 1.5,
            ..Default::default()
        })
        .is_err());
        assert!(Threshold::new(ThresholdOptions {
            factor: Some(0.0),
            ..Default::default()
        })
        .is_err());
    }
}
