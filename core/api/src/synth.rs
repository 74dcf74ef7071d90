//! Error synthesizers: turn a clean training sample into the corrupted input
//! the model sees, plus the position groups the Stage I loss needs.

use rand::RngCore;
use serde::Serialize;

use crate::data::RevisePair;
use crate::tokens::{SpecialTokens, TextTokenizer};

/// A training sample after tokenization, before corruption.
#[derive(Debug, Clone)]
pub struct TokenizedSample {
    /// The clean response of `gen_length` ids (answer, end-of-turn, padding).
    pub response: Vec<u32>,
    /// The prompt ids (for span searches that, like the reference, look
    /// through the whole sequence).
    pub prompt: Vec<u32>,
    /// Number of answer tokens before the first end-of-turn.
    pub answer_len: usize,
    /// The answer text the response was built from.
    pub answer: String,
    /// Hallucination pairs: `org` occurs in `answer`, `target` is the truth.
    pub revise: Vec<RevisePair>,
}

/// What a synthesizer knows about the vocabulary.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SynthContext<'a> {
    /// Vocabulary size (ids are `0..vocab_size`).
    pub vocab_size: usize,
    /// Special tokens (never drawn as replacements).
    pub special: &'a SpecialTokens,
    /// The model's tokenizer, for locating spans.
    pub tokenizer: &'a TextTokenizer,
}

/// The role of a group of positions in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupRole {
    /// Replaced by `[MASK]`: the model fills them.
    Masked,
    /// Replaced by a random token: the model fixes them.
    Replaced,
    /// Left as they are: the model keeps them.
    Kept,
    /// Inside a hallucinated span: the model rewrites them to the target.
    Revise,
}

/// A group of response positions and the weight each of its per-token
/// cross-entropies gets in the sample's loss.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LossGroup {
    /// What the group is.
    pub role: GroupRole,
    /// Response positions (indices into the response).
    pub positions: Vec<usize>,
    /// Multiplier of each position's cross-entropy (for a group mean divided
    /// by `p`: `1 / (|group| * p)`).
    pub weight: f32,
}

/// The corrupted view of one sample.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CorruptedSample {
    /// What the model sees at the response positions.
    pub input: Vec<u32>,
    /// What it must predict there.
    pub labels: Vec<u32>,
    /// The loss groups; the sample's loss is `sum_g weight_g * sum_{i in g} CE_i`.
    pub groups: Vec<LossGroup>,
}

impl LossGroup {
    /// Positions of one role, each weighted `weight` in the loss.
    pub fn new(role: GroupRole, positions: Vec<usize>, weight: f32) -> Self {
        Self {
            role,
            positions,
            weight,
        }
    }
}

impl<'a> SynthContext<'a> {
    /// The vocabulary a synthesizer may draw replacements from.
    #[doc(hidden)]
    pub fn new(
        vocab_size: usize,
        special: &'a SpecialTokens,
        tokenizer: &'a TextTokenizer,
    ) -> Self {
        Self {
            vocab_size,
            special,
            tokenizer,
        }
    }
}

impl CorruptedSample {
    /// The corrupted input, the clean labels and the weighted groups.
    pub fn new(input: Vec<u32>, labels: Vec<u32>, groups: Vec<LossGroup>) -> Self {
        Self {
            input,
            labels,
            groups,
        }
    }

    /// The dense `[L]` weight row the batched loss uses.
    #[doc(hidden)]
    pub fn weight_row(&self) -> Vec<f32> {
        let mut row = vec![0f32; self.labels.len()];
        for group in &self.groups {
            for &i in &group.positions {
                row[i] += group.weight;
            }
        }
        row
    }

    /// The group with `role`, if present.
    #[doc(hidden)]
    pub fn group(&self, role: GroupRole) -> Option<&LossGroup> {
        self.groups.iter().find(|g| g.role == role)
    }
}

/// Why a sample produced no training example.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// A pair's `org` does not occur in the tokenized response.
    PairNotFound,
    /// A pair's `org` and `target` have different token counts.
    PairLengthMismatch,
    /// The sample has no pair left after dropping.
    NoUsablePair,
    /// A pair's first occurrence is in the prompt (the reference's search
    /// covers the whole sequence; rediff trains response positions only).
    PairInPrompt,
}

/// The result of corrupting one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Corruption {
    /// The training example, or `None` when nothing usable remained.
    pub sample: Option<CorruptedSample>,
    /// Pairs or samples dropped, with the reason (counted in reports).
    pub dropped: Vec<SkipReason>,
}

/// Makes corrupted training samples.
///
/// Implementations are registered under [`crate::ComponentKind::Synthesizer`].
/// Stage I asks each configured synthesizer in turn whether it
/// [`accepts`](Self::accepts) a sample; the first that does corrupts it.
pub trait ErrorSynthesizer: Send + Sync {
    /// Whether this synthesizer handles `sample` (for example: only samples
    /// that carry hallucination pairs).
    fn accepts(&self, sample: &TokenizedSample) -> bool;

    /// Corrupts `sample`. `mask_prob` is the schedule's `p` for this sample's
    /// `t`; synthesizers that do not mask ignore it except for weighting.
    fn corrupt(
        &self,
        sample: &TokenizedSample,
        mask_prob: f32,
        ctx: &SynthContext<'_>,
        rng: &mut dyn RngCore,
    ) -> crate::Result<Corruption>;
}

/// Group-mean weights: `1 / (count * divisor)` per position, 0 for an empty group.
#[doc(hidden)]
pub fn group_mean_weight(count: usize, divisor: f32) -> f32 {
    if count == 0 {
        0.0
    } else {
        1.0 / (count as f32 * divisor)
    }
}
