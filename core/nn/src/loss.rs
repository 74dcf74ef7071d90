//! Training objectives (section 3 of the specification).
//!
//! Every objective is expressed as per-position weights on the cross-entropy
//! of the label: a sample's loss is `sum_i w_i * CE_i` and the batch loss is
//! the mean over samples. The synthesizers set the weights:
//!
//! - random replacement: `1 / (|group| * p)` for each of the masked,
//!   replaced and kept groups (three group means, each divided by `p`);
//! - hallucination spans: `1 / |revise|` (or `1 / (|revise| * p)` with the
//!   reference's quirk);
//! - plain masked diffusion (LLaDA): `1 / (L * p)` on masked positions.

use candle_core::{DType, Tensor};

use rediff_api::Result;

/// The weighted batch loss: `mean_b sum_i w_{b,i} * CE_{b,i}` (fused on the
/// CPU, see [`crate::ops::weighted_cross_entropy`]).
///
/// # Shapes
/// - `logits`: `[batch, L, vocab]`
/// - `labels`, `weights`: `[batch, L]`
/// - returns: scalar
pub fn weighted_loss(logits: &Tensor, labels: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let batch = logits.dim(0)? as f64;
    let ce = crate::ops::weighted_cross_entropy(logits, labels, weights)?;
    Ok((ce.sum_all()? / batch)?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rediff_api::synth::group_mean_weight;

    #[test]
    fn three_group_loss_matches_a_hand_computed_example() {
        // One sample, L = 4, vocab = 2. Logits make CE easy to compute:
        // position i has logits [0, a_i]; CE of label 1 is ln(1 + e^{-a_i}),
        // CE of label 0 is ln(1 + e^{a_i}).
        let a = [0.0f32, 1.0, 2.0, -1.0];
        let logits: Vec<f32> = a.iter().flat_map(|&x| [0.0, x]).collect();
        let logits = Tensor::from_vec(logits, (1, 4, 2), &Device::Cpu).unwrap();
        let labels = Tensor::from_vec(vec![1u32, 1, 0, 1], (1, 4), &Device::Cpu).unwrap();
        let ce = |i: usize, label: u32| -> f64 {
            let x = f64::from(a[i]);
            if label == 1 {
                (1.0 + (-x).exp()).ln()
            } else {
                (1.0 + x.exp()).ln()
            }
        };
        let p = 0.5f32;
        // masked = {0, 1}, replaced = {} (empty: contributes 0), kept = {2, 3}.
        let w_masked = group_mean_weight(2, p);
        let w_replaced = group_mean_weight(0, p);
        let w_kept = group_mean_weight(2, p);
        assert_eq!(w_replaced, 0.0);
        let weights = Tensor::from_vec(
            vec![w_masked, w_masked, w_kept, w_kept],
            (1, 4),
            &Device::Cpu,
        )
        .unwrap();
        let loss = weighted_loss(&logits, &labels, &weights)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let expected = (ce(0, 1) + ce(1, 1)) / 2.0 / 0.5 + (ce(2, 0) + ce(3, 1)) / 2.0 / 0.5;
        assert!(
            (f64::from(loss) - expected).abs() < 1e-5,
            "{loss} vs {expected}"
        );
    }

    #[test]
    fn batch_loss_is_the_mean_over_samples() {
        let logits = Tensor::zeros((2, 1, 4), DType::F32, &Device::Cpu).unwrap();
        let labels = Tensor::zeros((2, 1), DType::U32, &Device::Cpu).unwrap();
        let weights = Tensor::from_vec(vec![1f32, 0.0], (2, 1), &Device::Cpu).unwrap();
        let loss = weighted_loss(&logits, &labels, &weights)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((loss - 4f32.ln() / 2.0).abs() < 1e-6);
    }
}
