//! The evaluation grid: samplers and tokens per step.

use rediff_api::ComponentSpec;

/// One sampler to evaluate.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// Name in reports (`denoise`, `refine`).
    pub name: String,
    /// The refinement policy that makes it what it is.
    pub policy: ComponentSpec,
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
}
