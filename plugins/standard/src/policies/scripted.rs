//! Scripted block states for the policies' decision tests.

use std::cell::RefCell;

use rand::SeedableRng;
use rediff_api::policy::{PositionState, PositionView, RefinementPolicy, StepPlan, StepView};

pub const MASK: u32 = 99;

/// One position: `(token or MASK, predicted, confidence, current_confidence)`;
/// decoded positions were unmasked at step 0 with confidence 0.5.
pub fn positions(start: usize, rows: &[(u32, u32, f64, f64)]) -> Vec<PositionView> {
    rows.iter()
        .enumerate()
        .map(
            |(i, &(token, predicted, confidence, current))| PositionView {
                position: start + i,
                state: if token == MASK {
                    PositionState::Masked
                } else {
                    PositionState::Decoded {
                        since: 0,
                        confidence: 0.5,
                    }
                },
                token,
                predicted,
                confidence,
                current_confidence: current,
                before_stop: true,
            },
        )
        .collect()
}

/// The plan `policy` makes at `step` of `steps` with `budget`, over a
/// block starting at `positions[0]`, with sorted lists.
pub fn plan(
    policy: &dyn RefinementPolicy,
    positions: &[PositionView],
    step: usize,
    steps: usize,
    budget: usize,
    last_unmasked: Option<usize>,
    seed: u64,
) -> StepPlan {
    let start = positions[0].position;
    let picks = RefCell::new(Vec::new());
    let view = StepView::new(
        start..start + positions.len(),
        step,
        steps,
        budget,
        positions,
        None,
        start + positions.len(),
        Some(100),
        &picks,
    )
    .with_last_unmasked(last_unmasked);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut p = policy.plan(&view, &mut rng);
    p.check(&view).expect("a valid plan");
    p.unmask.sort_unstable();
    p.revise.sort_unstable();
    p.remask.sort_unstable();
    p
}
