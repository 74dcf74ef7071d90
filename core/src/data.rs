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

/// One image-question-answer sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
pub struct DataContext {
    /// The run directory's data folder.
    pub dir: PathBuf,
    /// The pipeline seed.
    pub seed: u64,
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

/// Per-caption measurements against a sample's ground truth.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptionScore {
    /// Objects the caption mentions.
    pub mentioned: usize,
    /// Mentioned objects that match a scene object in every attribute.
    pub mentioned_correct: usize,
    /// Objects in the scene.
    pub scene_objects: usize,
    /// Scene objects the caption describes exactly.
    pub described: usize,
    /// The caption parses completely under the source's grammar.
    pub grammatical: bool,
    /// The caption mentions the same object twice.
    pub repeated: bool,
}

/// Aggregate caption quality over many captions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptionMetrics {
    /// Mentioned objects that are right / mentioned objects.
    pub factuality: f64,
    /// Scene objects described exactly / scene objects.
    pub coverage: f64,
    /// Share of captions that parse completely.
    pub grammar: f64,
    /// Share of captions that mention one object twice.
    pub repetition: f64,
    /// Captions scored.
    pub samples: usize,
}

impl CaptionMetrics {
    /// Aggregates per-caption scores (micro-averaged factuality and coverage).
    pub fn aggregate(scores: &[CaptionScore]) -> Self {
        let n = scores.len();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let sum = |f: fn(&CaptionScore) -> usize| scores.iter().map(f).sum::<usize>();
        CaptionMetrics {
            factuality: ratio(sum(|s| s.mentioned_correct), sum(|s| s.mentioned)),
            coverage: ratio(sum(|s| s.described), sum(|s| s.scene_objects)),
            grammar: ratio(scores.iter().filter(|s| s.grammatical).count(), n),
            repetition: ratio(scores.iter().filter(|s| s.repeated).count(), n),
            samples: n,
        }
    }
}

/// Scores a caption against a sample's ground truth.
pub trait CaptionScorer: Send + Sync {
    /// Scores one caption.
    fn score(&self, truth: &serde_json::Value, caption: &str) -> Result<CaptionScore>;
}

/// Resolves `path` against `root` and rejects results outside `root`.
pub fn resolve_within(root: &Path, path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(root.join(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_micro_averages() {
        let a = CaptionScore {
            mentioned: 2,
            mentioned_correct: 1,
            scene_objects: 2,
            described: 1,
            grammatical: true,
            repeated: false,
        };
        let b = CaptionScore {
            mentioned: 2,
            mentioned_correct: 2,
            scene_objects: 3,
            described: 2,
            grammatical: false,
            repeated: true,
        };
        let m = CaptionMetrics::aggregate(&[a, b]);
        assert_eq!(m.factuality, 0.75);
        assert_eq!(m.coverage, 0.6);
        assert_eq!(m.grammar, 0.5);
        assert_eq!(m.repetition, 0.5);
        assert_eq!(m.samples, 2);
        assert_eq!(CaptionMetrics::aggregate(&[]).factuality, 0.0);
    }

    #[test]
    fn resolve_within_rejects_escapes() {
        let root = Path::new("/data");
        assert_eq!(
            resolve_within(root, Path::new("a/./b.png")),
            Some(PathBuf::from("/data/a/b.png"))
        );
        assert_eq!(
            resolve_within(root, Path::new("a/../b.png")),
            Some(PathBuf::from("/data/b.png"))
        );
        assert_eq!(resolve_within(root, Path::new("../b.png")), None);
        assert_eq!(resolve_within(root, Path::new("/etc/passwd")), None);
    }
}
