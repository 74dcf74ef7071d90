//! Noise schedules: how much of the response is masked in training, and how
//! many tokens are unmasked per step at inference.

/// A masked-diffusion noise schedule.
///
/// Implementations are registered under [`crate::ComponentKind::Schedule`].
pub trait NoiseSchedule: Send + Sync {
    /// The training-time probability that a response position is masked for
    /// a diffusion time `t` in `[0, 1]`. Must lie in `(0, 1]`.
    fn mask_probability(&self, t: f32) -> f32;

    /// How many of `masked` positions to unmask at each of `steps` steps.
    ///
    /// The result has `steps` entries and sums to `masked`.
    fn unmask_counts(&self, masked: usize, steps: usize) -> Vec<usize>;
}

/// The uniform split of LLaDA: `masked / steps` per step, the remainder
/// spread one each over the first steps.
pub fn uniform_unmask_counts(masked: usize, steps: usize) -> Vec<usize> {
    if steps == 0 {
        return Vec::new();
    }
    let base = masked / steps;
    let remainder = masked % steps;
    (0..steps)
        .map(|i| base + usize::from(i < remainder))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_split_puts_remainder_first() {
        assert_eq!(uniform_unmask_counts(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(uniform_unmask_counts(8, 8), vec![1; 8]);
        assert_eq!(uniform_unmask_counts(24, 3), vec![8, 8, 8]);
        assert_eq!(uniform_unmask_counts(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(uniform_unmask_counts(0, 2), vec![0, 0]);
        assert!(uniform_unmask_counts(5, 0).is_empty());
    }
}
