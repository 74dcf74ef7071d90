//! Evaluation results as data: named metric values per setting, timings,
//! example captions.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Metric values by name, in the scorer's order (serialised as a JSON
/// object whose keys keep that order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricValues(pub Vec<(String, f64)>);

impl MetricValues {
    /// The value of metric `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// `(name, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(n, v)| (n.as_str(), *v))
    }
}

impl Serialize for MetricValues {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for MetricValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = MetricValues;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("metric values by name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, f64>()? {
                    out.push((k, v));
                }
                Ok(MetricValues(out))
            }
        }
        d.deserialize_map(Ordered)
    }
}

/// One row of the results table: a model, a sampler, a parallelism.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// `baseline`, `rediff-base`, ...
    pub model: String,
    /// Sampler name (`denoise`, `refine`).
    pub sampler: String,
    /// Tokens per step `L / S`.
    pub tokens_per_step: usize,
    /// Steps `S`.
    pub steps: usize,
    /// The scorer's metrics (inline in JSON: `"factuality": 0.9, ...`).
    #[serde(flatten)]
    pub metrics: MetricValues,
    /// Captions scored.
    pub samples: usize,
    /// Mean tokens rewritten by refinement per caption.
    pub revisions_per_caption: f64,
}

impl EvalRow {
    /// The value of metric `name` (`None` when the scorer has no such metric).
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name)
    }
}

/// Where the time of one evaluation setting went (kept apart from
/// [`EvalRow`] so results are bit-for-bit reproducible).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    /// Model name.
    pub model: String,
    /// Sampler name.
    pub sampler: String,
    /// Tokens per step.
    pub tokens_per_step: usize,
    /// Forward passes run (whole batches).
    pub forward_passes: usize,
    /// Mean milliseconds of model forward pass per sampler step (whole batch).
    pub forward_ms_per_step: f64,
    /// Mean milliseconds of the sampler's own work per step (whole batch).
    pub sampler_ms_per_step: f64,
    /// `sampler / (forward + sampler)`.
    pub sampler_share: f64,
}

/// An example caption for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Sample id.
    pub id: String,
    /// Image file.
    pub image: String,
    /// Reference caption.
    pub reference: String,
    /// Generated caption.
    pub caption: String,
    /// The scorer's per-caption detail.
    pub score: serde_json::Value,
    /// The scorer's remark, shown after the caption.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// Example captions of one setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleSet {
    /// Model name.
    pub model: String,
    /// Sampler name.
    pub sampler: String,
    /// Tokens per step.
    pub tokens_per_step: usize,
    /// The captions.
    pub examples: Vec<Example>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_serialise_inline_in_the_scorers_order() {
        let row = EvalRow {
            model: "m".into(),
            sampler: "s".into(),
            tokens_per_step: 2,
            steps: 12,
            metrics: MetricValues(vec![("zeta".into(), 0.5), ("alpha".into(), 1.0)]),
            samples: 3,
            revisions_per_caption: 0.25,
        };
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(
            json,
            r#"{"model":"m","sampler":"s","tokens_per_step":2,"steps":12,"zeta":0.5,"alpha":1.0,"samples":3,"revisions_per_caption":0.25}"#
        );
        let back: EvalRow = serde_json::from_str(&json).unwrap();
        assert_eq!(back, row);
        assert_eq!(back.metric("alpha"), Some(1.0));
        assert_eq!(back.metric("beta"), None);
    }
}
