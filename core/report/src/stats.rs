//! Error bars: percentile-bootstrap intervals of micro-averaged metrics over
//! evaluation images, and Student-t intervals of a mean across seeds.

/// Two-sided 95% quantiles of Student's t for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The 97.5% quantile of Student's t with `df` degrees of freedom (the
/// normal 1.96 beyond 30).
pub fn t975(df: usize) -> f64 {
    match df {
        0 => f64::NAN,
        1..=30 => T975[df - 1],
        _ => 1.96,
    }
}

/// Mean and 95% Student-t interval of `values` (a seed each): `(mean, low,
/// high)`; with one value the interval is that value.
pub fn mean_interval(values: &[f64]) -> (f64, f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, mean, mean);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = t975(n - 1) * (var / n as f64).sqrt();
    (mean, mean - half, mean + half)
}

/// Resamples the bootstrap draws.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// 95% percentile-bootstrap intervals of micro-averaged ratios.
///
/// `items[i][m]` is item `i`'s `(hits, total)` for metric `m`; each
/// resample draws as many items with replacement and recomputes every
/// metric as summed hits over summed totals (0 when the total is 0), as the
/// point estimate is computed. Returns `(low, high)` per metric: the 2.5th
/// and 97.5th percentiles of `resamples` draws. `next_index(n)` draws an
/// index below `n` (the caller's seeded stream).
pub fn bootstrap_ratios(
    items: &[Vec<(f64, f64)>],
    metrics: usize,
    resamples: usize,
    mut next_index: impl FnMut(usize) -> usize,
) -> Vec<(f64, f64)> {
    let n = items.len();
    if n == 0 || resamples == 0 {
        return vec![(f64::NAN, f64::NAN); metrics];
    }
    let mut draws = vec![Vec::with_capacity(resamples); metrics];
    let mut sums = vec![(0.0, 0.0); metrics];
    for _ in 0..resamples {
        sums.iter_mut().for_each(|s| *s = (0.0, 0.0));
        for _ in 0..n {
            let item = &items[next_index(n)];
            for (s, c) in sums.iter_mut().zip(item) {
                s.0 += c.0;
                s.1 += c.1;
            }
        }
        for (d, s) in draws.iter_mut().zip(&sums) {
            d.push(if s.1 == 0.0 { 0.0 } else { s.0 / s.1 });
        }
    }
    draws
        .into_iter()
        .map(|mut d| {
            d.sort_by(f64::total_cmp);
            (percentile(&d, 0.025), percentile(&d, 0.975))
        })
        .collect()
}

/// The `q` quantile of sorted `v`, linearly interpolated (numpy's default).
pub fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_interval_matches_a_hand_computation() {
        // 1, 2, 3: mean 2, s = 1, half = 4.303 / sqrt(3).
        let (m, lo, hi) = mean_interval(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        let half = 4.303 / 3f64.sqrt();
        assert!((lo - (2.0 - half)).abs() < 1e-12 && (hi - (2.0 + half)).abs() < 1e-12);
        assert_eq!(mean_interval(&[0.5]), (0.5, 0.5, 0.5));
        assert_eq!(t975(100), 1.96);
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.025), 1.1);
        assert!((percentile(&v, 0.975) - 4.9).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_brackets_the_estimate_and_shrinks_with_data() {
        // A metric with p = 0.3 over n items of one trial each.
        let items = |n: usize| -> Vec<Vec<(f64, f64)>> {
            (0..n)
                .map(|i| vec![(f64::from(u8::from(i % 10 < 3)), 1.0)])
                .collect()
        };
        let mut state = 12345u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let small = bootstrap_ratios(&items(100), 1, 2000, &mut next)[0];
        let large = bootstrap_ratios(&items(1000), 1, 2000, &mut next)[0];
        assert!(small.0 < 0.3 && 0.3 < small.1, "{small:?}");
        assert!(large.0 < 0.3 && 0.3 < large.1, "{large:?}");
        // The normal approximation: half-width 1.96 sqrt(0.21 / n).
        let half = |n: f64| 1.96 * (0.21f64 / n).sqrt();
        assert!(
            ((small.1 - small.0) / 2.0 - half(100.0)).abs() < 0.015,
            "{small:?}"
        );
        assert!(
            ((large.1 - large.0) / 2.0 - half(1000.0)).abs() < 0.005,
            "{large:?}"
        );
        // A constant metric has a zero-width interval.
        let same = vec![vec![(1.0, 2.0)]; 50];
        assert_eq!(bootstrap_ratios(&same, 1, 100, &mut next)[0], (0.5, 0.5));
    }
}
