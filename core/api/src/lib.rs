//! # rediff-api
//!
//! The vocabulary a **rediff** plugin builds against: the component traits
//! of a refining discrete-diffusion VLM pipeline after
//! ["From Denoising to Refining"](https://arxiv.org/abs/2510.19871) (Ji et
//! al., 2025) and their value types, the [`Registry`] that maps a
//! `(component kind, name)` to a factory, located configuration errors
//! ([`ComponentSpec`], [`ConfigError`]), and what a shared-library plugin
//! exports ([`export_plugin!`]).
//!
//! | kind | trait | what it decides |
//! |---|---|---|
//! | schedule | [`NoiseSchedule`] | mask probability in training, unmask counts at inference |
//! | synthesizer | [`ErrorSynthesizer`] | how a training sample is corrupted and weighted |
//! | policy | [`RefinementPolicy`] | what each sampler step unmasks, revises and remasks |
//! | expert | [`ExpertCorrector`] | Stage II corrections of the model's drafts |
//! | model | [`ModelBackend`] | the network: prompts in, logits out |
//! | data | [`DataSource`] | samples, and optionally a [`CaptionScorer`] |
//! | trainer | [`Trainer`] | who trains a Stage II round (in process, or a command) |
//!
//! Built-in components (`plugins/`, `experts/`) register through the same
//! [`Registrar`] as third-party libraries. Nothing here depends on the
//! engine, the report or the loader.

#![deny(missing_docs)]

pub mod cache;
pub mod data;
pub mod device;
pub mod error;
pub mod expert;
pub mod image;
pub mod model;
pub mod plugin;
pub mod policy;
pub mod registry;
pub mod sampling;
pub mod schedule;
pub mod spans;
pub mod spec;
pub mod synth;
pub mod tokens;
pub mod topk;
pub mod trainer;

pub use cache::{CacheMode, CacheSettings, CachedPass, KvCache};
pub use data::{
    CaptionScore, CaptionScorer, Count, DataSource, MetricInfo, RevisePair, Sample, Split,
};
pub use error::{Error, Result};
pub use expert::{ExpertCorrector, ExpertError, ExpertReply, ExpertRequest, ExpertVerdict};
pub use model::{ModelBackend, Prompt, PromptContext};
pub use policy::{PositionState, PositionView, RefinementPolicy, StepPlan, StepView};
pub use registry::{ComponentKind, Plugin, Registrar, Registry};
pub use schedule::NoiseSchedule;
pub use spec::{ComponentSpec, ConfigError};
pub use synth::{CorruptedSample, ErrorSynthesizer, LossGroup};
pub use tokens::{SpecialTokens, TextTokenizer};
pub use trainer::{TrainJob, Trainer};
