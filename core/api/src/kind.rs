//! The kinds of pluggable components.

use std::fmt;

use serde::Serialize;

/// The kinds of pluggable components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// [`ModelBackend`](crate::ModelBackend)(crate::ModelBackend) built from options.
    Model,
    /// [`ModelBackend`](crate::ModelBackend) loaded from a checkpoint directory, keyed by `model_type`.
    ModelLoader,
    /// [`DataSource`](crate::DataSource).
    Data,
    /// [`NoiseSchedule`](crate::NoiseSchedule).
    Schedule,
    /// [`ErrorSynthesizer`](crate::ErrorSynthesizer).
    Synthesizer,
    /// [`RefinementPolicy`](crate::RefinementPolicy).
    Policy,
    /// [`ExpertCorrector`](crate::ExpertCorrector).
    Expert,
    /// [`Trainer`](crate::Trainer) of Stage II rounds.
    Trainer,
    /// [`CaptionScorer`](crate::CaptionScorer) built from options: a judge
    /// for `[eval] scorers` and `rediff score`.
    Scorer,
    /// Writes a quantized copy of a checkpoint directory (`rediff
    /// quantize`), keyed by `model_type`.
    Quantizer,
}

impl ComponentKind {
    /// Every kind, in display order.
    #[doc(hidden)]
    pub const ALL: [ComponentKind; 10] = [
        ComponentKind::Model,
        ComponentKind::ModelLoader,
        ComponentKind::Data,
        ComponentKind::Schedule,
        ComponentKind::Synthesizer,
        ComponentKind::Policy,
        ComponentKind::Expert,
        ComponentKind::Trainer,
        ComponentKind::Scorer,
        ComponentKind::Quantizer,
    ];

    /// Lower-case name used in messages and listings.
    #[doc(hidden)]
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Model => "model",
            ComponentKind::ModelLoader => "model-loader",
            ComponentKind::Data => "data",
            ComponentKind::Schedule => "schedule",
            ComponentKind::Synthesizer => "synthesizer",
            ComponentKind::Policy => "policy",
            ComponentKind::Expert => "expert",
            ComponentKind::Trainer => "trainer",
            ComponentKind::Scorer => "scorer",
            ComponentKind::Quantizer => "quantizer",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
