//! The `judge` scorer's options.

use std::path::PathBuf;

use rediff_expert_openai::OpenAiOptions;
use serde::Deserialize;

use crate::metric::Metric;

/// Options of the `judge` scorer (`[[eval.scorers]]`, `rediff score`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeOptions {
    /// Metrics to score, in column order. Default: all four.
    #[serde(default = "all_metrics")]
    pub metrics: Vec<Metric>,
    /// The judge: an OpenAI-compatible chat endpoint, with the same options
    /// as the `openai` expert (`base_url`, `model`, `api_key_env`,
    /// `max_concurrency`, `max_retries`, ...). Absent `temperature` and
    /// `seed` are sent as 0 so replies repeat. The judge reads text only
    /// unless this table sets `image = "data_url"`: then it is shown the
    /// image when it verifies propositions.
    pub judge: OpenAiOptions,
    /// The call cache (JSON lines). Default: `judge-cache.jsonl` in the
    /// run's (or `rediff score`'s) output directory; a relative path
    /// resolves against the pipeline file's directory. Point several runs
    /// at one file to score each caption once.
    #[serde(default)]
    pub cache: Option<PathBuf>,
    /// Tries per judge step when the reply is malformed (no JSON, wrong
    /// shape, a score out of range): then the caption is recorded as a
    /// failure of that metric and left out of its average. Default 3.
    #[serde(default = "default_attempts")]
    pub attempts: usize,
    /// Coverage questions the judge writes per image from its references
    /// when the data brings none (a references file may carry its own).
    /// Default 10.
    #[serde(default = "default_questions")]
    pub questions: usize,
    /// Extra synonym groups for CAPTURE matching: a text file, one group per
    /// line, words or phrases separated by commas.
    #[serde(default)]
    pub synonyms: Option<PathBuf>,
}

fn all_metrics() -> Vec<Metric> {
    Metric::ALL.to_vec()
}
fn default_attempts() -> usize {
    3
}
fn default_questions() -> usize {
    10
}

impl JudgeOptions {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.metrics.is_empty() {
            return Err(("metrics".into(), "metrics names no metric".into()));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            if self.metrics[..i].contains(m) {
                return Err(("metrics".into(), format!("metric `{m}` is listed twice")));
            }
        }
        if !(1..=10).contains(&self.attempts) {
            return Err((
                "attempts".into(),
                format!("attempts must lie in 1..=10, got {}", self.attempts),
            ));
        }
        if !(1..=50).contains(&self.questions) {
            return Err((
                "questions".into(),
                format!("questions must lie in 1..=50, got {}", self.questions),
            ));
        }
        self.judge
            .validate()
            .map_err(|e| (format!("judge.{}", e.key), e.message))
    }
}
