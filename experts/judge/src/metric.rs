//! The four judge metrics: what each is called in `--metric` and in the
//! report's columns, and what it measures.

use std::fmt;
use std::str::FromStr;

use rediff_api::data::MetricInfo;
use serde::Deserialize;

/// A metric the judge scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// CLAIR: the judge's 0-100 likelihood that the caption and the
    /// references describe the same image, with its reason.
    Clair,
    /// Atomic propositions of the caption judged true against the references.
    Factuality,
    /// Multiple-choice questions about the image answered right from the
    /// caption alone ("I don't know" allowed, counted wrong).
    Coverage,
    /// CAPTURE-style scene-graph F1 (objects, attributes, relations) with the
    /// judge as parser.
    Capture,
}

impl Metric {
    /// Every metric, in table order.
    pub const ALL: [Metric; 4] = [
        Metric::Clair,
        Metric::Factuality,
        Metric::Coverage,
        Metric::Capture,
    ];

    /// Its name in `--metric` and `metrics = [...]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Clair => "clair",
            Metric::Factuality => "factuality",
            Metric::Coverage => "coverage",
            Metric::Capture => "capture",
        }
    }

    /// Its column in reports: `llm_` before factuality and coverage keeps
    /// them apart from a data source's own (the `shapes` oracle's
    /// `factuality` and `coverage`).
    pub fn column(self) -> &'static str {
        match self {
            Metric::Clair => "clair",
            Metric::Factuality => "llm_factuality",
            Metric::Coverage => "llm_coverage",
            Metric::Capture => "capture",
        }
    }

    /// Its legend entry.
    pub fn info(self) -> MetricInfo {
        let description = match self {
            Metric::Clair => "judge's 0-100 same-image likelihood against the references, / 100 (CLAIR)",
            Metric::Factuality => "caption propositions the judge finds true against the references / propositions",
            Metric::Coverage => "questions about the image answered right from the caption alone / questions",
            Metric::Capture => "scene-graph F1, (0.5 objects + 0.5 attributes + 0.2 relations) / 1.2, judge as parser (CAPTURE-style)",
        };
        MetricInfo::new(self.column(), description, true)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown metric `{s}`; the judge scores {}",
                    Metric::ALL.map(|m| format!("`{m}`")).join(", ")
                )
            })
    }
}
