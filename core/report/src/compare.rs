//! Comparisons a report tests: one arm (model x sampler) against a
//! reference arm, at every tokens per step both were evaluated at, on every
//! metric.
//!
//! Two criteria, both reported:
//! - **separated**: the two arms' 95% intervals do not overlap (the
//!   conservative test the results' claims use (docs/results/): across seeds in a
//!   multi-seed report, over evaluation images in a single run);
//! - **paired**: in a multi-seed report, the 95% Student-t interval of the
//!   per-seed difference `arm - against` (seeds pair the arms: same data,
//!   same pre-training), which is narrower when seeds move both arms alike.
//!
//! The verdict is `better` or `worse` only when the intervals are separated;
//! otherwise the gap is called noise.

use serde::{Deserialize, Serialize};

use rediff_api::MetricInfo;

use crate::results::EvalRow;
use crate::stats::mean_interval;
use crate::Report;

/// A model x sampler pair, written `model/sampler`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Arm {
    /// Model name (`baseline`, `rediff-base`, ...).
    pub model: String,
    /// Sampler name (`denoise`, `refine`, ...).
    pub sampler: String,
}

impl Arm {
    /// Parses `model/sampler`.
    pub fn parse(text: &str) -> Option<Arm> {
        let (model, sampler) = text.split_once('/')?;
        (!model.is_empty() && !sampler.is_empty() && !sampler.contains('/')).then(|| Arm {
            model: model.into(),
            sampler: sampler.into(),
        })
    }

    fn row<'a>(&self, report: &'a Report, tokens_per_step: usize) -> Option<&'a EvalRow> {
        report.result(&self.model, &self.sampler, tokens_per_step)
    }
}

impl std::fmt::Display for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}", self.model, self.sampler)
    }
}

/// One comparison to test: `arm` against `against`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// The arm under test.
    pub arm: Arm,
    /// The reference arm.
    pub against: Arm,
}

/// What a comparison concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Separated intervals, the arm on the metric's good side.
    Better,
    /// Separated intervals, the arm on the bad side.
    Worse,
    /// Overlapping intervals: the gap is within the noise.
    Noise,
}

impl Verdict {
    /// The word the report prints.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Noise => "noise",
        }
    }
}

/// One tested difference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonRow {
    /// The arm under test (`model/sampler`).
    pub arm: String,
    /// The reference arm.
    pub against: String,
    /// Tokens per step of both.
    pub tokens_per_step: usize,
    /// Metric name.
    pub metric: String,
    /// The arm's value.
    pub value: f64,
    /// The reference's value.
    pub reference: f64,
    /// `value - reference`.
    pub difference: f64,
    /// 95% interval of the per-seed difference (multi-seed reports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired_interval: Option<[f64; 2]>,
    /// Whether the two arms' intervals are disjoint.
    pub separated: bool,
    /// The conclusion.
    pub verdict: Verdict,
}

fn disjoint(a: [f64; 2], b: [f64; 2]) -> bool {
    a[1] < b[0] || b[1] < a[0]
}

/// The per-seed difference `arm - against` on `metric`, paired by seed,
/// when both rows carry the same seeds.
fn paired(arm: &EvalRow, against: &EvalRow, metric: &str) -> Option<[f64; 2]> {
    if arm.seeds.len() < 2 || arm.seeds.len() != against.seeds.len() {
        return None;
    }
    let diffs: Option<Vec<f64>> = arm
        .seeds
        .iter()
        .zip(&against.seeds)
        .map(|(a, b)| {
            (a.seed == b.seed).then_some(())?;
            Some(a.metrics.get(metric)? - b.metrics.get(metric)?)
        })
        .collect();
    let (_, lo, hi) = mean_interval(&diffs?);
    Some([lo, hi])
}

/// Tests every comparison at every tokens per step both arms were
/// evaluated at, on every metric of `metrics` (the report's declared
/// metrics: they say which direction is better). Comparisons whose arms
/// the report lacks give no rows.
pub fn compare(
    report: &Report,
    metrics: &[MetricInfo],
    comparisons: &[Comparison],
) -> Vec<ComparisonRow> {
    let mut out = Vec::new();
    for c in comparisons {
        let mut budgets: Vec<usize> = report
            .results
            .iter()
            .filter(|r| r.model == c.arm.model && r.sampler == c.arm.sampler)
            .map(|r| r.tokens_per_step)
            .collect();
        budgets.sort_unstable();
        budgets.dedup();
        for tps in budgets {
            let (Some(a), Some(b)) = (c.arm.row(report, tps), c.against.row(report, tps)) else {
                continue;
            };
            for m in metrics {
                let (Some(value), Some(reference)) = (a.metric(&m.name), b.metric(&m.name)) else {
                    continue;
                };
                let separated = match (a.interval(&m.name), b.interval(&m.name)) {
                    (Some(ia), Some(ib)) => disjoint(ia, ib),
                    _ => false,
                };
                let difference = value - reference;
                let good = (difference > 0.0) == m.higher_is_better;
                let verdict = match (separated, good) {
                    (false, _) => Verdict::Noise,
                    (true, true) => Verdict::Better,
                    (true, false) => Verdict::Worse,
                };
                out.push(ComparisonRow {
                    arm: c.arm.to_string(),
                    against: c.against.to_string(),
                    tokens_per_step: tps,
                    metric: m.name.clone(),
                    value,
                    reference,
                    difference,
                    paired_interval: paired(a, b, &m.name),
                    separated,
                    verdict,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Named, SeedValues};

    fn row(model: &str, sampler: &str, seeds: &[(u64, f64)]) -> EvalRow {
        let values: Vec<f64> = seeds.iter().map(|s| s.1).collect();
        let (m, lo, hi) = mean_interval(&values);
        EvalRow {
            model: model.into(),
            sampler: sampler.into(),
            tokens_per_step: 4,
            metrics: Named(vec![("factuality".into(), m)]),
            intervals: Named(vec![("factuality".into(), [lo, hi])]),
            seeds: seeds
                .iter()
                .map(|&(seed, v)| SeedValues {
                    seed,
                    metrics: Named(vec![("factuality".into(), v)]),
                    tokens_per_forward: 4.0,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// `rediff/refine` with `arm`'s per-seed factuality and
    /// `baseline/denoise` with `against`'s.
    fn report(arm: &[(u64, f64)], against: &[(u64, f64)]) -> Report {
        Report {
            results: vec![
                row("rediff", "refine", arm),
                row("baseline", "denoise", against),
            ],
            ..Default::default()
        }
    }

    fn comparison() -> Comparison {
        Comparison {
            arm: Arm::parse("rediff/refine").unwrap(),
            against: Arm::parse("baseline/denoise").unwrap(),
        }
    }

    fn metric(higher_is_better: bool) -> Vec<MetricInfo> {
        vec![MetricInfo::new("factuality", "", higher_is_better)]
    }

    #[test]
    fn parses_arms_and_refuses_malformed_ones() {
        let a = Arm::parse("rediff-base/refine").unwrap();
        assert_eq!(
            (a.model.as_str(), a.sampler.as_str()),
            ("rediff-base", "refine")
        );
        assert_eq!(a.to_string(), "rediff-base/refine");
        for bad in ["rediff", "/refine", "rediff/", "a/b/c"] {
            assert!(Arm::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn separated_intervals_decide_the_verdict_and_seeds_pair_the_difference() {
        // Arm 0.80/0.82/0.84 (mean 0.82, s 0.02, half-width 4.303 * 0.02 / sqrt 3
        // = 0.0497): [0.770, 0.870]. Reference 0.60/0.64/0.62: [0.570, 0.670].
        let report = report(
            &[(1, 0.80), (2, 0.82), (3, 0.84)],
            &[(1, 0.60), (2, 0.64), (3, 0.62)],
        );
        let rows = compare(&report, &metric(true), &[comparison()]);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert!((r.difference - 0.20).abs() < 1e-12);
        assert!(r.separated);
        assert_eq!(r.verdict, Verdict::Better);
        // Differences 0.20, 0.18, 0.22: mean 0.20, s 0.02 -> the same half-width.
        let [lo, hi] = r.paired_interval.unwrap();
        let half = 4.303 * 0.02 / 3f64.sqrt();
        assert!((lo - (0.20 - half)).abs() < 1e-9 && (hi - (0.20 + half)).abs() < 1e-9);
        // The same numbers where lower is better: a separated loss.
        let rows = compare(&report, &metric(false), &[comparison()]);
        assert_eq!(rows[0].verdict, Verdict::Worse);
    }

    #[test]
    fn overlapping_intervals_are_noise_even_when_pairing_is_clear() {
        // Both arms swing with the seed; the arm is always 0.02 ahead.
        let report = report(
            &[(1, 0.52), (2, 0.72), (3, 0.92)],
            &[(1, 0.50), (2, 0.70), (3, 0.90)],
        );
        let r = &compare(&report, &metric(true), &[comparison()])[0];
        assert!(!r.separated);
        assert_eq!(r.verdict, Verdict::Noise);
        let [lo, hi] = r.paired_interval.unwrap();
        assert!((lo - 0.02).abs() < 1e-9 && (hi - 0.02).abs() < 1e-9);
    }

    #[test]
    fn missing_arms_and_unpaired_seeds_give_no_claims() {
        let report = report(&[(1, 0.8), (2, 0.9)], &[(1, 0.5), (3, 0.6)]);
        let r = &compare(&report, &metric(true), &[comparison()])[0];
        assert_eq!(r.paired_interval, None);
        let missing = Comparison {
            arm: Arm::parse("nobody/refine").unwrap(),
            against: Arm::parse("baseline/denoise").unwrap(),
        };
        assert!(compare(&report, &metric(true), &[missing]).is_empty());
    }
}
