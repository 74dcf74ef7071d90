//! The evaluation grid: samplers and tokens per step.

use rediff_api::ComponentSpec;

/// One sampler to evaluate.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// Name in reports (`denoise`, `refine`).
    pub name: String,
    /// The refinement policy that makes it what it is.
    pub policy: ComponentSpec,
    /// Its own tokens per step (the schedule's budgets), instead of the
    /// grid's: a policy that ignores the budget (`threshold`, `wino`,
    /// `edit`) needs only one.
    pub tokens_per_step: Option<Vec<usize>>,
    /// The sampler's guard on steps per block (see
    /// [`crate::sampler::SamplerSettings::max_block_steps`]).
    pub max_block_steps: Option<usize>,
    /// Key/value reuse between steps (`cache`, `cache_refresh`; see
    /// [`rediff_api::cache`]); off by default.
    pub cache: rediff_api::cache::CacheSettings,
}

impl SamplerConfig {
    /// The tokens per step this sampler runs at in `eval`.
    pub fn tokens_per_step<'a>(&'a self, eval: &'a EvalConfig) -> &'a [usize] {
        self.tokens_per_step
            .as_deref()
            .unwrap_or(&eval.tokens_per_step)
    }
}

/// The evaluation grid.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// Held-out samples scored per setting.
    pub samples: usize,
    /// Tokens per step to evaluate (each must divide `gen_length`).
    pub tokens_per_step: Vec<usize>,
    /// Block length (semi-autoregressive decoding); `gen_length` when absent.
    pub block_length: usize,
    /// Gumbel temperature (0 = greedy).
    pub temperature: f64,
    /// Prompts per forward pass.
    pub batch_size: usize,
    /// Example captions per setting in `report.md`.
    pub examples: usize,
    /// Samplers to compare.
    pub samplers: Vec<SamplerConfig>,
    /// Comparisons the report tests (`eval.compare`): each arm against a
    /// reference arm at every tokens per step, on every metric.
    pub compare: Vec<rediff_report::compare::Comparison>,
}
