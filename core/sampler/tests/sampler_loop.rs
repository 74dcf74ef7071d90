//! The sampler loop end to end against a scripted model whose logits are
//! known, so every step's decisions can be checked by hand.

mod common;

use std::path::Path;
use std::sync::Mutex;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use common::{Plain, Uniform};
use rand::SeedableRng;
use rediff_api::model::{ModelBackend, Prompt, PromptContext};
use rediff_api::policy::{RefinementPolicy, StepPlan, StepView};
use rediff_api::tokens::{SpecialTokens, TextTokenizer};
use rediff_sampler::{Sampler, SamplerSettings, StepEvent};

const V: usize = 8;
const MASK: u32 = 7;
const EOT: u32 = 6;

/// Position `i` predicts `target[i]` with logit `score[i]`; everything else 0.
/// Records every input it sees.
struct Scripted {
    target: Vec<u32>,
    score: Vec<f32>,
    special: SpecialTokens,
    tokenizer: TextTokenizer,
    seen: Mutex<Vec<Vec<u32>>>,
    /// `(p, q, token)`: position `p` predicts `token` once position `q` is decoded.
    second_thoughts: Option<(usize, usize, u32)>,
}

impl Scripted {
    fn new(target: Vec<u32>, score: Vec<f32>) -> Self {
        let words: Vec<String> = (0..V).map(|i| format!("t{i}")).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        Self {
            target,
            score,
            special: SpecialTokens::new(MASK, EOT, vec![5], vec![5, 6, 7]),
            tokenizer: rediff_formats::HfTokenizer::word_level(&words).unwrap(),
            seen: Mutex::new(Vec::new()),
            second_thoughts: None,
        }
    }
}

impl ModelBackend for Scripted {
    fn kind(&self) -> &str {
        "scripted"
    }
    fn vocab_size(&self) -> usize {
        V
    }
    fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }
    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }
    fn device(&self) -> &Device {
        &Device::Cpu
    }
    fn prompt_ids(&self, _: &str) -> rediff_api::Result<Vec<u32>> {
        Ok(vec![])
    }
    fn encode_prompts(&self, prompts: &[Prompt]) -> rediff_api::Result<PromptContext> {
        Ok(PromptContext::new(prompts.len(), ()))
    }
    fn forward(&self, ctx: &PromptContext, response: &Tensor) -> rediff_api::Result<Tensor> {
        let rows = response.to_vec2::<u32>()?;
        self.seen.lock().unwrap().extend(rows.iter().cloned());
        let l = self.target.len();
        let mut logits = vec![0f32; ctx.batch() * l * V];
        for (b, row) in rows.iter().enumerate() {
            for i in 0..l {
                let target = match self.second_thoughts {
                    Some((p, q, t)) if i == p && row[q] != MASK => t,
                    _ => self.target[i],
                };
                logits[(b * l + i) * V + target as usize] = self.score[i];
                // The suppressed token would win if it were allowed.
                logits[(b * l + i) * V + 5] = 100.0;
            }
        }
        Ok(Tensor::from_vec(logits, (ctx.batch(), l, V), &Device::Cpu)?)
    }
    fn varmap(&self) -> Option<&VarMap> {
        None
    }
    fn save(&self, _: &Path) -> rediff_api::Result<()> {
        Ok(())
    }
}

struct All;
impl RefinementPolicy for All {
    fn plan(&self, v: &StepView<'_>, _: &mut dyn rand::RngCore) -> StepPlan {
        StepPlan::unmask(v.schedule_unmask()).with_revise(v.decoded().map(|p| p.position).collect())
    }
}

/// One mask per step (the most confident), ignoring the schedule; remasks
/// position `remask_at` at every step it is decoded (never finishing when
/// it is set); asks for `extra` more steps after the last mask.
struct Stubborn {
    remask: Option<usize>,
    extra: usize,
}
impl RefinementPolicy for Stubborn {
    fn plan(&self, v: &StepView<'_>, _: &mut dyn rand::RngCore) -> StepPlan {
        let best = rediff_api::policy::top_k(v.unmaskable().map(|p| (p.position, p.confidence)), 1);
        let remask = self
            .remask
            .filter(|&j| v.get(j).is_some_and(|p| p.is_decoded()))
            .into_iter()
            .collect();
        let last_unmask = v
            .positions
            .iter()
            .filter_map(|p| match p.state {
                rediff_api::policy::PositionState::Decoded { since, .. } => Some(since),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        // The block finishes at this step when it unmasks the last mask.
        let finish = if v.any_masked() { v.step } else { last_unmask };
        let more = v.step < finish + self.extra;
        StepPlan::unmask(best).with_remask(remask).with_more(more)
    }
    fn block_steps(&self, _: usize) -> Option<usize> {
        None
    }
}

fn run(
    model: &Scripted,
    policy: &dyn RefinementPolicy,
    settings: SamplerSettings,
) -> (rediff_sampler::Generation, Vec<StepEvent>) {
    // One prompt; the scripted model ignores its content.
    let ctx = PromptContext::new(1, 0u8);
    let sampler = Sampler {
        model,
        schedule: &Uniform,
        policy,
        policy_name: "scripted",
        settings,
    };
    let mut events = Vec::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut cb = |e: &StepEvent| events.push(e.clone());
    let gen = sampler.generate(&ctx, &mut rng, Some(&mut cb)).unwrap();
    (gen, events)
}

#[test]
fn denoising_unmasks_by_confidence_with_uniform_counts_and_suppression() {
    // 6 positions, 4 steps: counts 2, 2, 1, 1. Confidence order: 3, 0, 5, 1, 4, 2.
    let model = Scripted::new(vec![1, 2, 3, 4, 0, 1], vec![5.0, 3.0, 1.0, 6.0, 2.0, 4.0]);
    let (gen, events) = run(
        &model,
        &Plain,
        SamplerSettings {
            gen_length: 6,
            block_length: 6,
            steps: 4,
            temperature: 0.0,
            max_block_steps: None,
            cache: rediff_api::cache::CacheSettings::OFF,
        },
    );
    let unmasked: Vec<Vec<usize>> = events.iter().map(|e| e.unmasked.clone()).collect();
    assert_eq!(unmasked, vec![vec![0, 3], vec![1, 5], vec![4], vec![2]]);
    assert_eq!(gen.responses[0], vec![1, 2, 3, 4, 0, 1]);
    assert_eq!(gen.forward_passes, 4);
    assert!(events.iter().all(|e| e.revised.is_empty()));
}

#[test]
fn blocks_are_decoded_in_order_and_refinement_stays_in_the_block() {
    // Two blocks of 2, 2 steps each (1 per step). Block 0 must finish before block 1 starts.
    let model = Scripted::new(vec![1, 2, 3, 4], vec![1.0, 2.0, 4.0, 3.0]);
    let (gen, events) = run(
        &model,
        &All,
        SamplerSettings {
            gen_length: 4,
            block_length: 2,
            steps: 4,
            temperature: 0.0,
            max_block_steps: None,
            cache: rediff_api::cache::CacheSettings::OFF,
        },
    );
    let order: Vec<(usize, Vec<usize>)> = events
        .iter()
        .map(|e| (e.block, e.unmasked.clone()))
        .collect();
    assert_eq!(
        order,
        vec![(0, vec![1]), (0, vec![0]), (1, vec![2]), (1, vec![3])]
    );
    // Inputs seen by the model: block 1 stays masked during block 0.
    let seen = model.seen.lock().unwrap();
    assert_eq!(seen[0], vec![MASK; 4]);
    assert_eq!(seen[1], vec![MASK, 2, MASK, MASK]);
    assert_eq!(seen[2], vec![1, 2, MASK, MASK]);
    assert_eq!(gen.responses[0], vec![1, 2, 3, 4]);
}

#[test]
fn refinement_rewrites_earlier_tokens_once_context_changes() {
    // Position 0 is decoded first as 1; once position 1 is decoded the model
    // prefers 4 there. Refinement revises it one step later (not in the step
    // that decoded position 1, whose forward pass still saw it masked);
    // plain denoising keeps the early token.
    let settings = SamplerSettings {
        gen_length: 3,
        block_length: 3,
        steps: 3,
        temperature: 0.0,
        max_block_steps: None,
        cache: rediff_api::cache::CacheSettings::OFF,
    };
    let mut model = Scripted::new(vec![1, 2, 3], vec![9.0, 5.0, 1.0]);
    model.second_thoughts = Some((0, 1, 4));
    let (gen, events) = run(&model, &All, settings);
    let revised: Vec<Vec<(usize, u32)>> = events.iter().map(|e| e.revised.clone()).collect();
    assert_eq!(revised, vec![vec![], vec![], vec![(0, 1)]]);
    assert_eq!(gen.responses[0], vec![4, 2, 3]);
    assert_eq!(gen.revisions[0], 1);
    let mut model = Scripted::new(vec![1, 2, 3], vec![9.0, 5.0, 1.0]);
    model.second_thoughts = Some((0, 1, 4));
    let (gen, _) = run(&model, &Plain, settings);
    assert_eq!(gen.responses[0], vec![1, 2, 3]);
}

#[test]
fn stops_at_end_of_turn_with_no_mask_before_it() {
    // Position 1 predicts EOT with top confidence; after step 2 positions 0..1 are set.
    let model = Scripted::new(vec![1, EOT, 3, 4, 2, 1], vec![5.0, 9.0, 1.0, 0.5, 0.4, 0.3]);
    let (gen, _) = run(
        &model,
        &Plain,
        SamplerSettings {
            gen_length: 6,
            block_length: 6,
            steps: 6,
            temperature: 0.0,
            max_block_steps: None,
            cache: rediff_api::cache::CacheSettings::OFF,
        },
    );
    assert_eq!(gen.forward_passes, 2, "stops once `1 <eot>` is decoded");
    assert_eq!(gen.outputs()[0], vec![1]);
    assert_eq!(gen.stops[0], Some(1));
}

#[test]
fn after_an_end_of_turn_the_budget_goes_before_it_and_the_stop_never_moves_later() {
    // 8 positions, 2 steps (4 per step). Step 1 decodes 2 (EOT, 9.0), 0, 5, 6
    // by confidence; the stop is 2. Step 2's budget of 4 goes to the only
    // mask before the stop (position 1); the rest are ties in the prompt.
    let model = Scripted::new(
        vec![1, 2, EOT, 3, 4, 1, 2, 3],
        vec![5.0, 0.5, 9.0, 0.1, 0.2, 4.0, 3.0, 0.3],
    );
    let (gen, events) = run(
        &model,
        &Plain,
        SamplerSettings {
            gen_length: 8,
            block_length: 8,
            steps: 2,
            temperature: 0.0,
            max_block_steps: None,
            cache: rediff_api::cache::CacheSettings::OFF,
        },
    );
    assert_eq!(events[0].unmasked, vec![0, 2, 5, 6]);
    assert_eq!(events[0].stop, Some(2));
    assert_eq!(events[1].unmasked, vec![1]);
    assert_eq!(events[1].prompt_picks, 3);
    assert_eq!(gen.outputs()[0], vec![1, 2]);
    assert_eq!(
        gen.responses[0][3], MASK,
        "positions after the stop stay masked"
    );
}

#[test]
fn a_revised_away_end_of_turn_keeps_the_stop() {
    // Step 1 decodes the EOT at 2 (the stop); step 2 decodes position 1, and
    // from then on position 2 predicts token 4, so step 3 revises the EOT
    // away. The stop stays at 2 (it only ever moves earlier).
    let mut model = Scripted::new(vec![1, 2, EOT], vec![1.0, 5.0, 9.0]);
    model.second_thoughts = Some((2, 1, 4));
    let (gen, events) = run(
        &model,
        &All,
        SamplerSettings {
            gen_length: 3,
            block_length: 3,
            steps: 3,
            temperature: 0.0,
            max_block_steps: None,
            cache: rediff_api::cache::CacheSettings::OFF,
        },
    );
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].stop, Some(2));
    assert_eq!(events[2].revised, vec![(2, EOT)]);
    assert_eq!(gen.responses[0], vec![1, 2, 4]);
    assert_eq!(gen.stops[0], Some(2));
    assert_eq!(gen.outputs()[0], vec![1, 2]);
}

#[test]
fn a_block_without_masks_ends_early() {
    // 4 positions, one block, 8 steps: counts 1,1,1,1,0,0,0,0; after 4 steps
    // the block has no mask and the remaining (revising) steps are skipped.
    let model = Scripted::new(vec![1, 2, 3, 4], vec![4.0, 3.0, 2.0, 1.0]);
    let (gen, events) = run(
        &model,
        &All,
        SamplerSettings {
            gen_length: 4,
            block_length: 4,
            steps: 8,
            temperature: 0.0,
            max_block_steps: None,
            cache: rediff_api::cache::CacheSettings::OFF,
        },
    );
    assert_eq!(events.len(), 4);
    assert_eq!(gen.forward_passes, 4);
    assert_eq!(gen.steps, vec![4]);
}

#[test]
fn a_policy_may_ignore_the_schedule_and_run_until_the_block_is_decoded() {
    // One step per block from a schedule that would take 2 per step: the
    // policy unmasks one per step, so 4 steps, then nothing more.
    let model = Scripted::new(vec![1, 2, 3, 4], vec![4.0, 3.0, 2.0, 1.0]);
    let stubborn = Stubborn {
        remask: None,
        extra: 0,
    };
    let (gen, events) = run(
        &model,
        &stubborn,
        SamplerSettings {
            gen_length: 4,
            block_length: 4,
            steps: 2,
            temperature: 0.0,
            max_block_steps: None,
            cache: rediff_api::cache::CacheSettings::OFF,
        },
    );
    assert_eq!(events.len(), 4);
    assert_eq!(gen.steps, vec![4]);
    assert_eq!(gen.responses[0], vec![1, 2, 3, 4]);
    assert_eq!(gen.guard_stops, vec![0]);
    // `more` keeps a decoded block stepping: two extra steps.
    let more = Stubborn {
        remask: None,
        extra: 2,
    };
    let (gen, _) = run(
        &model,
        &more,
        SamplerSettings {
            gen_length: 4,
            block_length: 4,
            steps: 2,
            temperature: 0.0,
            max_block_steps: None,
            cache: rediff_api::cache::CacheSettings::OFF,
        },
    );
    assert_eq!(gen.steps, vec![6]);
}

#[test]
fn remasking_forever_is_cut_by_the_guard_and_reported() {
    // Position 0 (most confident) is remasked whenever it is decoded: the
    // block never finishes; the guard of 5 steps cuts it and says so.
    let model = Scripted::new(vec![1, 2, 3, 4], vec![4.0, 3.0, 2.0, 1.0]);
    let stubborn = Stubborn {
        remask: Some(0),
        extra: 0,
    };
    let (gen, events) = run(
        &model,
        &stubborn,
        SamplerSettings {
            gen_length: 4,
            block_length: 4,
            steps: 4,
            temperature: 0.0,
            max_block_steps: Some(5),
            cache: rediff_api::cache::CacheSettings::OFF,
        },
    );
    assert_eq!(events.len(), 5);
    assert_eq!(gen.guard_stops, vec![1]);
    assert_eq!(gen.remasks[0], 2);
    assert_eq!(events[1].remasked, vec![0]);
    assert!(gen.responses[0].contains(&MASK));
}
