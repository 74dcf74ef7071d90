//! Stored attention keys and values for the samplers' approximate cache
//! ([`rediff_api::cache`]): a full pass keeps every layer's [`LayerKv`]; a
//! window pass [`splice`](LayerKv::splice)s its own into them.

use candle_core::{Result, Tensor};

/// One attention layer's keys and values over a sequence.
///
/// # Shapes
/// - `k`, `v`: `[batch, kv_heads, seq, head_dim]`
#[derive(Debug, Clone)]
pub struct LayerKv {
    /// Keys (after any rotary embedding).
    pub k: Tensor,
    /// Values.
    pub v: Tensor,
}

impl LayerKv {
    /// Sequence length.
    pub fn seq_len(&self) -> Result<usize> {
        self.k.dim(2)
    }

    /// These keys and values with positions `start..start + n` replaced by
    /// `fresh`'s `n` positions.
    ///
    /// # Shapes
    /// - `self`: `[b, h, T, d]`, `fresh`: `[b, h, n, d]` -> `[b, h, T, d]`
    pub fn splice(&self, fresh: &LayerKv, start: usize) -> Result<LayerKv> {
        let t = self.seq_len()?;
        let n = fresh.seq_len()?;
        if start + n > t {
            candle_core::bail!(
                "window {start}..{} outside the {t} stored positions",
                start + n
            );
        }
        let one = |stored: &Tensor, new: &Tensor| -> Result<Tensor> {
            let mut parts = Vec::with_capacity(3);
            if start > 0 {
                parts.push(stored.narrow(2, 0, start)?);
            }
            parts.push(new.clone());
            if start + n < t {
                parts.push(stored.narrow(2, start + n, t - start - n)?);
            }
            Tensor::cat(&parts, 2)
        };
        Ok(LayerKv {
            k: one(&self.k, &fresh.k)?,
            v: one(&self.v, &fresh.v)?,
        })
    }
}

/// Every layer's keys and values from one full pass, with the geometry
/// they were computed for: what a backend keeps in the sampler's
/// `KvCache` between steps.
#[derive(Debug, Clone)]
pub struct PassKv {
    /// One entry per layer, over `[prompt | response]`.
    pub layers: Vec<LayerKv>,
    /// Rows of the batch.
    pub batch: usize,
    /// Prompt positions (padded length).
    pub prefix_len: usize,
    /// Response positions.
    pub response_len: usize,
}

impl PassKv {
    /// Whether a window pass over `batch x (prefix_len + response_len)`
    /// positions recomputing `window` of the response can reuse these; the
    /// reason when not.
    pub fn check_window(
        &self,
        batch: usize,
        prefix_len: usize,
        response_len: usize,
        window: &std::ops::Range<usize>,
    ) -> std::result::Result<(), String> {
        let (b, p, l) = (batch, prefix_len, response_len);
        if (self.batch, self.prefix_len, self.response_len) != (b, p, l) {
            return Err(format!(
                "the cached keys and values are for {} x ({} + {}) positions, not {b} x ({p} + {l})",
                self.batch, self.prefix_len, self.response_len
            ));
        }
        if window.is_empty() || window.end > l {
            return Err(format!(
                "cache window {window:?} outside the {l}-token response"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn seq(values: &[f32]) -> Tensor {
        Tensor::new(values, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, values.len(), 1))
            .unwrap()
    }

    #[test]
    fn splice_replaces_exactly_the_window() {
        let stored = LayerKv {
            k: seq(&[0., 1., 2., 3., 4.]),
            v: seq(&[10., 11., 12., 13., 14.]),
        };
        let fresh = LayerKv {
            k: seq(&[-1., -2.]),
            v: seq(&[-10., -20.]),
        };
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mid = stored.splice(&fresh, 2).unwrap();
        assert_eq!(flat(&mid.k), [0., 1., -1., -2., 4.]);
        assert_eq!(flat(&mid.v), [10., 11., -10., -20., 14.]);
        assert_eq!(
            flat(&stored.splice(&fresh, 0).unwrap().k),
            [-1., -2., 2., 3., 4.]
        );
        assert_eq!(
            flat(&stored.splice(&fresh, 3).unwrap().k),
            [0., 1., 2., -1., -2.]
        );
        assert!(stored.splice(&fresh, 4).is_err());
    }
}
