//! # rediff-core
//!
//! The vocabulary and the engine of **rediff**, a framework for *refining*
//! masked discrete-diffusion vision-language models as described in
//! ["From Denoising to Refining: A Corrective Framework for Vision-Language
//! Diffusion Model"](https://arxiv.org/abs/2510.19871) (Ji et al., 2025).
//!
//! The crate defines the component traits ([`NoiseSchedule`],
//! [`ErrorSynthesizer`], [`RefinementPolicy`], [`ExpertCorrector`],
//! [`ModelBackend`], [`DataSource`]), the [`Registry`] that maps a
//! `(component kind, name)` to a factory, the pipeline configuration with
//! source-located errors, and the engine that drives them: the
//! denoising/refining [`sampler`], the Stage I [`loss`], the [`train`]er, the
//! [`eval`]uation grid, the [`report`] and the [`pipeline`] that chains them.
//!
//! Nothing here names a concrete implementation: built-in components live in
//! the `plugins/` crates and register through the same [`Registrar`] API a
//! third-party plugin uses.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod dynamic;
pub mod error;
pub mod eval;
pub mod expert;
pub mod formats;
pub mod image_io;
pub mod loss;
pub mod model;
pub mod ops;
pub mod optim;
pub mod parallel;
pub mod pipeline;
pub mod policy;
pub mod registry;
pub mod report;
pub mod rng;
pub mod sampler;
pub mod schedule;
pub mod seeded_init;
pub mod spans;
pub mod stage2;
pub mod synth;
pub mod tokens;
pub mod topk;
pub mod train;

pub use config::{ComponentSpec, ConfigError, PipelineConfig};
pub use data::{CaptionScorer, DataSource, RevisePair, Sample, Split};
pub use error::{Error, Result};
pub use expert::{ExpertCorrector, ExpertError, ExpertReply, ExpertRequest, ExpertVerdict};
pub use model::{ModelBackend, Prompt, PromptContext};
pub use policy::RefinementPolicy;
pub use registry::{ComponentKind, Plugin, Registrar, Registry};
pub use schedule::NoiseSchedule;
pub use synth::{CorruptedSample, ErrorSynthesizer, LossGroup};
pub use tokens::{SpecialTokens, TextTokenizer};
