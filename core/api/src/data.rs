//! Data sources, samples and caption scoring.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::tokens::TextTokenizer;

/// A hallucination pair: the wrong span `org` and its correction `target`,
/// of equal token length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RevisePair {
    /// Wrong text as it occurs in the response.
    pub org: String,
    /// The right text that replaces it.
    pub target: String,
}

impl RevisePair {
    /// The pair `org` -> `target`.
    pub fn new(org: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            org: org.into(),
            target: target.into(),
        }
    }
}

/// One image-question-answer sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sample {
    /// Stable identifier.
    pub id: String,
    /// Image file.
    pub image: PathBuf,
    /// The question (instruction).
    pub question: String,
    /// The answer. For hallucination samples this is the *changed* answer,
    /// holding each pair's `org`.
    pub answer: String,
    /// Hallucination pairs, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revise: Vec<RevisePair>,
    /// Source-specific ground truth used by the [`CaptionScorer`] and by oracle experts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<serde_json::Value>,
}

impl Sample {
    /// A sample without hallucination pairs or ground truth.
    pub fn new(
        id: impl Into<String>,
        image: impl Into<PathBuf>,
        question: impl Into<String>,
        answer: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            image: image.into(),
            question: question.into(),
            answer: answer.into(),
            revise: Vec::new(),
            truth: None,
        }
    }

    /// With hallucination pairs (the answer holds each pair's `org`).
    pub fn with_revise(mut self, revise: Vec<RevisePair>) -> Self {
        self.revise = revise;
        self
    }

    /// With source-specific ground truth.
    pub fn with_truth(mut self, truth: serde_json::Value) -> Self {
        self.truth = Some(truth);
        self
    }
}

/// Which part of a data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training samples.
    Train,
    /// Held-out evaluation samples.
    Eval,
}

/// Where a data source may write files (images it renders, a tokenizer).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DataContext {
    /// The run directory's data folder.
    pub dir: PathBuf,
    /// The pipeline seed.
    pub seed: u64,
}

impl DataContext {
    /// Files go under `dir`; randomness derives from `seed`.
    pub fn new(dir: impl Into<PathBuf>, seed: u64) -> Self {
        Self {
            dir: dir.into(),
            seed,
        }
    }
}

/// A provider of samples.
///
/// Implementations are registered under [`crate::ComponentKind::Data`].
pub trait DataSource: Send + Sync {
    /// Makes the data available (render images, read index files). Called
    /// once before [`samples`](Self::samples).
    fn prepare(&mut self, ctx: &DataContext) -> Result<()>;

    /// The samples of a split.
    fn samples(&self, split: Split) -> Result<Vec<Sample>>;

    /// A tokenizer this source defines its vocabulary with (synthetic data);
    /// `None` when the model brings its own.
    fn tokenizer(&self) -> Option<TextTokenizer> {
        None
    }

    /// The scorer for this source's ground truth, if it has one.
    fn scorer(&self) -> Option<Arc<dyn CaptionScorer>> {
        None
    }
}

/// A metric a [`CaptionScorer`] reports: its name in tables and plots, and
/// what it measures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricInfo {
    /// Column and plot name (`factuality`, `grammar`, ...).
    pub name: String,
    /// One line on what it measures, for the report's legend.
    pub description: String,
    /// Whether a larger value is better (where the plot puts its legend,
    /// which direction a comparison calls a win).
    pub higher_is_better: bool,
}

impl MetricInfo {
    /// A metric named `name`.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        higher_is_better: bool,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            higher_is_better,
        }
    }
}

/// One caption's share of a metric: `hits` out of `total`. Over many
/// captions a metric is micro-averaged: the sum of hits over the sum of
/// totals (0 when no caption counted anything).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Count {
    /// What counted as right (or, for a rate, as present).
    pub hits: f64,
    /// What was counted.
    pub total: f64,
}

impl Count {
    /// `hits` out of `total`.
    pub fn new(hits: f64, total: f64) -> Self {
        Self { hits, total }
    }

    /// 1 out of 1 when `yes`, else 0 out of 1: a per-caption rate.
    pub fn flag(yes: bool) -> Self {
        Self::new(if yes { 1.0 } else { 0.0 }, 1.0)
    }
}

/// One caption's measurements against a sample's ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CaptionScore {
    /// Counts per metric name (names from [`CaptionScorer::metrics`]).
    pub counts: Vec<(String, Count)>,
    /// Source-specific detail, kept verbatim with the report's example captions.
    pub detail: serde_json::Value,
    /// A short remark shown after the caption in `report.md` (may be empty).
    pub note: String,
    /// Metrics this caption could not be scored on and why (a judge's reply
    /// that stayed malformed after its retries): such a caption is left out
    /// of that metric's average, never scored as zero.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

impl CaptionScore {
    /// A score with `counts`, no detail and no note.
    pub fn new(counts: Vec<(String, Count)>) -> Self {
        Self {
            counts,
            detail: serde_json::Value::Null,
            note: String::new(),
            failures: Vec::new(),
        }
    }

    /// Attaches source-specific detail.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// Attaches the remark shown in the report.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// The count of metric `name`, if the caption has one.
    pub fn count(&self, name: &str) -> Option<Count> {
        self.counts.iter().find(|(n, _)| n == name).map(|(_, c)| *c)
    }
}

/// Micro-averages per-caption scores over `metrics`: for each metric, the
/// summed hits over the summed totals (0 when the total is 0). A score
/// naming a metric that is not in `metrics` is an error.
#[doc(hidden)]
pub fn aggregate(metrics: &[MetricInfo], scores: &[CaptionScore]) -> Result<Vec<(String, f64)>> {
    let mut sums = vec![Count::default(); metrics.len()];
    for score in scores {
        for (name, c) in &score.counts {
            let i = metrics
                .iter()
                .position(|m| &m.name == name)
                .ok_or_else(|| {
                    crate::Error::invalid(format!(
                    "the scorer reported metric `{name}`, which it does not declare (declared: {})",
                    metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
                ))
                })?;
            sums[i].hits += c.hits;
            sums[i].total += c.total;
        }
    }
    Ok(metrics
        .iter()
        .zip(sums)
        .map(|(m, c)| {
            let v = if c.total == 0.0 {
                0.0
            } else {
                c.hits / c.total
            };
            (m.name.clone(), v)
        })
        .collect())
}

/// One caption and what it is scored against.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ScoreInput<'a> {
    /// The sample or image it belongs to (in logs and failure lists).
    pub id: &'a str,
    /// The image the caption describes.
    pub image: &'a Path,
    /// Reference descriptions written for the image (the sample's answer;
    /// a human description in an evaluation set). May be empty.
    pub references: &'a [String],
    /// Source-specific ground truth, when the data source has some.
    pub truth: Option<&'a serde_json::Value>,
    /// The caption to score.
    pub caption: &'a str,
}

impl<'a> ScoreInput<'a> {
    /// `caption` of image `image` (`id`), against `references` and `truth`
    /// (the host builds these; scorers receive them).
    #[doc(hidden)]
    pub fn new(
        id: &'a str,
        image: &'a Path,
        references: &'a [String],
        truth: Option<&'a serde_json::Value>,
        caption: &'a str,
    ) -> Self {
        Self {
            id,
            image,
            references,
            truth,
            caption,
        }
    }
}

/// Scores captions: against a sample's ground truth (the `shapes` oracle),
/// or through a judge (registered under [`crate::ComponentKind::Scorer`]).
pub trait CaptionScorer: Send + Sync {
    /// The metrics [`score`](Self::score) reports, in table order.
    fn metrics(&self) -> Vec<MetricInfo>;

    /// Scores one caption.
    fn score(&self, input: &ScoreInput<'_>) -> Result<CaptionScore>;

    /// Scores many captions, in order. The default scores them one by one;
    /// a scorer that waits on a remote judge overrides it to score them
    /// concurrently. An error ends the evaluation: a caption that merely
    /// could not be scored is a [`CaptionScore::failures`] entry instead.
    fn score_all(&self, inputs: &[ScoreInput<'_>]) -> Result<Vec<CaptionScore>> {
        inputs.iter().map(|input| self.score(input)).collect()
    }

    /// What scoring has cost so far (a judge's calls, cached replies and
    /// tokens), for reports; `None` for scorers that cost nothing.
    fn usage(&self) -> Option<serde_json::Value> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_micro_averages() {
        let metrics = vec![
            MetricInfo::new("factuality", "right / mentioned", true),
            MetricInfo::new("grammar", "parses", true),
            MetricInfo::new("unused", "never counted", true),
        ];
        let a = CaptionScore::new(vec![
            ("factuality".into(), Count::new(1.0, 2.0)),
            ("grammar".into(), Count::flag(true)),
        ]);
        let b = CaptionScore::new(vec![
            ("factuality".into(), Count::new(2.0, 2.0)),
            ("grammar".into(), Count::flag(false)),
        ]);
        let m = aggregate(&metrics, &[a.clone(), b]).unwrap();
        assert_eq!(
            m,
            vec![
                ("factuality".to_string(), 0.75),
                ("grammar".to_string(), 0.5),
                ("unused".to_string(), 0.0)
            ]
        );
        assert_eq!(aggregate(&metrics, &[]).unwrap()[0].1, 0.0);
        let stray = CaptionScore::new(vec![("recall".into(), Count::flag(true))]);
        let err = aggregate(&metrics, &[a, stray]).unwrap_err().to_string();
        assert!(
            err.contains("`recall`") && err.contains("factuality, grammar, unused"),
            "{err}"
        );
    }
}
