//! One step of one sample: the policy's plan checked and applied.

use rediff_api::error::{Error, Result};
use rediff_api::policy::{PositionState, PositionView, RefinementPolicy, StepPlan, StepView};
use rediff_api::tokens::SpecialTokens;

use crate::choice::Choice;

/// The geometry one step of one sample runs in.
#[derive(Debug, Clone)]
pub struct StepFrame {
    /// The current block's response positions.
    pub block: std::ops::Range<usize>,
    /// Step index within the block.
    pub step: usize,
    /// The schedule's steps per block.
    pub steps: usize,
    /// The schedule's budget for this step.
    pub budget: usize,
    /// Prompt length in the model's sequence; `None` when the backend does
    /// not say (then budget picks beyond the candidates go to the prompt, as
    /// they do for any prompt at least `64 x budget` long).
    pub prompt_len: Option<usize>,
    /// The end-of-turn stop before the step.
    pub stop: Option<usize>,
    /// Positions the block's previous step unmasked (`None` at its first step).
    pub last_unmasked: Option<usize>,
}

/// The model's reading of one position at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// `x0` and its confidence.
    pub choice: Choice,
    /// The probability of the position's current token.
    pub current: f64,
}

impl From<Choice> for Reading {
    fn from(choice: Choice) -> Self {
        Self {
            choice,
            current: 0.0,
        }
    }
}

/// What one step did to one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutcome {
    /// Positions unmasked.
    pub unmasked: Vec<usize>,
    /// Decoded positions whose token changed, with the old token.
    pub revised: Vec<(usize, u32)>,
    /// Positions sent back to `[MASK]`.
    pub remasked: Vec<usize>,
    /// Picks that fell in the prompt (positions when the prompt length is
    /// known; otherwise only counted).
    pub prompt_picks: usize,
    /// The prompt positions picked, when the prompt length is known.
    pub prompt_positions: Vec<usize>,
    /// The policy asked for another step of the block.
    pub more: bool,
}

/// When each response position was last unmasked, and with what confidence
/// (`None` while masked).
pub type DecodedAt = Vec<Option<(usize, f64)>>;

/// One step for one sample, given the model's reading of every response
/// position (`readings[j]` for position `j`). Pure function of its inputs
/// and `rng`: this is the whole sampling rule, tested in isolation.
///
/// Builds the policy's [`StepView`] of the block, checks its [`StepPlan`]
/// (an impossible plan is an error naming `policy_name`) and applies it;
/// `decoded_at` is kept up to date.
#[allow(clippy::too_many_arguments)]
pub fn apply_step(
    tokens: &mut [u32],
    decoded_at: &mut DecodedAt,
    frame: &StepFrame,
    readings: &[Reading],
    mask: u32,
    policy: &dyn RefinementPolicy,
    policy_name: &str,
    rng: &mut dyn rand::RngCore,
) -> Result<StepOutcome> {
    let l = tokens.len();
    debug_assert_eq!(readings.len(), l);
    debug_assert_eq!(decoded_at.len(), l);
    let limit = frame.stop.unwrap_or(frame.block.end).min(l);
    // The reference ranks every masked position before the block's end (or
    // the stop): earlier blocks are finished, but a revision to the mask
    // token masks a position there again, and a stop past the block lets
    // later masks before it be filled.
    let window = 0..frame.block.end.max(limit);
    let positions: Vec<PositionView> = window
        .map(|j| PositionView {
            position: j,
            state: match (tokens[j] == mask, decoded_at[j]) {
                (true, _) => PositionState::Masked,
                (false, Some((since, confidence))) => PositionState::Decoded { since, confidence },
                (false, None) => PositionState::Decoded {
                    since: 0,
                    confidence: 1.0,
                },
            },
            token: tokens[j],
            predicted: readings[j].choice.token,
            confidence: readings[j].choice.confidence,
            current_confidence: readings[j].current,
            before_stop: j < limit,
        })
        .collect();
    let prompt_picks = std::cell::RefCell::new(Vec::new());
    let view = StepView::new(
        frame.block.clone(),
        frame.step,
        frame.steps,
        frame.budget,
        &positions,
        frame.stop,
        l,
        frame.prompt_len,
        &prompt_picks,
    )
    .with_last_unmasked(frame.last_unmasked);
    let plan: StepPlan = policy.plan(&view, rng);
    plan.check(&view).map_err(|why| {
        Error::invalid(format!(
            "refinement policy `{policy_name}` {why} (block {}..{}, step {})",
            frame.block.start, frame.block.end, frame.step
        ))
    })?;
    let mut out = StepOutcome {
        more: plan.more,
        ..Default::default()
    };
    let prompt_picks = prompt_picks.into_inner();
    out.prompt_picks = prompt_picks.len();
    if frame.prompt_len.is_some() {
        out.prompt_positions = prompt_picks;
    }
    let mut unmask = plan.unmask;
    unmask.sort_unstable();
    for j in unmask {
        tokens[j] = readings[j].choice.token;
        decoded_at[j] = Some((frame.step, readings[j].choice.confidence));
        out.unmasked.push(j);
    }
    let mut revise = plan.revise;
    revise.sort_unstable();
    for j in revise {
        let new = readings[j].choice.token;
        if tokens[j] != new {
            out.revised.push((j, tokens[j]));
        }
        tokens[j] = new;
    }
    let mut remask = plan.remask;
    remask.sort_unstable();
    for j in remask {
        tokens[j] = mask;
        decoded_at[j] = None;
        out.remasked.push(j);
    }
    out.prompt_positions.sort_unstable();
    out.prompt_positions.dedup();
    Ok(out)
}

/// The earliest end-of-turn position in `tokens`, if any.
pub fn first_eot(tokens: &[u32], special: &SpecialTokens) -> Option<usize> {
    tokens.iter().position(|&t| t == special.eot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    struct NoRevise;
    impl RefinementPolicy for NoRevise {
        fn plan(&self, v: &StepView<'_>, _: &mut dyn rand::RngCore) -> StepPlan {
            StepPlan::unmask(v.schedule_unmask())
        }
        fn revises(&self) -> bool {
            false
        }
    }
    struct ReviseAll;
    impl RefinementPolicy for ReviseAll {
        fn plan(&self, v: &StepView<'_>, _: &mut dyn rand::RngCore) -> StepPlan {
            StepPlan::unmask(v.schedule_unmask())
                .with_revise(v.decoded().map(|p| p.position).collect())
        }
    }
    /// Asks for whatever it was built with.
    struct Fixed(StepPlan);
    impl RefinementPolicy for Fixed {
        fn plan(&self, _: &StepView<'_>, _: &mut dyn rand::RngCore) -> StepPlan {
            self.0.clone()
        }
    }

    fn ch(token: u32, confidence: f64) -> Reading {
        Choice { token, confidence }.into()
    }

    fn frame(block: std::ops::Range<usize>, budget: usize, stop: Option<usize>) -> StepFrame {
        StepFrame {
            block,
            step: 0,
            steps: 4,
            budget,
            prompt_len: Some(1000),
            stop,
            last_unmasked: None,
        }
    }

    fn step(
        t: &mut [u32],
        f: &StepFrame,
        readings: &[Reading],
        policy: &dyn RefinementPolicy,
    ) -> Result<StepOutcome> {
        let mut at = vec![None; t.len()];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        apply_step(t, &mut at, f, readings, 99, policy, "test", &mut rng)
    }

    #[test]
    fn plain_step_unmasks_top_k_masked_only() {
        const M: u32 = 99;
        let mut t = vec![5, M, M, M];
        let choices = [ch(7, 0.9), ch(1, 0.2), ch(2, 0.8), ch(3, 0.5)];
        let o = step(&mut t, &frame(0..4, 2, None), &choices, &NoRevise).unwrap();
        assert_eq!(o.unmasked, vec![2, 3]);
        assert!(o.revised.is_empty());
        assert_eq!(t, vec![5, M, 2, 3]);
    }

    #[test]
    fn refine_step_never_revises_tokens_unmasked_in_the_same_step() {
        const M: u32 = 99;
        let mut t = vec![5, M, 6, M];
        // Position 0 and 2 were decoded before; x0 differs at both.
        let choices = [ch(7, 0.9), ch(1, 0.95), ch(8, 0.1), ch(3, 0.5)];
        let o = step(&mut t, &frame(0..4, 1, None), &choices, &ReviseAll).unwrap();
        assert_eq!(o.unmasked, vec![1]);
        assert_eq!(o.revised, vec![(0, 5), (2, 6)]);
        assert_eq!(t, vec![7, 1, 8, M]);
    }

    #[test]
    fn step_respects_block_offsets() {
        const M: u32 = 99;
        let mut t = vec![1, 2, M, M];
        let choices = [ch(0, 1.0), ch(0, 1.0), ch(4, 0.3), ch(5, 0.6)];
        let o = step(&mut t, &frame(2..4, 1, None), &choices, &NoRevise).unwrap();
        assert_eq!(o.unmasked, vec![3]);
        assert_eq!(t, vec![1, 2, M, 5]);
        // A mask of the *next* block is never a candidate without a stop.
        let mut t = vec![M, M, M, M];
        let choices = [ch(4, 0.1), ch(5, 0.2), ch(6, 0.9), ch(7, 0.9)];
        step(&mut t, &frame(0..2, 1, None), &choices, &NoRevise).unwrap();
        assert_eq!(t, vec![M, 5, M, M]);
    }

    #[test]
    fn after_a_stop_the_budget_goes_to_masks_before_it() {
        const M: u32 = 99;
        // Stop at 3: masks at 1, 2 (before) and 4, 5 (after). Budget 3: the
        // two masks before the stop, the third pick is a prompt tie.
        let mut t = vec![9, M, M, 8, M, M];
        let choices = [
            ch(1, 0.1),
            ch(2, 0.3),
            ch(3, 0.2),
            ch(4, 0.9),
            ch(5, 0.99),
            ch(6, 0.99),
        ];
        let o = step(&mut t, &frame(0..6, 3, Some(3)), &choices, &NoRevise).unwrap();
        assert_eq!(o.unmasked, vec![1, 2]);
        assert_eq!(o.prompt_picks, 1);
        assert_eq!(t, vec![9, 2, 3, 8, M, M]);
    }

    #[test]
    fn remask_sends_decoded_tokens_back_and_forgets_them() {
        const M: u32 = 99;
        let mut t = vec![5, M, 6, M];
        let mut at = vec![Some((0, 0.4)), None, Some((1, 0.9)), None];
        let choices = [ch(7, 0.9), ch(1, 0.95), ch(8, 0.1), ch(3, 0.5)];
        let plan = StepPlan::unmask(vec![1]).with_remask(vec![0]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut f = frame(0..4, 1, None);
        f.step = 2;
        let o = apply_step(
            &mut t,
            &mut at,
            &f,
            &choices,
            M,
            &Fixed(plan),
            "fixed",
            &mut rng,
        )
        .unwrap();
        assert_eq!(o.remasked, vec![0]);
        assert_eq!(t, vec![M, 1, 6, M]);
        assert_eq!(at, vec![None, Some((2, 0.95)), Some((1, 0.9)), None]);
    }

    #[test]
    fn impossible_plans_are_errors_that_name_the_policy() {
        const M: u32 = 99;
        let choices = [ch(7, 0.9), ch(1, 0.95), ch(8, 0.1), ch(3, 0.5)];
        for (plan, why) in [
            (
                StepPlan::unmask(vec![0]),
                "unmask position 0, which is already decoded",
            ),
            (
                StepPlan::default().with_remask(vec![1]),
                "remask position 1, which is already masked",
            ),
            (
                StepPlan::unmask(vec![9]),
                "position 9, outside the current block 0..4",
            ),
        ] {
            let mut t = vec![5, M, 6, M];
            let before = t.clone();
            let e = step(&mut t, &frame(0..4, 1, None), &choices, &Fixed(plan))
                .unwrap_err()
                .to_string();
            assert!(e.contains("refinement policy `test`"), "{e}");
            assert!(e.contains(why), "{e}");
            assert_eq!(t, before, "a refused plan changes nothing");
        }
    }
}
