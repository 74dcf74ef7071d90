//! `edit`: token editing after LLaDA 2.1 (Bie et al., 2026, "LLaDA2.1:
//! Speeding Up Text Diffusion via Token Editing", <https://arxiv.org/abs/2602.08676>;
//! code: the `generate` of `inclusionAI/LLaDA2.1-mini`).
//!
//! Each step unmasks every mask of the block (before the stop) with
//! confidence `> threshold` (at least the `num_to_transfer` most confident:
//! mask-to-token), and rewrites every token decoded before the step whose
//! new argmax differs from it with confidence `> editing_threshold`
//! (token-to-token). Unlike `refine`, a decoded token changes only when the
//! model is confident of the change. After the block's last mask the block
//! keeps stepping while edits happen, at most `max_post_steps` steps;
//! the first step with no mask and no edit ends it.
//!
//! Defaults are the report's "Q mode" (`threshold` 0.7, `editing_threshold`
//! 0.5, `max_post_steps` 16). Its "S mode" is `threshold = 0.5,
//! editing_threshold = 0.0` (any changed argmax is edited, as the released
//! code reads 0).

use rand::RngCore;
use rediff_api::policy::{top_k, PositionState, RefinementPolicy, StepPlan, StepView};
use serde::Deserialize;

/// Options of the `edit` policy.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EditOptions {
    /// Unmask when `p > threshold` (mask-to-token; default 0.7).
    #[serde(alias = "tau_mask")]
    pub threshold: f64,
    /// Rewrite a decoded token when the new argmax differs and `p >
    /// editing_threshold` (token-to-token; default 0.5).
    #[serde(alias = "tau_edit")]
    pub editing_threshold: f64,
    /// Steps a block may take after its last mask, editing (default 16).
    pub max_post_steps: usize,
    /// Masks unmasked at least per step (default 1).
    pub num_to_transfer: usize,
}

impl Default for EditOptions {
    fn default() -> Self {
        Self {
            threshold: 0.7,
            editing_threshold: 0.5,
            max_post_steps: 16,
            num_to_transfer: 1,
        }
    }
}

/// LLaDA 2.1's mask-to-token and token-to-token editing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edit {
    options: EditOptions,
}

impl Edit {
    /// Validates the options.
    pub fn new(options: EditOptions) -> Result<Self, String> {
        super::check_unit("threshold", options.threshold)?;
        super::check_unit("editing_threshold", options.editing_threshold)?;
        if options.num_to_transfer == 0 {
            return Err("num_to_transfer must be at least 1".into());
        }
        Ok(Self { options })
    }
}

impl RefinementPolicy for Edit {
    fn plan(&self, view: &StepView<'_>, _rng: &mut dyn RngCore) -> StepPlan {
        let masks: Vec<(usize, f64)> = view
            .unmaskable()
            .map(|p| (p.position, p.confidence))
            .collect();
        // Masks it could still fill (before the stop; those after it are cut).
        let masked = !masks.is_empty();
        let above: Vec<usize> = masks
            .iter()
            .filter(|&&(_, c)| c > self.options.threshold)
            .map(|&(j, _)| j)
            .collect();
        let unmask = if above.len() >= self.options.num_to_transfer {
            above
        } else {
            top_k(masks.iter().copied(), self.options.num_to_transfer)
        };
        let edits: Vec<usize> = view
            .decoded()
            .filter(|p| {
                p.before_stop
                    && p.predicted != p.token
                    && p.confidence > self.options.editing_threshold
            })
            .map(|p| p.position)
            .collect();
        // Steps since the block's last unmask that started with no mask.
        let post = if masked {
            0
        } else {
            let last = view
                .in_block()
                .filter_map(|p| match p.state {
                    PositionState::Decoded { since, .. } => Some(since),
                    PositionState::Masked => None,
                })
                .max()
                .unwrap_or(0);
            view.step - last.min(view.step)
        };
        // The released loop steps again after a step that started with
        // masks or made edits, until `max_post_steps` post steps.
        let more = (masked || !edits.is_empty()) && post < self.options.max_post_steps;
        StepPlan::unmask(unmask).with_revise(edits).with_more(more)
    }

    fn block_steps(&self, _scheduled: usize) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripted::{plan, positions, MASK};
    use super::*;

    fn edit(threshold: f64, editing_threshold: f64) -> Edit {
        Edit::new(EditOptions {
            threshold,
            editing_threshold,
            ..Default::default()
        })
        .unwrap()
    }

    /// Masks at 0 (0.7), 1 (0.75); decoded at 2 (argmax 12 != 5, p 0.6),
    /// 3 (argmax 13 != 6, p 0.5) and 4 (argmax = token).
    fn block() -> Vec<rediff_api::policy::PositionView> {
        positions(
            0,
            &[
                (MASK, 10, 0.7, 0.0),
                (MASK, 11, 0.75, 0.0),
                (5, 12, 0.6, 0.1),
                (6, 13, 0.5, 0.2),
                (7, 7, 0.99, 0.99),
            ],
        )
    }

    #[test]
    fn unmasks_and_edits_strictly_above_their_thresholds() {
        let p = plan(&edit(0.7, 0.5), &block(), 1, 5, 1, None, 0);
        assert_eq!(p.unmask, vec![1]);
        // 0.5 is not > 0.5; an unchanged argmax is never an edit.
        assert_eq!(p.revise, vec![2]);
        assert!(p.more, "a step with masks asks for the next");
    }

    #[test]
    fn at_least_num_to_transfer_masks() {
        let p = plan(&edit(0.9, 0.5), &block(), 1, 5, 1, None, 0);
        assert_eq!(p.unmask, vec![1]);
        let two = Edit::new(EditOptions {
            threshold: 0.9,
            num_to_transfer: 2,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(plan(&two, &block(), 1, 5, 1, None, 0).unmask, vec![0, 1]);
    }

    #[test]
    fn post_steps_edit_until_converged_or_the_cap() {
        let mut b = positions(0, &[(5, 12, 0.9, 0.1), (7, 7, 0.99, 0.99)]);
        // Last unmasked at step 3; at step 5 two post steps have started.
        for p in &mut b {
            p.state = PositionState::Decoded {
                since: 3,
                confidence: 0.8,
            };
        }
        let p = plan(&edit(0.7, 0.5), &b, 5, 2, 1, None, 0);
        assert_eq!(p.revise, vec![0]);
        assert!(p.more);
        let capped = Edit::new(EditOptions {
            max_post_steps: 2,
            ..Default::default()
        })
        .unwrap();
        assert!(!plan(&capped, &b, 5, 2, 1, None, 0).more);
        // Converged: no mask, no edit.
        b[0].predicted = 5;
        assert!(!plan(&edit(0.7, 0.5), &b, 5, 2, 1, None, 0).more);
    }

    #[test]
    fn masks_after_the_stop_do_not_keep_the_block_going() {
        // Stop at 1: position 2 is masked but cut; nothing to fill or edit.
        let mut b = positions(
            0,
            &[(5, 5, 0.9, 0.9), (6, 6, 0.9, 0.9), (MASK, 3, 0.9, 0.0)],
        );
        for p in &mut b[1..] {
            p.before_stop = false;
        }
        let p = plan(&edit(0.7, 0.5), &b, 1, 3, 1, None, 0);
        assert!(p.unmask.is_empty() && p.revise.is_empty());
        assert!(!p.more);
    }
}
