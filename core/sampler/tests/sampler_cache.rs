//! The sampler's key/value cache schedule against a model that records
//! every pass: which passes are full, which windows are recomputed, and
//! that a model without a cache is refused by name.

mod common;

use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use common::{Plain, Uniform};
use rand::SeedableRng;
use rediff_api::cache::{CacheMode, CacheSettings, CachedPass, KvCache};
use rediff_api::model::{ModelBackend, Prompt, PromptContext};
use rediff_api::tokens::{SpecialTokens, TextTokenizer};
use rediff_sampler::{Generation, Sampler, SamplerSettings};

const V: usize = 8;
const MASK: u32 = 7;
const L: usize = 8;

/// Position `i` predicts token `i % 5` with logit `L - i` (earlier is
/// surer), whatever the context; records each pass.
struct Recorder {
    special: SpecialTokens,
    tokenizer: TextTokenizer,
    cache: bool,
    passes: Mutex<Vec<Option<Range<usize>>>>,
}

impl Recorder {
    fn new(cache: bool) -> Self {
        let words: Vec<String> = (0..V).map(|i| format!("t{i}")).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        Self {
            special: SpecialTokens::new(MASK, 6, vec![5], vec![5, 6, 7]),
            tokenizer: rediff_formats::HfTokenizer::word_level(&words).unwrap(),
            cache,
            passes: Mutex::new(Vec::new()),
        }
    }

    fn logits(&self, batch: usize, rows: Range<usize>) -> rediff_api::Result<Tensor> {
        let mut out = vec![0f32; batch * rows.len() * V];
        for b in 0..batch {
            for (k, i) in rows.clone().enumerate() {
                out[(b * rows.len() + k) * V + i % 5] = (L - i) as f32;
            }
        }
        Ok(Tensor::from_vec(out, (batch, rows.len(), V), &Device::Cpu)?)
    }

    /// `None` for a full pass, the window otherwise.
    fn passes(&self) -> Vec<Option<Range<usize>>> {
        self.passes.lock().unwrap().clone()
    }
}

impl ModelBackend for Recorder {
    fn kind(&self) -> &str {
        "recorder"
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
    fn forward(&self, ctx: &PromptContext, _: &Tensor) -> rediff_api::Result<Tensor> {
        self.passes.lock().unwrap().push(None);
        self.logits(ctx.batch(), 0..L)
    }
    fn supports_cache(&self) -> bool {
        self.cache
    }
    fn forward_cached(
        &self,
        ctx: &PromptContext,
        _: &Tensor,
        cache: &mut KvCache,
        pass: CachedPass,
    ) -> rediff_api::Result<Tensor> {
        match pass {
            CachedPass::Full => {
                cache.set(());
                self.passes.lock().unwrap().push(None);
                self.logits(ctx.batch(), 0..L)
            }
            CachedPass::Window(w) => {
                assert!(!cache.is_empty(), "a window pass before a full pass");
                self.passes.lock().unwrap().push(Some(w.clone()));
                self.logits(ctx.batch(), w)
            }
        }
    }
    fn varmap(&self) -> Option<&VarMap> {
        None
    }
    fn save(&self, _: &Path) -> rediff_api::Result<()> {
        Ok(())
    }
}

/// Two samples, `L = 8` in blocks of `block`, 8 steps in all.
fn sample(model: &Recorder, block: usize, cache: CacheSettings) -> rediff_api::Result<Generation> {
    let sampler = Sampler {
        model,
        schedule: &Uniform,
        policy: &Plain,
        policy_name: "none",
        settings: SamplerSettings::for_tokens_per_step(L, block, 1, 0.0).with_cache(cache),
    };
    let ctx = model.encode_prompts(&[
        Prompt {
            image: None,
            ids: vec![],
        },
        Prompt {
            image: None,
            ids: vec![],
        },
    ])?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    sampler.generate(&ctx, &mut rng, None)
}

fn settings(mode: CacheMode, refresh: usize) -> CacheSettings {
    CacheSettings { mode, refresh }
}

#[test]
fn without_a_cache_every_step_is_a_plain_pass() {
    let m = Recorder::new(true);
    let g = sample(&m, 4, CacheSettings::OFF).unwrap();
    assert_eq!(m.passes(), vec![None; 8]);
    assert_eq!((g.forward_passes, g.window_passes), (8, 0));
}

#[test]
fn prefix_recomputes_from_the_current_block_to_the_end() {
    let m = Recorder::new(true);
    let g = sample(&m, 4, settings(CacheMode::Prefix, 0)).unwrap();
    let w0 = Some(0..8);
    let w1 = Some(4..8);
    assert_eq!(
        m.passes(),
        vec![
            None,
            w0.clone(),
            w0.clone(),
            w0,
            None,
            w1.clone(),
            w1.clone(),
            w1
        ]
    );
    assert_eq!((g.forward_passes, g.window_passes), (8, 6));
    // This model's logits ignore the context, so the tokens are exact.
    let plain = sample(&Recorder::new(true), 4, CacheSettings::OFF).unwrap();
    assert_eq!(g.responses, plain.responses);
    assert_eq!(g.responses[0], vec![0, 1, 2, 3, 4, 0, 1, 2]);
}

#[test]
fn dual_recomputes_the_current_block_only() {
    let m = Recorder::new(true);
    sample(&m, 4, settings(CacheMode::Dual, 0)).unwrap();
    let (a, b) = (Some(0..4), Some(4..8));
    assert_eq!(
        m.passes(),
        vec![None, a.clone(), a.clone(), a, None, b.clone(), b.clone(), b]
    );
}

#[test]
fn refresh_adds_full_passes_inside_a_block() {
    let m = Recorder::new(true);
    sample(&m, 8, settings(CacheMode::Prefix, 3)).unwrap();
    let w = Some(0..8);
    assert_eq!(
        m.passes(),
        vec![
            None,
            w.clone(),
            w.clone(),
            None,
            w.clone(),
            w.clone(),
            None,
            w
        ]
    );
    // refresh = 1: every pass is full.
    let m = Recorder::new(true);
    let g = sample(&m, 8, settings(CacheMode::Dual, 1)).unwrap();
    assert_eq!(m.passes(), vec![None; 8]);
    assert_eq!(g.window_passes, 0);
}

#[test]
fn a_model_that_cannot_cache_is_refused_naming_the_option() {
    let m = Recorder::new(false);
    let err = sample(&m, 4, settings(CacheMode::Prefix, 0))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cache = \"prefix\"") && err.contains("recorder model cannot cache"),
        "{err}"
    );
    assert!(m.passes().is_empty(), "refused before any pass");
}
