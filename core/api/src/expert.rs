//! Expert correctors (Stage II): a strong model reviews a draft and returns
//! minimal same-length corrections.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::data::RevisePair;

/// What the expert sees for one draft.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExpertRequest {
    /// Sample id (for journals).
    pub id: String,
    /// The image file.
    pub image: PathBuf,
    /// The question the model answered.
    pub question: String,
    /// The reference answer.
    pub reference: String,
    /// The model's draft.
    pub draft: String,
    /// Ground truth the data source attached (used by synthetic oracles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<serde_json::Value>,
}

/// The expert's verdict on one draft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "pairs", rename_all = "lowercase")]
pub enum ExpertVerdict {
    /// The draft is right as it is.
    Right,
    /// Replacements `org -> target`, each `org` a span of the draft.
    Revisions(Vec<RevisePair>),
}

impl ExpertRequest {
    /// A request to review `draft`, the model's answer to `question` about
    /// `image`, for training sample `id` whose reference answer is `reference`.
    pub fn new(
        id: impl Into<String>,
        image: impl Into<PathBuf>,
        question: impl Into<String>,
        reference: impl Into<String>,
        draft: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            image: image.into(),
            question: question.into(),
            reference: reference.into(),
            draft: draft.into(),
            truth: None,
        }
    }

    /// With the sample's ground truth (for oracle experts).
    pub fn with_truth(mut self, truth: Option<serde_json::Value>) -> Self {
        self.truth = truth;
        self
    }
}

/// Tokens a remote model reports for one call (summed into reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

impl std::ops::AddAssign for TokenUsage {
    fn add_assign(&mut self, other: Self) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

/// An expert's answer for one draft: the verdict plus what it wants on record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExpertReply {
    /// Right, or the corrections.
    #[serde(flatten)]
    pub verdict: ExpertVerdict,
    /// Remarks for the journal: spans left alone (no same-length fix), etc.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Token usage, for remote models that report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
}

impl ExpertReply {
    /// With remarks for the journal.
    pub fn with_notes(mut self, notes: Vec<String>) -> Self {
        self.notes = notes;
        self
    }

    /// With the call's token usage.
    pub fn with_usage(mut self, usage: Option<TokenUsage>) -> Self {
        self.usage = usage;
        self
    }
}

impl From<ExpertVerdict> for ExpertReply {
    fn from(verdict: ExpertVerdict) -> Self {
        Self {
            verdict,
            notes: Vec::new(),
            usage: None,
        }
    }
}

/// Why an expert call failed (recorded per item; only a `fatal` failure
/// stops a run).
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ExpertError {
    /// Whether sending the item again may succeed: transient failures
    /// (timeouts, rate limits, 5xx) and failures of the setup (a wrong key or
    /// URL) that a fix cures. `false` when the expert answered and the answer
    /// was unusable: sending it again would pay for the same answer, so
    /// `rediff run --resume` skips it unless given `--retry-all`.
    pub retryable: bool,
    /// Human-readable reason; never contains credentials.
    pub message: String,
    /// No later call can succeed either (every request so far was refused
    /// as unauthorized, say): the runner starts no new request and the run
    /// stops with this message. Journaled items are kept for `--resume`.
    #[serde(default)]
    pub fatal: bool,
    /// A short kebab-case class of the failure (`http-404`, `timeout`,
    /// `unparseable`, ...): reports count failures by it.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Tokens the failed call still cost (a reply that came back but did not
    /// parse), when the expert reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
}

fn default_kind() -> String {
    "error".to_string()
}

impl ExpertError {
    /// A failure of this item only, of kind `error`.
    pub fn new(retryable: bool, message: impl Into<String>) -> Self {
        Self {
            retryable,
            message: message.into(),
            fatal: false,
            kind: default_kind(),
            usage: None,
        }
    }

    /// The same failure, classed as `kind`.
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// The same failure, with the tokens it cost.
    pub fn with_usage(mut self, usage: Option<TokenUsage>) -> Self {
        self.usage = usage;
        self
    }
}

/// A corrector of drafts. Implementations are registered under
/// [`crate::ComponentKind::Expert`]: local models, remote LLM APIs, oracles.
#[async_trait]
pub trait ExpertCorrector: Send + Sync {
    /// Reviews one draft. Failures are recorded for that item and never stop
    /// a run; retrying transient failures is the expert's own business.
    async fn review(&self, request: &ExpertRequest) -> Result<ExpertReply, ExpertError>;

    /// What `review` would send for `request`, credentials redacted, for
    /// `rediff run --dry-run`; `None` when there is nothing to show.
    fn describe(&self, _request: &ExpertRequest) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AlwaysRight;

    #[async_trait]
    impl ExpertCorrector for AlwaysRight {
        async fn review(&self, _: &ExpertRequest) -> Result<ExpertReply, ExpertError> {
            Ok(ExpertVerdict::Right.into())
        }
    }

    #[tokio::test]
    async fn trait_objects_are_usable_and_verdicts_serialise() {
        let expert: Box<dyn ExpertCorrector> = Box::new(AlwaysRight);
        let req = ExpertRequest {
            id: "0".into(),
            image: "a.png".into(),
            question: "q".into(),
            reference: "r".into(),
            draft: "d".into(),
            truth: None,
        };
        assert_eq!(
            expert.review(&req).await.unwrap().verdict,
            ExpertVerdict::Right
        );
        let v = ExpertVerdict::Revisions(vec![RevisePair {
            org: "red".into(),
            target: "blue".into(),
        }]);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(
            json,
            r#"{"verdict":"revisions","pairs":[{"org":"red","target":"blue"}]}"#
        );
        assert_eq!(serde_json::from_str::<ExpertVerdict>(&json).unwrap(), v);
    }
}
