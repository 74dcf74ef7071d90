//! An example plugin: a refinement policy shipped as a shared library that
//! `rediff` loads from `[[plugins]]` (or `--plugin`).
//!
//! `confidence-drop` unmasks the schedule's budget like plain denoising,
//! and sends a decoded token back to `[MASK]` when the model has stopped
//! believing it: its probability under the new logits fell below `ratio`
//! times the confidence it had when it was unmasked (at most `max_remask`
//! per step, the largest drops first). The block's last scheduled step
//! remasks nothing and unmasks every mask left, so a block always ends
//! decoded. It reads what the step-plan API gives every policy: each
//! position's state and the step it was decoded at with its confidence then,
//! the new prediction's confidence and the current token's.

use std::sync::Arc;

use rediff_api::policy::{PositionState, RefinementPolicy, RngCore, StepPlan, StepView};
use rediff_api::registry::{Plugin, Registrar, RegistryError};
use serde::Deserialize;

/// Options of `confidence-drop`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfidenceDropOptions {
    /// Remask when the current probability is below `ratio` x the
    /// confidence at unmasking. Default 0.5.
    pub ratio: f64,
    /// Remask at most this many tokens per step. Default 2.
    pub max_remask: usize,
}

impl Default for ConfidenceDropOptions {
    fn default() -> Self {
        Self {
            ratio: 0.5,
            max_remask: 2,
        }
    }
}

/// The policy.
#[derive(Debug, Clone, Copy)]
pub struct ConfidenceDrop {
    options: ConfidenceDropOptions,
}

impl RefinementPolicy for ConfidenceDrop {
    fn plan(&self, view: &StepView<'_>, _rng: &mut dyn RngCore) -> StepPlan {
        if view.step + 1 >= view.steps {
            return StepPlan::unmask(view.unmaskable().map(|p| p.position).collect());
        }
        let mut drops: Vec<(usize, f64)> = view
            .decoded()
            .filter(|p| p.before_stop)
            .filter_map(|p| match p.state {
                PositionState::Decoded { confidence, .. }
                    if p.current_confidence < self.options.ratio * confidence =>
                {
                    Some((
                        p.position,
                        p.current_confidence / confidence.max(f64::MIN_POSITIVE),
                    ))
                }
                _ => None,
            })
            .collect();
        drops.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let remask = drops
            .into_iter()
            .take(self.options.max_remask)
            .map(|(j, _)| j)
            .collect();
        StepPlan::unmask(view.schedule_unmask()).with_remask(remask)
    }

    fn revises(&self) -> bool {
        false
    }
}

/// Registers `confidence-drop`.
#[derive(Debug, Default)]
pub struct ConfidenceDropPlugin;

impl Plugin for ConfidenceDropPlugin {
    fn name(&self) -> &str {
        "example-confidence-drop"
    }

    fn build(&self, r: &mut Registrar<'_>) -> Result<(), RegistryError> {
        r.policy(
            "confidence-drop",
            "remask decoded tokens whose probability fell below `ratio` x their confidence at unmasking (example plugin)",
            |spec, _| {
                let o: ConfidenceDropOptions = spec.options()?;
                if !(o.ratio > 0.0 && o.ratio <= 1.0) {
                    return Err(spec
                        .error(format!("ratio must lie in (0, 1], got {}", o.ratio))
                        .into());
                }
                Ok(Arc::new(ConfidenceDrop { options: o }))
            },
        )
    }
}

rediff_api::export_plugin!(ConfidenceDropPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use rediff_api::policy::PositionView;

    fn pos(position: usize, state: PositionState, confidence: f64, current: f64) -> PositionView {
        PositionView {
            position,
            state,
            token: if state == PositionState::Masked {
                99
            } else {
                1
            },
            predicted: 2,
            confidence,
            current_confidence: current,
            before_stop: true,
        }
    }

    #[test]
    fn remasks_the_largest_drops_and_finishes_the_block() {
        let dec = |c: f64| PositionState::Decoded {
            since: 0,
            confidence: c,
        };
        let ps = [
            pos(0, dec(0.9), 0.9, 0.1),  // kept 0.11 of its confidence: first
            pos(1, dec(0.8), 0.8, 0.3),  // 0.375: third, beyond max_remask = 2
            pos(2, dec(0.6), 0.6, 0.2),  // 0.33: second
            pos(3, dec(0.9), 0.9, 0.85), // 0.94: not a drop
            pos(4, PositionState::Masked, 0.7, 0.0),
            pos(5, PositionState::Masked, 0.4, 0.0),
        ];
        let picks = std::cell::RefCell::new(Vec::new());
        let policy = ConfidenceDrop {
            options: ConfidenceDropOptions::default(),
        };
        let mut rng =
            <rand_chacha::ChaCha8Rng as rand_chacha::rand_core::SeedableRng>::seed_from_u64(0);
        let view = StepView::new(0..6, 1, 4, 1, &ps, None, 6, Some(10), &picks);
        let plan = policy.plan(&view, &mut rng);
        plan.check(&view).unwrap();
        assert_eq!(plan.unmask, vec![4]);
        assert_eq!(plan.remask, vec![0, 2]);
        // The last step: everything left, no remask.
        let view = StepView::new(0..6, 3, 4, 1, &ps, None, 6, Some(10), &picks);
        let plan = policy.plan(&view, &mut rng);
        assert_eq!(plan.unmask, vec![4, 5]);
        assert!(plan.remask.is_empty());
    }
}
