//! # rediff-nn
//!
//! Tensor helpers shared by rediff's model plugins and its trainer, for
//! [ReDiff](https://arxiv.org/abs/2510.19871)-style refining models:
//!
//! - [`ops`]: fused CPU kernels with backward passes (RMSNorm, softmax,
//!   SiLU, weighted cross-entropy, linear), falling back to candle's plain
//!   differentiable ops elsewhere;
//! - [`seeded_init`]: a `VarBuilder` whose initialisation is a function of
//!   a seed, so the same seed builds the same model;
//! - [`checkpoint`]: VarMap checkpoints (safetensors plus a JSON manifest);
//! - [`loss`]: the per-group weighted token cross-entropy of Stage I/II;
//! - [`rng`]: the seeded random generators rediff uses everywhere.

pub mod checkpoint;
pub mod kv;
pub mod loss;
pub mod ops;
pub mod rng;
pub mod seeded_init;
