//! Evaluation results as data: named metric values per setting, timings,
//! example captions.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Values by metric name, in the scorer's order (serialised as a JSON
/// object whose keys keep that order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Named<V>(pub Vec<(String, V)>);

/// Metric values by name.
pub type MetricValues = Named<f64>;

/// 95% intervals `[low, high]` by metric name.
pub type MetricIntervals = Named<[f64; 2]>;

impl<V: Copy> Named<V> {
    /// The value of metric `name`.
    pub fn get(&self, name: &str) -> Option<V> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// `(name, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, V)> {
        self.0.iter().map(|(n, v)| (n.as_str(), *v))
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V: Serialize> Serialize for Named<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Named<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ordered<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Ordered<V> {
            type Value = Named<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("values by metric name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    out.push((k, v));
                }
                Ok(Named(out))
            }
        }
        d.deserialize_map(Ordered(std::marker::PhantomData))
    }
}

/// One seed's values of a row, in a report that aggregates seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedValues {
    /// The pipeline seed.
    pub seed: u64,
    /// Its metric values.
    pub metrics: MetricValues,
    /// Its output tokens per forward pass.
    pub tokens_per_forward: f64,
}

/// One row of the results table: a model, a sampler, a parallelism.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// 95% intervals of the metrics: a percentile bootstrap over the
    /// evaluation images for one run, Student t over seeds for a report
    /// that aggregates seeds (see [`crate::Report::interval`]).
    #[serde(default, skip_serializing_if = "Named::is_empty")]
    pub intervals: MetricIntervals,
    /// Forward passes per caption (NFE), mean over captions.
    #[serde(default)]
    pub nfe_per_caption: f64,
    /// Output tokens (up to and including the end-of-turn) per forward
    /// pass: summed over captions, divided by the summed NFE.
    #[serde(default)]
    pub tokens_per_forward: f64,
    /// Decoded tokens sent back to `[MASK]` per caption.
    #[serde(default)]
    pub remasks_per_caption: f64,
    /// Blocks the sampler's step guard cut short (0 unless a policy failed
    /// to finish a block).
    #[serde(default)]
    pub guard_stops: usize,
    /// Metric scorings that failed (a judge reply still malformed after its
    /// retries): each leaves one caption out of one metric's average.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub score_failures: usize,
    /// Per-seed values, in a report that aggregates seeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<SeedValues>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl EvalRow {
    /// The value of metric `name` (`None` when the scorer has no such metric).
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name)
    }

    /// The 95% interval of metric `name`, when one was computed.
    pub fn interval(&self, name: &str) -> Option<[f64; 2]> {
        self.intervals.get(name)
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
            metrics: Named(vec![("zeta".into(), 0.5), ("alpha".into(), 1.0)]),
            samples: 3,
            revisions_per_caption: 0.25,
            intervals: Named(vec![("zeta".into(), [0.4, 0.6])]),
            nfe_per_caption: 12.0,
            tokens_per_forward: 1.5,
            ..Default::default()
        };
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(
            json,
            r#"{"model":"m","sampler":"s","tokens_per_step":2,"steps":12,"zeta":0.5,"alpha":1.0,"samples":3,"revisions_per_caption":0.25,"intervals":{"zeta":[0.4,0.6]},"nfe_per_caption":12.0,"tokens_per_forward":1.5,"remasks_per_caption":0.0,"guard_stops":0}"#
        );
        let back: EvalRow = serde_json::from_str(&json).unwrap();
        assert_eq!(back, row);
        assert_eq!(back.metric("alpha"), Some(1.0));
        assert_eq!(back.metric("beta"), None);
        assert_eq!(back.interval("zeta"), Some([0.4, 0.6]));
        // Reports written before intervals and NFE existed still load.
        let old = r#"{"model":"m","sampler":"s","tokens_per_step":2,"steps":12,"zeta":0.5,"samples":3,"revisions_per_caption":0.25}"#;
        let back: EvalRow = serde_json::from_str(old).unwrap();
        assert_eq!(back.metric("zeta"), Some(0.5));
        assert!(back.intervals.is_empty());
    }
}
