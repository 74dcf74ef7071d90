//! Several caption scorers as one: the data source's own (the `shapes`
//! oracle) beside the `[eval] scorers` (a judge), their metrics side by side
//! in the report.

use std::sync::Arc;

use rediff_api::data::{CaptionScore, CaptionScorer, MetricInfo, ScoreInput};
use rediff_api::error::{Error, Result};

/// Scorers whose metrics are concatenated in order.
pub struct CombinedScorer {
    parts: Vec<Arc<dyn CaptionScorer>>,
}

/// The data source's scorer (if any) followed by `extra`, as one scorer;
/// `None` when there is none. Two scorers reporting a metric of the same
/// name is an error naming it: the report's columns are keyed by name.
pub fn combine(
    own: Option<Arc<dyn CaptionScorer>>,
    extra: &[Arc<dyn CaptionScorer>],
) -> Result<Option<Arc<dyn CaptionScorer>>> {
    let labelled: Vec<(String, Arc<dyn CaptionScorer>)> = own
        .map(|s| ("the data source's scorer".to_string(), s))
        .into_iter()
        .chain(
            extra
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("eval.scorers[{i}]"), s.clone())),
        )
        .collect();
    let mut seen: Vec<(String, &str)> = Vec::new();
    for (label, part) in &labelled {
        for m in part.metrics() {
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == m.name) {
                return Err(Error::invalid(format!(
                    "{first} and {label} both report a metric named `{}`; the report keys columns by name",
                    m.name
                )));
            }
            seen.push((m.name, label));
        }
    }
    let parts: Vec<Arc<dyn CaptionScorer>> = labelled.into_iter().map(|(_, s)| s).collect();
    Ok(match parts.len() {
        0 => None,
        1 => parts.into_iter().next(),
        _ => Some(Arc::new(CombinedScorer { parts })),
    })
}

impl CaptionScorer for CombinedScorer {
    fn metrics(&self) -> Vec<MetricInfo> {
        self.parts.iter().flat_map(|p| p.metrics()).collect()
    }

    fn usage(&self) -> Option<serde_json::Value> {
        let parts: Vec<serde_json::Value> = self.parts.iter().filter_map(|p| p.usage()).collect();
        match parts.len() {
            0 => None,
            1 => parts.into_iter().next(),
            _ => Some(serde_json::Value::Array(parts)),
        }
    }

    fn score(&self, input: &ScoreInput<'_>) -> Result<CaptionScore> {
        let mut all = self.score_all(std::slice::from_ref(input))?;
        all.pop()
            .ok_or_else(|| Error::invalid("a scorer returned no score"))
    }

    fn score_all(&self, inputs: &[ScoreInput<'_>]) -> Result<Vec<CaptionScore>> {
        let mut merged: Vec<CaptionScore> = inputs
            .iter()
            .map(|_| CaptionScore::new(Vec::new()))
            .collect();
        for (k, part) in self.parts.iter().enumerate() {
            let scores = part.score_all(inputs)?;
            if scores.len() != inputs.len() {
                return Err(Error::invalid(format!(
                    "a caption scorer returned {} scores for {} captions",
                    scores.len(),
                    inputs.len()
                )));
            }
            for (into, s) in merged.iter_mut().zip(scores) {
                into.counts.extend(s.counts);
                into.failures.extend(s.failures);
                // The first scorer's detail and note stay as they are; later
                // scorers' detail is kept under their position.
                if k == 0 {
                    into.detail = s.detail;
                    into.note = s.note;
                } else {
                    if !s.detail.is_null() {
                        if !into.detail.is_object() {
                            let first = std::mem::take(&mut into.detail);
                            into.detail = serde_json::json!({ "scorer0": first });
                        }
                        into.detail[format!("scorer{k}")] = s.detail;
                    }
                    if !s.note.is_empty() {
                        into.note = format!("{} {}", into.note, s.note).trim().to_string();
                    }
                }
            }
        }
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rediff_api::data::Count;

    struct Fixed(&'static str, f64);

    impl CaptionScorer for Fixed {
        fn metrics(&self) -> Vec<MetricInfo> {
            vec![MetricInfo::new(self.0, "fixed", true)]
        }
        fn score(&self, _: &ScoreInput<'_>) -> Result<CaptionScore> {
            Ok(CaptionScore::new(vec![(self.0.into(), Count::new(self.1, 1.0))]).with_note(self.0))
        }
    }

    #[test]
    fn metrics_are_concatenated_and_names_must_differ() {
        let a: Arc<dyn CaptionScorer> = Arc::new(Fixed("a", 1.0));
        let b: Arc<dyn CaptionScorer> = Arc::new(Fixed("b", 0.5));
        assert!(combine(None, &[]).unwrap().is_none());
        let c = combine(Some(a.clone()), &[b]).unwrap().unwrap();
        let names: Vec<String> = c.metrics().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["a", "b"]);
        let refs = [String::new()];
        let input = ScoreInput::new("x", std::path::Path::new("x.png"), &refs, None, "cap");
        let s = c.score(&input).unwrap();
        assert_eq!(s.count("a"), Some(Count::new(1.0, 1.0)));
        assert_eq!(s.count("b"), Some(Count::new(0.5, 1.0)));
        assert_eq!(s.note, "a b");
        let err = combine(Some(a.clone()), &[a]).err().unwrap().to_string();
        assert!(err.contains("`a`"), "{err}");
    }
}
