//! `wino`: draft and verify after WINO (Hong et al., 2025, "Wide-In,
//! Narrow-Out: Revokable Decoding for Efficient and Effective DLLMs",
//! <https://arxiv.org/abs/2507.18578>; code: Feng-Hong/WINO-DLLM
//! `LLaDA/decoding.py`, `decoding_wino`).
//!
//! Each step drafts wide: every mask of the block (before the stop) with
//! confidence `> threshold` is unmasked, at least the most confident one and
//! at most `min(max(floor(0.7 m), 5), 20)` of the `m` masks (the released
//! code's cap). Then it verifies narrow: when more than one token was
//! drafted, every token decoded *before* the step whose probability under
//! the new logits is `< threshold_back` goes back to `[MASK]`; fewer than
//! the previous step's drafts are remasked (the lowest first), so decoding
//! always progresses. A block runs until it holds no mask.
//!
//! WINO verifies with a "shadow block" that re-predicts each decoded slot
//! with that slot hidden. The model interface has no such attention mask,
//! so rediff verifies with the probability the ordinary forward pass gives
//! the current token (the token itself visible), which is more lenient: a
//! refining model sees and judges its own tokens, which is the signal this
//! policy tests.

use rand::RngCore;
use rediff_api::policy::{bottom_k, top_k, RefinementPolicy, StepPlan, StepView};
use serde::Deserialize;

/// Options of the `wino` policy.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WinoOptions {
    /// The drafting ("wide-in") threshold: unmask when `p > threshold`
    /// (`decoding_wino`'s default 0.6).
    #[serde(alias = "tau_draft")]
    pub threshold: f64,
    /// The verification ("narrow-out") threshold: remask a decoded token
    /// whose probability is `< threshold_back` (default 0.9).
    #[serde(alias = "tau_verify")]
    pub threshold_back: f64,
}

impl Default for WinoOptions {
    fn default() -> Self {
        Self {
            threshold: 0.6,
            threshold_back: 0.9,
        }
    }
}

/// The previous-step drafts WINO assumes at a block's first step.
const FIRST_LAST_ACCEPT: usize = 30;

/// WINO's draft-and-verify decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wino {
    options: WinoOptions,
}

impl Wino {
    /// Validates the options.
    pub fn new(options: WinoOptions) -> Result<Self, String> {
        super::check_unit("threshold", options.threshold)?;
        super::check_unit("threshold_back", options.threshold_back)?;
        Ok(Self { options })
    }

    /// The released code's cap on drafts when `masked` masks remain.
    pub fn max_accept(masked: usize) -> usize {
        ((masked as f64 * 0.7) as usize).clamp(5, 20)
    }
}

impl RefinementPolicy for Wino {
    fn plan(&self, view: &StepView<'_>, _rng: &mut dyn RngCore) -> StepPlan {
        let masks: Vec<(usize, f64)> = view
            .unmaskable()
            .map(|p| (p.position, p.confidence))
            .collect();
        let cap = Self::max_accept(view.in_block().filter(|p| p.is_masked()).count());
        let above: Vec<(usize, f64)> = masks
            .iter()
            .copied()
            .filter(|&(_, c)| c > self.options.threshold)
            .collect();
        let draft = if above.len() > cap {
            top_k(above, cap)
        } else if above.is_empty() {
            top_k(masks, 1)
        } else {
            above.into_iter().map(|(j, _)| j).collect()
        };
        let mut remask = Vec::new();
        if draft.len() > 1 {
            let doubtful: Vec<(usize, f64)> = view
                .decoded()
                .filter(|p| p.before_stop && p.current_confidence < self.options.threshold_back)
                .map(|p| (p.position, p.current_confidence))
                .collect();
            let last = view.last_unmasked.unwrap_or(FIRST_LAST_ACCEPT);
            remask = if doubtful.len() >= last {
                bottom_k(doubtful, last.saturating_sub(1))
            } else {
                doubtful.into_iter().map(|(j, _)| j).collect()
            };
        }
        StepPlan::unmask(draft).with_remask(remask)
    }

    fn revises(&self) -> bool {
        false
    }

    fn block_steps(&self, _scheduled: usize) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripted::{plan, positions, MASK};
    use super::*;

    fn wino(threshold: f64, threshold_back: f64) -> Wino {
        Wino::new(WinoOptions {
            threshold,
            threshold_back,
        })
        .unwrap()
    }

    /// Masks at 0 (0.7), 1 (0.6), 3 (0.95); decoded at 2 (current p 0.5)
    /// and 4 (current p 0.95).
    fn block() -> Vec<rediff_api::policy::PositionView> {
        positions(
            0,
            &[
                (MASK, 10, 0.7, 0.0),
                (MASK, 11, 0.6, 0.0),
                (5, 12, 0.8, 0.5),
                (MASK, 13, 0.95, 0.0),
                (6, 6, 0.95, 0.95),
            ],
        )
    }

    #[test]
    fn drafts_strictly_above_and_remasks_strictly_below() {
        let p = plan(&wino(0.6, 0.9), &block(), 1, 5, 1, Some(3), 0);
        // 0.6 itself is not drafted (strict >).
        assert_eq!(p.unmask, vec![0, 3]);
        // Two drafts: verify; position 2 (0.5 < 0.9) goes back, 4 (0.95) stays.
        assert_eq!(p.remask, vec![2]);
        assert!(p.revise.is_empty());
    }

    #[test]
    fn a_single_draft_is_not_verified_and_one_is_always_drafted() {
        let p = plan(&wino(0.99, 0.9), &block(), 1, 5, 1, Some(3), 0);
        assert_eq!(p.unmask, vec![3]);
        assert!(p.remask.is_empty());
    }

    #[test]
    fn remasks_fewer_than_the_previous_steps_drafts() {
        // Last step drafted 1: at most 0 remasks; drafted 2: at most 1, the lowest.
        let p = plan(&wino(0.5, 0.99), &block(), 1, 5, 1, Some(1), 0);
        assert_eq!(p.unmask, vec![0, 1, 3]);
        assert!(p.remask.is_empty());
        let p = plan(&wino(0.5, 0.99), &block(), 1, 5, 1, Some(2), 0);
        assert_eq!(p.remask, vec![2]);
        // At a block's first step the code assumes 30.
        let p = plan(&wino(0.5, 0.99), &block(), 0, 5, 1, None, 0);
        assert_eq!(p.remask, vec![2, 4]);
    }

    #[test]
    fn drafts_are_capped_as_in_the_released_code() {
        assert_eq!(Wino::max_accept(3), 5);
        assert_eq!(Wino::max_accept(10), 7);
        assert_eq!(Wino::max_accept(100), 20);
        let rows: Vec<(u32, u32, f64, f64)> = (0..12)
            .map(|i| (MASK, i, 0.9 + i as f64 * 0.001, 0.0))
            .collect();
        let p = plan(&wino(0.6, 0.9), &positions(0, &rows), 0, 12, 1, None, 0);
        // floor(0.7 * 12) = 8 of the 12, the most confident.
        assert_eq!(p.unmask, (4..12).collect::<Vec<_>>());
    }
}
