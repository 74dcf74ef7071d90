//! Noise schedules.

use rediff_api::schedule::{uniform_unmask_counts, NoiseSchedule};
use serde::Deserialize;

/// Options of the `linear` schedule.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearOptions {
    /// Floor of the mask probability. Default `1e-3` (LLaDA).
    pub eps: f32,
}

impl Default for LinearOptions {
    fn default() -> Self {
        Self { eps: 1e-3 }
    }
}

/// LLaDA's linear schedule: `p = (1 - eps) t + eps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Linear {
    eps: f32,
}

impl Linear {
    /// Validates `eps` in `(0, 1)`.
    pub fn new(options: LinearOptions) -> Result<Self, String> {
        if !(options.eps > 0.0 && options.eps < 1.0) {
            return Err(format!("eps must lie in (0, 1), got {}", options.eps));
        }
        Ok(Self { eps: options.eps })
    }
}

impl NoiseSchedule for Linear {
    fn mask_probability(&self, t: f32) -> f32 {
        (1.0 - self.eps) * t.clamp(0.0, 1.0) + self.eps
    }

    fn unmask_counts(&self, masked: usize, steps: usize) -> Vec<usize> {
        uniform_unmask_counts(masked, steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_probability_and_counts() {
        let s = Linear::new(LinearOptions { eps: 1e-3 }).unwrap();
        assert!((s.mask_probability(0.0) - 1e-3).abs() < 1e-9);
        assert!((s.mask_probability(1.0) - 1.0).abs() < 1e-6);
        assert!((s.mask_probability(0.5) - (0.999 * 0.5 + 0.001)).abs() < 1e-6);
        assert_eq!(s.unmask_counts(24, 3), vec![8, 8, 8]);
        assert_eq!(s.unmask_counts(7, 3), vec![3, 2, 2]);
        assert!(Linear::new(LinearOptions { eps: 0.0 }).is_err());
    }
}
