//! The report of `rediff score`: per-caption scores of a predictions file
//! and each metric's micro-average with its 95% bootstrap interval, as
//! `scores.json` and `scores.md`.

use std::fmt::Write as _;
use std::path::Path;

use rediff_api::data::Count;
use rediff_api::{Error, Result};
use serde::{Deserialize, Serialize};

/// `scores.json`.
pub const SCORES_JSON: &str = "scores.json";
/// `scores.md`.
pub const SCORES_MD: &str = "scores.md";

/// One metric over the whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    /// Column name.
    pub name: String,
    /// What it measures.
    pub description: String,
    /// Micro-average: summed hits over summed totals.
    pub value: f64,
    /// 95% percentile-bootstrap interval over captions.
    pub interval: [f64; 2],
    /// Captions that counted toward it.
    pub captions: usize,
    /// Summed hits and totals.
    pub count: Count,
    /// Captions this metric failed on (left out of the average).
    pub failures: usize,
}

/// One caption's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptionRow {
    /// The predictions file's key (the image).
    pub image: String,
    /// The caption.
    pub caption: String,
    /// Its counts per metric (value = hits / total).
    pub counts: Vec<(String, Count)>,
    /// The scorer's remark.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Metrics it could not be scored on, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// The scorer's detail (a judge's reasons, propositions, answers).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreReport {
    /// The predictions file.
    pub predictions: String,
    /// The references file.
    pub references: String,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Each metric.
    pub metrics: Vec<MetricSummary>,
    /// Each caption, in the predictions file's order.
    pub captions: Vec<CaptionRow>,
    /// What scoring cost (a judge's calls, cached replies, tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<serde_json::Value>,
    /// Wall time.
    pub seconds: f64,
}

fn value(c: Count) -> Option<f64> {
    (c.total > 0.0).then(|| c.hits / c.total)
}

impl ScoreReport {
    /// The markdown report: the metrics table, the cost, the failures and
    /// every caption's values.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "# Caption scores\n\nPredictions `{}` against references `{}`: {} captions. Each value is a micro-average (summed hits over summed totals) with its 95% percentile-bootstrap interval over captions ({} resamples, seed {}).\n\n",
            self.predictions,
            self.references,
            self.captions.len(),
            self.resamples,
            self.seed
        );
        s.push_str("| metric | value | 95% interval | captions counted | failures | what it measures |\n|---|---:|---|---:|---:|---|\n");
        for m in &self.metrics {
            let _ = writeln!(
                s,
                "| {} | {:.4} | [{:.4}, {:.4}] | {} | {} | {} |",
                m.name,
                m.value,
                m.interval[0],
                m.interval[1],
                m.captions,
                m.failures,
                m.description
            );
        }
        if let Some(u) = &self.usage {
            let n = |k: &str| u.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            let _ = write!(
                s,
                "\n**Judge** `{}`: {} calls answered, {} replies read from the cache (`{}`), {} prompt + {} completion tokens reported by the server, {} malformed replies, {} calls without an answer.\n",
                u.get("model").and_then(|v| v.as_str()).unwrap_or("?"),
                n("calls"),
                n("cached"),
                u.get("cache").and_then(|v| v.as_str()).unwrap_or("?"),
                n("prompt_tokens"),
                n("completion_tokens"),
                n("malformed"),
                n("failed_calls"),
            );
        }
        let failed: Vec<&CaptionRow> = self
            .captions
            .iter()
            .filter(|c| !c.failures.is_empty())
            .collect();
        if !failed.is_empty() {
            s.push_str("\n## Failures\n\nLeft out of the metric's average, never scored as zero; `rediff score --resume` with more `attempts` asks only the new tries.\n\n");
            for c in failed {
                for f in &c.failures {
                    let _ = writeln!(s, "- `{}`: {}", c.image, f.replace('\n', " "));
                }
            }
        }
        s.push_str("\n## Captions\n\n| image |");
        for m in &self.metrics {
            let _ = write!(s, " {} |", m.name);
        }
        s.push_str(" note |\n|---|");
        s.push_str(&"---:|".repeat(self.metrics.len()));
        s.push_str("---|\n");
        for c in &self.captions {
            let _ = write!(s, "| `{}` |", c.image);
            for m in &self.metrics {
                let cell = c
                    .counts
                    .iter()
                    .find(|(n, _)| n == &m.name)
                    .and_then(|(_, k)| value(*k))
                    .map_or("–".to_string(), |v| format!("{v:.3}"));
                let _ = write!(s, " {cell} |");
            }
            let _ = writeln!(s, " {} |", c.note.replace('|', "\\|"));
        }
        s
    }

    /// Writes `scores.json` and `scores.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid(format!("scores.json: {e}")))?;
        let p = dir.join(SCORES_JSON);
        std::fs::write(&p, json).map_err(|e| Error::io(&p, e))?;
        let p = dir.join(SCORES_MD);
        std::fs::write(&p, self.to_markdown()).map_err(|e| Error::io(&p, e))?;
        Ok(())
    }
}
