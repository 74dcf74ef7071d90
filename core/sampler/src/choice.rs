//! Sampling primitives shared by the sampler and components that read
//! logits themselves (the `model` expert): the token a position takes and
//! its confidence, and ranking by confidence.

/// Per-position choice: the sampled token and its probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// `argmax(logits + temperature * gumbel)` over allowed tokens.
    pub token: u32,
    /// `softmax(logits)[token]` over allowed tokens, in float64.
    pub confidence: f64,
}

/// Picks `x0` and its confidence from one position's logits, with
/// `suppressed` tokens excluded (their logit treated as `-inf`).
pub fn choose(
    logits: &[f32],
    suppressed: &[u32],
    temperature: f64,
    rng: &mut impl rand::Rng,
) -> Choice {
    choose_scored(logits, suppressed, temperature, rng, None).0
}

/// [`choose`], also returning the probability of `current` under the same
/// (suppressed) softmax: 0 when `current` is suppressed or absent.
pub fn choose_scored(
    logits: &[f32],
    suppressed: &[u32],
    temperature: f64,
    rng: &mut impl rand::Rng,
    current: Option<u32>,
) -> (Choice, f64) {
    let mut best = 0usize;
    let mut best_score = f64::NEG_INFINITY;
    let mut max_logit = f64::NEG_INFINITY;
    for (v, &l) in logits.iter().enumerate() {
        if suppressed.contains(&(v as u32)) {
            continue;
        }
        let l = f64::from(l);
        max_logit = max_logit.max(l);
        let score = if temperature > 0.0 {
            let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
            l + temperature * -(-u.ln()).ln()
        } else {
            l
        };
        if score > best_score {
            best_score = score;
            best = v;
        }
    }
    let mut denom = 0f64;
    for (v, &l) in logits.iter().enumerate() {
        if !suppressed.contains(&(v as u32)) {
            denom += (f64::from(l) - max_logit).exp();
        }
    }
    let prob = |v: usize| (f64::from(logits[v]) - max_logit).exp() / denom;
    let current = match current {
        Some(c) if (c as usize) < logits.len() && !suppressed.contains(&c) => prob(c as usize),
        _ => 0.0,
    };
    (
        Choice {
            token: best as u32,
            confidence: prob(best),
        },
        current,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn choose_is_argmax_and_softmax_with_suppression() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let logits = [0.0f32, 3.0, 1.0, 2.0];
        let c = choose(&logits, &[], 0.0, &mut rng);
        assert_eq!(c.token, 1);
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        assert!((c.confidence - 3f64.exp() / z).abs() < 1e-12);
        // Suppressing the best token renormalises over the rest.
        let c = choose(&logits, &[1], 0.0, &mut rng);
        assert_eq!(c.token, 3);
        let z: f64 = [0.0f64, 1.0, 2.0].iter().map(|l| l.exp()).sum();
        assert!((c.confidence - 2f64.exp() / z).abs() < 1e-12);
        // The current token's probability, under the same suppression.
        let (c, cur) = choose_scored(&logits, &[1], 0.0, &mut rng, Some(2));
        assert_eq!(c.token, 3);
        assert!((cur - 1f64.exp() / z).abs() < 1e-12);
        assert_eq!(choose_scored(&logits, &[1], 0.0, &mut rng, Some(1)).1, 0.0);
    }

    #[test]
    fn gumbel_sampling_follows_the_softmax() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let logits = [0.0f32, (3f32).ln()];
        let n = 20000;
        let ones = (0..n)
            .filter(|_| choose(&logits, &[], 1.0, &mut rng).token == 1)
            .count();
        let share = ones as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }
}
