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
//!
//! Two tiers: everything documented here is the plugin API; the hidden
//! `__private` module holds the plumbing the loader, the engine and the
//! binary use (and [`export_plugin!`] expands to), which may change in any
//! release. Start a plugin with `use rediff_api::prelude::*;`.

#![deny(missing_docs)]

pub mod cache;
pub mod data;
pub mod device;
pub mod error;
pub mod expert;
mod guard;
pub mod image;
mod kind;
pub mod model;
pub mod policy;
pub mod registry;
pub mod schedule;
pub mod spans;
pub mod spec;
pub mod synth;
pub mod tokens;
mod topk;
pub mod trainer;

#[doc(hidden)]
pub mod __private;

/// `#[async_trait]`, for implementing [`ExpertCorrector`] and [`Trainer`]
/// without depending on the `async-trait` crate yourself.
pub use async_trait::async_trait;
pub use cache::{CacheMode, CacheSettings, CachedPass, KvCache};
pub use data::{
    CaptionScore, CaptionScorer, Count, DataSource, MetricInfo, RevisePair, Sample, ScoreInput,
    Split,
};
pub use error::{Error, Result};
pub use expert::{ExpertCorrector, ExpertError, ExpertReply, ExpertRequest, ExpertVerdict};
pub use kind::ComponentKind;
pub use model::{ModelBackend, Prompt, PromptContext};
pub use policy::{PositionState, PositionView, RefinementPolicy, StepPlan, StepView};
pub use registry::{BuildContext, Plugin, Registrar, Registry, RegistryError};
pub use schedule::NoiseSchedule;
pub use spec::{ComponentSpec, ConfigError};
pub use synth::{CorruptedSample, ErrorSynthesizer, LossGroup};
pub use tokens::{SpecialTokens, TextTokenizer};
pub use trainer::{TrainJob, Trainer};

/// What most plugins need in one import: the component traits, the
/// registration types and the values components build and receive.
pub mod prelude {
    pub use crate::async_trait;
    pub use crate::{
        BuildContext, CaptionScore, CaptionScorer, ComponentSpec, ConfigError, CorruptedSample,
        Count, DataSource, Error, ErrorSynthesizer, ExpertCorrector, ExpertError, ExpertReply,
        ExpertRequest, LossGroup, MetricInfo, ModelBackend, NoiseSchedule, Plugin, PositionState,
        PositionView, RefinementPolicy, Registrar, RegistryError, Result, RevisePair, Sample,
        ScoreInput, Split, StepPlan, StepView, TextTokenizer, Trainer,
    };
}
