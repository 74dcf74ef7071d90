//! Expert correctors (Stage II): a strong model reviews a draft and returns
//! minimal same-length corrections.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::data::RevisePair;

/// What the expert sees for one draft.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// Why an expert call failed (recorded per item, never fatal for a run).
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ExpertError {
    /// Whether retrying may help (timeouts, rate limits, 5xx).
    pub retryable: bool,
    /// Human-readable reason; never contains credentials.
    pub message: String,
}

/// A corrector of drafts. Implementations are registered under
/// [`crate::ComponentKind::Expert`]: local models, remote LLM APIs, oracles.
#[async_trait]
pub trait ExpertCorrector: Send + Sync {
    /// Reviews one draft.
    async fn review(&self, request: &ExpertRequest) -> Result<ExpertVerdict, ExpertError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AlwaysRight;

    #[async_trait]
    impl ExpertCorrector for AlwaysRight {
        async fn review(&self, _: &ExpertRequest) -> Result<ExpertVerdict, ExpertError> {
            Ok(ExpertVerdict::Right)
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
        assert_eq!(expert.review(&req).await.unwrap(), ExpertVerdict::Right);
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
