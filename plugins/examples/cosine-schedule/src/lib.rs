//! An example plugin: the cosine noise schedule of MaskGIT, shipped as a
//! shared library that `rediff` loads from a pipeline's `[[plugins]]`.
//!
//! Training masks with `p(t) = eps + (1 - eps) (1 - cos(pi t / 2))`; at
//! inference the share of a block still masked after step `k` of `S` is
//! `cos(pi k / (2 S))`, so early steps unmask few tokens and late steps many.

use std::f32::consts::FRAC_PI_2;
use std::sync::Arc;

use rediff_api::registry::{Plugin, Registrar, RegistryError};
use rediff_api::schedule::NoiseSchedule;
use serde::Deserialize;

/// Options of `cosine`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CosineOptions {
    /// Floor of the mask probability. Default 1e-3.
    pub eps: f32,
}

impl Default for CosineOptions {
    fn default() -> Self {
        Self { eps: 1e-3 }
    }
}

/// The cosine schedule.
#[derive(Debug, Clone, Copy)]
pub struct Cosine {
    eps: f32,
}

impl NoiseSchedule for Cosine {
    fn mask_probability(&self, t: f32) -> f32 {
        let t = t.clamp(0.0, 1.0);
        self.eps + (1.0 - self.eps) * (1.0 - (FRAC_PI_2 * t).cos())
    }

    fn unmask_counts(&self, masked: usize, steps: usize) -> Vec<usize> {
        // Positions still masked after step k: floor(masked * cos(pi k / 2S)).
        let remaining = |k: usize| -> usize {
            if k >= steps {
                return 0;
            }
            let share = (std::f64::consts::FRAC_PI_2 * k as f64 / steps as f64).cos();
            ((masked as f64) * share).floor() as usize
        };
        (1..=steps)
            .map(|k| remaining(k - 1) - remaining(k))
            .collect()
    }
}

/// Registers `cosine`.
#[derive(Debug, Default)]
pub struct CosinePlugin;

impl Plugin for CosinePlugin {
    fn name(&self) -> &str {
        "example-cosine"
    }

    fn build(&self, r: &mut Registrar<'_>) -> Result<(), RegistryError> {
        r.schedule(
            "cosine",
            "cosine mask schedule (MaskGIT): few tokens early, many late (example plugin)",
            |spec, _| {
                let o: CosineOptions = spec.options()?;
                if !(o.eps > 0.0 && o.eps < 1.0) {
                    return Err(spec
                        .error(format!("eps must lie in (0, 1), got {}", o.eps))
                        .into());
                }
                Ok(Arc::new(Cosine { eps: o.eps }))
            },
        )
    }
}

rediff_api::export_plugin!(CosinePlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_cosine_and_sum_up() {
        let s = Cosine { eps: 1e-3 };
        assert_eq!(s.unmask_counts(24, 6), vec![1, 3, 4, 4, 6, 6]);
        assert_eq!(s.unmask_counts(24, 1), vec![24]);
        for (n, steps) in [(7, 3), (24, 24), (0, 4)] {
            assert_eq!(s.unmask_counts(n, steps).iter().sum::<usize>(), n);
        }
        assert!((s.mask_probability(1.0) - 1.0).abs() < 1e-6);
        assert!((s.mask_probability(0.0) - 1e-3).abs() < 1e-6);
    }
}
