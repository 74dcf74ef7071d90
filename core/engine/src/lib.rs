//! # rediff-engine
//!
//! The engine of **rediff**, a framework for *refining* masked
//! discrete-diffusion vision-language models as described in
//! ["From Denoising to Refining: A Corrective Framework for Vision-Language
//! Diffusion Model"](https://arxiv.org/abs/2510.19871) (Ji et al., 2025).
//!
//! It drives the components a pipeline names (traits in `rediff-api`,
//! implementations registered by plugins):
//!
//! - [`config`]: the pipeline file's stage settings, with source-located errors;
//! - [`pipeline`]: assembly from a [`Registry`](rediff_api::Registry) and the
//!   run itself (baseline, Stage I, Stage II rounds, evaluation, report);
//! - [`train`] and [`optim`]: the trainer and AdamW;
//! - [`eval`]: the evaluation grid over samplers and tokens per step;
//! - [`stage2`]: the parts of the online self-correction loop.

pub mod config;
pub mod ema;
pub mod eval;
pub mod optim;
pub mod parallel;
pub mod pipeline;
pub mod rundir;
pub mod score;
pub mod scorers;
pub mod stage2;
pub mod train;

pub use config::PipelineConfig;
