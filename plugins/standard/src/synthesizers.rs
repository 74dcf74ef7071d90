//! Error synthesizers (section 3 of the specification).

use rand::{Rng, RngCore};
use rediff_api::synth::group_mean_weight;
use rediff_api::synth::{
    CorruptedSample, Corruption, ErrorSynthesizer, GroupRole, LossGroup, SkipReason, SynthContext,
    TokenizedSample,
};
use serde::Deserialize;

use rediff_api::spans::{locate_pairs, locate_pairs_reference};

/// Options of the `masked` synthesizer (none).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskedOptions {}

/// Plain masked diffusion (LLaDA's objective, the baseline): each response
/// position is masked with probability `p`; loss `sum_{masked} CE / (L p)`.
/// Accepts samples without hallucination pairs.
#[derive(Debug, Clone, Copy)]
pub struct Masked;

impl Masked {
    /// Builds it.
    pub fn new(_: MaskedOptions) -> Self {
        Masked
    }
}

fn mask_positions(len: usize, p: f32, rng: &mut dyn RngCore) -> Vec<bool> {
    (0..len).map(|_| rng.random::<f32>() < p).collect()
}

impl ErrorSynthesizer for Masked {
    fn accepts(&self, sample: &TokenizedSample) -> bool {
        sample.revise.is_empty()
    }

    fn corrupt(
        &self,
        sample: &TokenizedSample,
        p: f32,
        ctx: &SynthContext<'_>,
        rng: &mut dyn RngCore,
    ) -> rediff_api::Result<Corruption> {
        let l = sample.response.len();
        let masked = mask_positions(l, p, rng);
        let mut input = sample.response.clone();
        let mut positions = Vec::new();
        for (i, &m) in masked.iter().enumerate() {
            if m {
                input[i] = ctx.special.mask;
                positions.push(i);
            }
        }
        let weight = if positions.is_empty() {
            0.0
        } else {
            1.0 / (l as f32 * p)
        };
        Ok(Corruption {
            sample: Some(CorruptedSample::new(
                input,
                sample.response.clone(),
                vec![LossGroup::new(GroupRole::Masked, positions, weight)],
            )),
            dropped: Vec::new(),
        })
    }
}

/// Which ids random replacement draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplacementIds {
    /// Every id that is not a special token (rediff's default).
    #[default]
    NonSpecial,
    /// `1 ..= vocab - 1001`, as the reference draws them
    /// (`torch.randint(1, vocab_size - 1000)`; LLaDA's special tokens sit
    /// in the top 1000 ids).
    Reference,
    /// A token of the same answer, taken from another position (uniform over
    /// the answer's non-special positions whose token differs from the one
    /// replaced; a uniform non-special id when there is none). Parallel
    /// decoding fails this way: a word of the caption repeated or bound to
    /// the wrong object, not a word from nowhere.
    InResponse,
}

/// Options of `random-replace`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomReplaceOptions {
    /// Probability that an unmasked position is replaced by a random
    /// ordinary token. Default 0.05 (the paper's `r`).
    pub rate: f32,
    /// Divide the group means by `max(p, loss_p_floor)` instead of `p`.
    /// With `p` down to `eps = 1e-3` the `1/p` factor makes single samples
    /// weigh up to 1000x the others and training noisy on small budgets; a
    /// floor caps that. Default 0: exactly the paper's loss.
    pub loss_p_floor: f32,
    /// `non-special` (default), `reference` (ids `1 ..= vocab - 1001`
    /// without a special-token filter, as the reference code draws them) or
    /// `in-response` (a word of the same answer from another position).
    pub ids: ReplacementIds,
}

impl Default for RandomReplaceOptions {
    fn default() -> Self {
        Self {
            rate: 0.05,
            loss_p_floor: 0.0,
            ids: ReplacementIds::NonSpecial,
        }
    }
}

/// Syntactic errors: mask with probability `p`, then replace each unmasked
/// position with probability `rate` by a uniformly drawn non-special token.
/// Loss: `mean_masked CE / p + mean_replaced CE / p + mean_kept CE / p`.
/// Accepts samples without hallucination pairs.
#[derive(Debug, Clone, Copy)]
pub struct RandomReplace {
    rate: f32,
    loss_p_floor: f32,
    ids: ReplacementIds,
}

impl RandomReplace {
    /// Validates `rate` in `[0, 1]`.
    pub fn new(options: RandomReplaceOptions) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&options.rate) {
            return Err(format!("rate must lie in [0, 1], got {}", options.rate));
        }
        if !(0.0..=1.0).contains(&options.loss_p_floor) {
            return Err(format!(
                "loss_p_floor must lie in [0, 1], got {}",
                options.loss_p_floor
            ));
        }
        Ok(Self {
            rate: options.rate,
            loss_p_floor: options.loss_p_floor,
            ids: options.ids,
        })
    }

    /// Draws the replacement of `sample.response[at]`.
    fn draw(
        &self,
        sample: &TokenizedSample,
        at: usize,
        ctx: &SynthContext<'_>,
        rng: &mut dyn RngCore,
    ) -> rediff_api::Result<u32> {
        match self.ids {
            ReplacementIds::NonSpecial => Ok(ordinary_token(ctx, rng)),
            ReplacementIds::InResponse => {
                let current = sample.response[at];
                let answer = &sample.response[..sample.answer_len.min(sample.response.len())];
                let mut others = answer
                    .iter()
                    .copied()
                    .filter(|&id| id != current && !ctx.special.is_special(id));
                // Counted, then walked again: no allocation per replacement.
                Ok(match others.clone().count() {
                    0 => ordinary_token(ctx, rng),
                    n => others.nth(rng.random_range(0..n)).expect("n candidates"),
                })
            }
            ReplacementIds::Reference => {
                let high = ctx
                    .vocab_size
                    .checked_sub(1000)
                    .filter(|&h| h > 1)
                    .ok_or_else(|| {
                        rediff_api::Error::invalid(format!(
                            "random-replace ids = \"reference\" draws from 1..vocab-1000, \
but the vocabulary has only {} ids",
                            ctx.vocab_size
                        ))
                    })?;
                Ok(rng.random_range(1..high as u32))
            }
        }
    }
}

/// Draws a uniformly random non-special token id.
pub(crate) fn ordinary_token(ctx: &SynthContext<'_>, rng: &mut dyn RngCore) -> u32 {
    loop {
        let id = rng.random_range(0..ctx.vocab_size as u32);
        if !ctx.special.is_special(id) {
            return id;
        }
    }
}

impl ErrorSynthesizer for RandomReplace {
    fn accepts(&self, sample: &TokenizedSample) -> bool {
        sample.revise.is_empty()
    }

    fn corrupt(
        &self,
        sample: &TokenizedSample,
        p: f32,
        ctx: &SynthContext<'_>,
        rng: &mut dyn RngCore,
    ) -> rediff_api::Result<Corruption> {
        let l = sample.response.len();
        let masked = mask_positions(l, p, rng);
        let mut input = sample.response.clone();
        let (mut m, mut r, mut k) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..l {
            if masked[i] {
                input[i] = ctx.special.mask;
                m.push(i);
            } else if rng.random::<f32>() < self.rate {
                input[i] = self.draw(sample, i, ctx, rng)?;
                r.push(i);
            } else {
                k.push(i);
            }
        }
        let divisor = p.max(self.loss_p_floor);
        let group = |role, positions: Vec<usize>| {
            let weight = group_mean_weight(positions.len(), divisor);
            LossGroup::new(role, positions, weight)
        };
        let groups = vec![
            group(GroupRole::Masked, m),
            group(GroupRole::Replaced, r),
            group(GroupRole::Kept, k),
        ];
        Ok(Corruption {
            sample: Some(CorruptedSample::new(input, sample.response.clone(), groups)),
            dropped: Vec::new(),
        })
    }
}

/// Where `span-pairs` looks for each pair's `org`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpanSearch {
    /// In the answer, as `org` or `" " + org` (rediff's default).
    #[default]
    Answer,
    /// As the reference: the leading-space form only (`"dummy " + org`,
    /// first id dropped), first occurrence in `[prompt | answer]`; a pair
    /// found first in the prompt is dropped (`pair_in_prompt`).
    Reference,
}

/// What `span-pairs` does with a sample none of whose pairs could be located.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unlocated {
    /// Skip it (counted as `no_usable_pair`; rediff's default).
    #[default]
    Skip,
    /// Train it as a clean sample with random replacement (`clean`
    /// options), as the reference does: its (hallucinated) answer becomes
    /// the target.
    Clean,
}

/// Options of `span-pairs`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanPairsOptions {
    /// Divide the revise-span mean by `p` as the reference code does
    /// (against its own comment). Default false.
    pub revise_loss_divides_by_p: bool,
    /// Mask each response position outside the revise spans with
    /// probability `mask_context * p`, so the model also learns to revise
    /// while parts of the answer are still masked (the state the refining
    /// sampler revises in). The loss stays on the revise spans. Default 0:
    /// no masking, as the reference.
    pub mask_context: f32,
    /// `answer` (default) or `reference` (see [`SpanSearch`]).
    pub search: SpanSearch,
    /// `skip` (default) or `clean` (see [`Unlocated`]).
    pub unlocated: Unlocated,
    /// The random replacement applied with `unlocated = "clean"`
    /// (`random-replace`'s options; default rate 0.05).
    pub clean: RandomReplaceOptions,
}

/// Hallucination errors: the response holds wrong spans; each pair's `org`
/// is located (first occurrence) and its positions learn the `target`
/// tokens. No masking, no replacement; loss `mean_revise CE`.
/// Accepts samples that carry pairs.
#[derive(Debug, Clone, Copy)]
pub struct SpanPairs {
    options: SpanPairsOptions,
    clean: RandomReplace,
}

impl SpanPairs {
    /// Builds it; `mask_context` must lie in `[0, 1]`.
    pub fn new(options: SpanPairsOptions) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&options.mask_context) {
            return Err(format!(
                "mask_context must lie in [0, 1], got {}",
                options.mask_context
            ));
        }
        Ok(Self {
            options,
            clean: RandomReplace::new(options.clean)?,
        })
    }
}

impl ErrorSynthesizer for SpanPairs {
    fn accepts(&self, sample: &TokenizedSample) -> bool {
        !sample.revise.is_empty()
    }

    fn corrupt(
        &self,
        sample: &TokenizedSample,
        p: f32,
        ctx: &SynthContext<'_>,
        rng: &mut dyn RngCore,
    ) -> rediff_api::Result<Corruption> {
        let answer = &sample.response[..sample.answer_len];
        let located = match self.options.search {
            SpanSearch::Answer => locate_pairs(ctx.tokenizer, answer, &sample.revise)?,
            SpanSearch::Reference => {
                locate_pairs_reference(ctx.tokenizer, &sample.prompt, answer, &sample.revise)?
            }
        };
        let mut dropped = located.dropped;
        if located.revise.is_empty() {
            dropped.push(SkipReason::NoUsablePair);
            let sample = match self.options.unlocated {
                Unlocated::Skip => None,
                Unlocated::Clean => self.clean.corrupt(sample, p, ctx, rng)?.sample,
            };
            return Ok(Corruption { sample, dropped });
        }
        let mut labels = sample.response.clone();
        let mut positions = Vec::with_capacity(located.revise.len());
        for &(pos, target) in &located.revise {
            labels[pos] = target;
            if !positions.contains(&pos) {
                positions.push(pos);
            }
        }
        let divisor = if self.options.revise_loss_divides_by_p {
            p
        } else {
            1.0
        };
        let mut input = sample.response.clone();
        if self.options.mask_context > 0.0 {
            let q = self.options.mask_context * p;
            for (i, token) in input.iter_mut().enumerate() {
                if !positions.contains(&i) && rng.random::<f32>() < q {
                    *token = ctx.special.mask;
                }
            }
        }
        let weight = group_mean_weight(positions.len(), divisor);
        Ok(Corruption {
            sample: Some(CorruptedSample::new(
                input,
                labels,
                vec![LossGroup::new(GroupRole::Revise, positions, weight)],
            )),
            dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn word_tokenizer(words: &[&str]) -> rediff_api::TextTokenizer {
        rediff_formats::HfTokenizer::word_level(words).unwrap()
    }
    use rand::SeedableRng;
    use rediff_api::data::RevisePair;
    use rediff_api::tokens::SpecialTokens;

    const WORDS: &[&str] = &[
        "a", "red", "blue", "circle", "square", "and", "<eot>", "<mask>",
    ];

    /// The vocabulary of [`WORDS`] and its special tokens.
    struct Fixture {
        tokenizer: rediff_api::TextTokenizer,
        special: SpecialTokens,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                tokenizer: word_tokenizer(WORDS),
                special: special(),
            }
        }

        fn ctx(&self) -> SynthContext<'_> {
            SynthContext::new(8, &self.special, &self.tokenizer)
        }
    }

    fn special() -> SpecialTokens {
        SpecialTokens::new(7, 6, vec![], vec![6, 7])
    }

    fn sample(revise: Vec<RevisePair>) -> TokenizedSample {
        // "a red circle" + eot padding to 6.
        TokenizedSample {
            response: vec![0, 1, 3, 6, 6, 6],
            prompt: vec![4, 2],
            answer_len: 3,
            answer: "a red circle".into(),
            revise,
        }
    }

    #[test]
    fn random_replace_groups_partition_and_weights_are_group_means() {
        let fx = Fixture::new();
        let (ctx, sp) = (fx.ctx(), &fx.special);
        let synth = RandomReplace::new(RandomReplaceOptions {
            rate: 0.5,
            ..Default::default()
        })
        .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let c = synth
                .corrupt(&sample(vec![]), 0.4, &ctx, &mut rng)
                .unwrap()
                .sample
                .unwrap();
            let mut all: Vec<usize> = c.groups.iter().flat_map(|g| g.positions.clone()).collect();
            all.sort();
            assert_eq!(all, (0..6).collect::<Vec<_>>());
            for g in &c.groups {
                let expect = group_mean_weight(g.positions.len(), 0.4);
                assert_eq!(g.weight, expect);
                for &i in &g.positions {
                    match g.role {
                        GroupRole::Masked => assert_eq!(c.input[i], 7),
                        GroupRole::Kept => assert_eq!(c.input[i], c.labels[i]),
                        GroupRole::Replaced => assert!(!sp.is_special(c.input[i])),
                        GroupRole::Revise => unreachable!(),
                    }
                }
            }
            assert_eq!(c.labels, sample(vec![]).response);
        }
        // A floor caps the 1/p factor.
        let floored = RandomReplace::new(RandomReplaceOptions {
            rate: 0.5,
            loss_p_floor: 0.5,
            ..Default::default()
        })
        .unwrap();
        let c = floored
            .corrupt(&sample(vec![]), 0.1, &ctx, &mut rng)
            .unwrap()
            .sample
            .unwrap();
        for g in &c.groups {
            assert_eq!(g.weight, group_mean_weight(g.positions.len(), 0.5));
        }
    }

    #[test]
    fn in_response_replacements_are_other_words_of_the_same_answer() {
        let fx = Fixture::new();
        let ctx = fx.ctx();
        let synth = RandomReplace::new(RandomReplaceOptions {
            rate: 1.0,
            loss_p_floor: 0.1,
            ids: ReplacementIds::InResponse,
        })
        .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        // "a red circle" = [0, 1, 3] + end-of-turn padding (6, special).
        let mut seen = vec![std::collections::BTreeSet::new(); 6];
        for _ in 0..200 {
            let c = synth
                .corrupt(&sample(vec![]), 0.0, &ctx, &mut rng)
                .unwrap()
                .sample
                .unwrap();
            for (i, &id) in c.input.iter().enumerate() {
                seen[i].insert(id);
            }
        }
        let words = |v: &[u32]| {
            v.iter()
                .copied()
                .collect::<std::collections::BTreeSet<u32>>()
        };
        assert_eq!(seen[0], words(&[1, 3]), "'a' becomes red or circle");
        assert_eq!(seen[1], words(&[0, 3]), "'red' becomes a or circle");
        assert_eq!(seen[2], words(&[0, 1]), "'circle' becomes a or red");
        for padding in &seen[3..] {
            assert_eq!(padding, &words(&[0, 1, 3]), "padding takes any answer word");
        }
        // An answer of one repeated word has nothing else to offer: a
        // uniform non-special id instead, never a special one.
        let mono = TokenizedSample {
            response: vec![2, 2, 2, 6],
            answer_len: 3,
            ..sample(vec![])
        };
        let mut fallback = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let c = synth.corrupt(&mono, 0.0, &ctx, &mut rng).unwrap();
            fallback.extend(c.sample.unwrap().input[..3].iter().copied());
        }
        assert_eq!(fallback, words(&[0, 1, 2, 3, 4, 5]));
    }

    #[test]
    fn reference_replacement_ids_are_one_to_vocab_minus_1001() {
        let fx = Fixture::new();
        let mut ctx = fx.ctx();
        ctx.vocab_size = 1003;
        let synth = RandomReplace::new(RandomReplaceOptions {
            rate: 1.0,
            ids: ReplacementIds::Reference,
            ..Default::default()
        })
        .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let c = synth
                .corrupt(&sample(vec![]), 0.001, &ctx, &mut rng)
                .unwrap()
                .sample
                .unwrap();
            for g in c.groups.iter().filter(|g| g.role == GroupRole::Replaced) {
                seen.extend(g.positions.iter().map(|&i| c.input[i]));
            }
        }
        // randint(1, 1003 - 1000) draws 1 and 2 only (special ids 6 and 7 too, were they in range).
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 2]);
        ctx.vocab_size = 8;
        let err = synth
            .corrupt(&sample(vec![]), 0.001, &ctx, &mut rng)
            .unwrap_err();
        assert!(err.to_string().contains("reference"), "{err}");
    }

    #[test]
    fn reference_span_search_covers_the_prompt_and_the_space_form_only() {
        let fx = Fixture::new();
        let ctx = fx.ctx();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let pair = |org: &str, target: &str| RevisePair {
            org: org.into(),
            target: target.into(),
        };
        let reference = SpanPairs::new(SpanPairsOptions {
            search: SpanSearch::Reference,
            ..Default::default()
        })
        .unwrap();
        // Prompt [square, blue], answer "a red circle": "blue" is first in the
        // prompt, "red" in the answer (sequence index 3).
        let out = reference
            .corrupt(
                &sample(vec![pair("blue", "red"), pair("red", "blue")]),
                0.5,
                &ctx,
                &mut rng,
            )
            .unwrap();
        assert_eq!(out.dropped, vec![SkipReason::PairInPrompt]);
        assert_eq!(out.sample.unwrap().labels, vec![0, 2, 3, 6, 6, 6]);
        // A match at sequence index 0 is not found, as in the reference.
        let mut s = sample(vec![pair("square", "circle")]);
        s.prompt = vec![4];
        let out = reference.corrupt(&s, 0.5, &ctx, &mut rng).unwrap();
        assert_eq!(
            out.dropped,
            vec![SkipReason::PairNotFound, SkipReason::NoUsablePair]
        );
        assert!(out.sample.is_none());
    }

    #[test]
    fn unlocated_samples_can_train_clean_like_the_reference() {
        let fx = Fixture::new();
        let ctx = fx.ctx();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let synth = SpanPairs::new(SpanPairsOptions {
            unlocated: Unlocated::Clean,
            ..Default::default()
        })
        .unwrap();
        let bad = vec![RevisePair {
            org: "square".into(),
            target: "blue".into(),
        }];
        let out = synth.corrupt(&sample(bad), 0.5, &ctx, &mut rng).unwrap();
        assert_eq!(
            out.dropped,
            vec![SkipReason::PairNotFound, SkipReason::NoUsablePair]
        );
        let c = out.sample.expect("trained as a clean sample");
        assert_eq!(c.labels, sample(vec![]).response);
        let roles: Vec<GroupRole> = c.groups.iter().map(|g| g.role).collect();
        assert_eq!(
            roles,
            vec![GroupRole::Masked, GroupRole::Replaced, GroupRole::Kept]
        );
    }

    #[test]
    fn masked_uses_llada_normalisation() {
        let fx = Fixture::new();
        let ctx = fx.ctx();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let c = Masked
            .corrupt(&sample(vec![]), 1.0, &ctx, &mut rng)
            .unwrap()
            .sample
            .unwrap();
        assert_eq!(c.input, vec![7; 6]);
        assert_eq!(c.groups[0].positions.len(), 6);
        assert!((c.groups[0].weight - 1.0 / 6.0).abs() < 1e-7);
    }

    #[test]
    fn span_pairs_label_targets_and_drop_bad_pairs() {
        let fx = Fixture::new();
        let ctx = fx.ctx();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let pairs = vec![
            RevisePair {
                org: "red".into(),
                target: "blue".into(),
            },
            RevisePair {
                org: "square".into(),
                target: "circle".into(),
            },
        ];
        let synth = SpanPairs::new(SpanPairsOptions::default()).unwrap();
        assert!(synth.accepts(&sample(pairs.clone())));
        assert!(!synth.accepts(&sample(vec![])));
        let out = synth
            .corrupt(&sample(pairs.clone()), 0.25, &ctx, &mut rng)
            .unwrap();
        assert_eq!(out.dropped, vec![SkipReason::PairNotFound]);
        let c = out.sample.unwrap();
        assert_eq!(c.input, vec![0, 1, 3, 6, 6, 6]);
        assert_eq!(c.labels, vec![0, 2, 3, 6, 6, 6]);
        assert_eq!(c.groups[0].positions, vec![1]);
        assert_eq!(c.groups[0].weight, 1.0);
        let quirk = SpanPairs::new(SpanPairsOptions {
            revise_loss_divides_by_p: true,
            ..Default::default()
        })
        .unwrap();
        let c = quirk
            .corrupt(&sample(pairs), 0.25, &ctx, &mut rng)
            .unwrap()
            .sample
            .unwrap();
        assert_eq!(c.groups[0].weight, 4.0);
        // Nothing usable: no example, counted.
        let bad = vec![RevisePair {
            org: "square".into(),
            target: "blue".into(),
        }];
        let out = synth.corrupt(&sample(bad), 0.5, &ctx, &mut rng).unwrap();
        assert!(out.sample.is_none());
        assert_eq!(
            out.dropped,
            vec![SkipReason::PairNotFound, SkipReason::NoUsablePair]
        );
    }

    #[test]
    fn span_pairs_can_mask_the_context_but_never_the_span() {
        let fx = Fixture::new();
        let (ctx, sp) = (fx.ctx(), &fx.special);
        let pairs = vec![RevisePair {
            org: "red".into(),
            target: "blue".into(),
        }];
        let masking = SpanPairs::new(SpanPairsOptions {
            mask_context: 1.0,
            ..Default::default()
        })
        .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // p = 1: every position but the span is masked; labels and loss unchanged.
        let c = masking
            .corrupt(&sample(pairs.clone()), 1.0, &ctx, &mut rng)
            .unwrap()
            .sample
            .unwrap();
        assert_eq!(
            c.input,
            vec![sp.mask, 1, sp.mask, sp.mask, sp.mask, sp.mask]
        );
        assert_eq!(c.labels, vec![0, 2, 3, 6, 6, 6]);
        assert_eq!(c.groups.len(), 1);
        assert_eq!(c.groups[0].positions, vec![1]);
        // p = 0: nothing masked.
        let c = masking
            .corrupt(&sample(pairs), 0.0, &ctx, &mut rng)
            .unwrap()
            .sample
            .unwrap();
        assert_eq!(c.input, vec![0, 1, 3, 6, 6, 6]);
        assert!(SpanPairs::new(SpanPairsOptions {
            mask_context: 1.5,
            ..Default::default()
        })
        .is_err());
    }
}
