//! Fused CPU kernels with a backward pass for the ops that dominate a small
//! model's training step: RMSNorm, (scaled) softmax over the last axis,
//! SiLU and the weighted token cross-entropy, plus a vectorised `exp` and a
//! linear layer as one 2-D matmul. candle's own fused `rms_norm` and
//! `softmax_last_dim` have no backward pass, so training used to build each
//! from five or six elementwise ops (each allocating a tensor and recording
//! a node); these do one pass forward and one pass backward.
//!
//! Each function falls back to the plain composition of differentiable ops
//! for inputs it has no kernel for (not f32, not on the CPU), so callers use
//! them unconditionally. Tests check every kernel against the composition,
//! values and gradients.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};

use rediff_api::Result;

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what}: f32 only")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

/// `e^x` for every element, in place: a degree-6 polynomial after range
/// reduction by powers of two (relative error below 2e-7 over the f32
/// range; `e^x` underflows to 0 below -87.3), written so the compiler
/// vectorises it. libm's scalar `expf` was 10-15% of a training step.
pub fn exp_in_place(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { exp_in_place_avx2(xs) };
            return;
        }
    }
    exp_in_place_generic(xs);
}

/// The loop body, expanded into each target-feature variant so the
/// polynomial is inlined and vectorised there.
macro_rules! exp_loop {
    ($xs:expr) => {
        for x in $xs.iter_mut() {
            const LOG2E: f32 = std::f32::consts::LOG2_E;
            const LN2_HI: f32 = 0.693_145_75;
            const LN2_LO: f32 = 1.428_606_8e-6;
            const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
            let v = *x;
            let xc = v.max(-87.3).min(88.7);
            let shifted = xc * LOG2E + ROUND;
            let n = shifted - ROUND;
            // The integer n sits in the low mantissa bits of `shifted`.
            let ni = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
            let r = xc - n * LN2_HI - n * LN2_LO;
            let p = 1.0
                + r * (1.0
                    + r * (0.5
                        + r * (1.0 / 6.0
                            + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
            let scale = f32::from_bits((ni.wrapping_add(127) << 23) as u32);
            *x = if v < -87.3 { 0.0 } else { p * scale };
        }
    };
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_in_place_avx2(xs: &mut [f32]) {
    exp_loop!(xs);
}

fn exp_in_place_generic(xs: &mut [f32]) {
    exp_loop!(xs);
}

/// The largest absolute elementwise difference of two same-shape tensors
/// (for parity checks: fused kernels, reference fixtures).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?)
}

thread_local! {
    static FUSED_RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn count_run() {
    FUSED_RUNS.with(|c| c.set(c.get() + 1));
}

/// How many fused kernels (forward or backward) have run on this thread:
/// lets a test prove the fused path ran rather than the plain fallback,
/// whose values are the same.
pub fn fused_runs() -> usize {
    FUSED_RUNS.with(|c| c.get())
}

fn fused(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

// ----------------------------------------------------------------- linear

/// `x · Wᵀ + b` over the last axis, computed as one 2-D matmul.
///
/// candle's `Linear` broadcasts the weight over the batch for 3-D inputs,
/// so its backward pass produces a `[batch, in, out]` weight gradient and
/// then sums it over the batch; flattening the leading axes first makes the
/// weight gradient a single matmul. Same values, same gradients.
///
/// # Shapes
/// - `x`: `[..., in]` -> `[..., out]`
pub fn linear(x: &Tensor, layer: &candle_nn::Linear) -> Result<Tensor> {
    linear_transposed(x, &layer.weight().t()?, layer.bias())
}

/// `x · wt + b` with the weight given as `wt = Wᵀ`, `[in, out]` (a view or a
/// contiguous copy; a contiguous one spares gemm repacking it every call).
///
/// # Shapes
/// - `x`: `[..., in]`, `wt`: `[in, out]` -> `[..., out]`
pub fn linear_transposed(x: &Tensor, wt: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims();
    let inner = dims[dims.len() - 1];
    let rows = x.elem_count() / inner.max(1);
    let y = x.reshape((rows, inner))?.matmul(wt)?;
    let y = match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = dims.to_vec();
    *out.last_mut().expect("at least one axis") = wt.dim(1)?;
    Ok(y.reshape(out)?)
}

// ---------------------------------------------------------------- RMSNorm

/// `y = x / sqrt(mean(x^2) + eps) * w` over the last axis.
struct RmsNormOp {
    eps: f32,
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ss: f32 = row.iter().map(|v| v * v).sum();
    1.0 / (ss / row.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "rediff-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        count_run();
        let x = contiguous_f32(s1, l1, "rms_norm")?;
        let w = contiguous_f32(s2, l2, "rms_norm weight")?;
        let d = w.len();
        let mut y = vec![0f32; x.len()];
        for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let r = inv_rms(xr, self.eps);
            for ((yv, xv), wv) in yr.iter_mut().zip(xr).zip(w) {
                *yv = xv * r * wv;
            }
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = x.apply_op3_no_bwd(w, &grad, &RmsNormGradX { eps: self.eps })?;
        let dw = x.apply_op2_no_bwd(&grad, &RmsNormGradW { eps: self.eps })?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `dx = r * (g*w - x * r^2 * mean(g*w*x))` with `r = 1/rms(x)`.
struct RmsNormGradX {
    eps: f32,
}

impl CustomOp3 for RmsNormGradX {
    fn name(&self) -> &'static str {
        "rediff-rms-norm-grad-x"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        count_run();
        let x = contiguous_f32(s1, l1, "rms_norm grad")?;
        let w = contiguous_f32(s2, l2, "rms_norm grad")?;
        let g = contiguous_f32(s3, l3, "rms_norm grad")?;
        let d = w.len();
        let mut dx = vec![0f32; x.len()];
        for ((xr, gr), dr) in x
            .chunks_exact(d)
            .zip(g.chunks_exact(d))
            .zip(dx.chunks_exact_mut(d))
        {
            let r = inv_rms(xr, self.eps);
            let dot: f32 = xr
                .iter()
                .zip(gr)
                .zip(w)
                .map(|((xv, gv), wv)| gv * wv * xv)
                .sum();
            let c = r * r * r * dot / d as f32;
            for (((dv, xv), gv), wv) in dr.iter_mut().zip(xr).zip(gr).zip(w) {
                *dv = r * gv * wv - c * xv;
            }
        }
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// `dw = sum over rows of g * x * r`.
struct RmsNormGradW {
    eps: f32,
}

impl CustomOp2 for RmsNormGradW {
    fn name(&self) -> &'static str {
        "rediff-rms-norm-grad-w"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        count_run();
        let x = contiguous_f32(s1, l1, "rms_norm grad")?;
        let g = contiguous_f32(s2, l2, "rms_norm grad")?;
        let d = *l1.shape().dims().last().unwrap_or(&1);
        let mut dw = vec![0f32; d];
        for (xr, gr) in x.chunks_exact(d).zip(g.chunks_exact(d)) {
            let r = inv_rms(xr, self.eps);
            for ((dv, xv), gv) in dw.iter_mut().zip(xr).zip(gr) {
                *dv += gv * xv * r;
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from(d)))
    }
}

/// RMSNorm over the last axis with gain `w`, differentiable in `x` and `w`.
///
/// # Shapes
/// - `x`: `[..., d]`, `w`: `[d]` -> `[..., d]`
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x) && fused(w) {
        Ok(x.contiguous()?
            .apply_op2(&w.contiguous()?, RmsNormOp { eps: eps as f32 })?)
    } else {
        rms_norm_plain(x, w, eps)
    }
}

/// [`rms_norm`] from elementwise ops (the reference the kernel is tested against).
pub fn rms_norm_plain(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let norm = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
    Ok(x.broadcast_div(&norm)?.broadcast_mul(w)?)
}

// ---------------------------------------------------------------- softmax

struct SoftmaxOp {
    scale: f32,
}

fn softmax_row(src: &[f32], dst: &mut [f32]) {
    let max = src.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s - max;
    }
    exp_in_place(dst);
    let sum: f32 = dst.iter().sum();
    let inv = 1.0 / sum;
    dst.iter_mut().for_each(|d| *d *= inv);
}

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "rediff-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        count_run();
        let x = contiguous_f32(s, l, "softmax")?;
        let d = *l.shape().dims().last().unwrap_or(&1);
        let mut y = vec![0f32; x.len()];
        if self.scale == 1.0 {
            for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
                softmax_row(xr, yr);
            }
        } else {
            let mut buf = vec![0f32; d];
            for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
                buf.iter_mut()
                    .zip(xr)
                    .for_each(|(b, v)| *b = v * self.scale);
                softmax_row(&buf, yr);
            }
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let op = SoftmaxGrad { scale: self.scale };
        Ok(Some(y.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

/// `dx = scale * y * (g - sum(g * y))` per row.
struct SoftmaxGrad {
    scale: f32,
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "rediff-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        count_run();
        let y = contiguous_f32(s1, l1, "softmax grad")?;
        let g = contiguous_f32(s2, l2, "softmax grad")?;
        let d = *l1.shape().dims().last().unwrap_or(&1);
        let mut dx = vec![0f32; y.len()];
        for ((yr, gr), dr) in y
            .chunks_exact(d)
            .zip(g.chunks_exact(d))
            .zip(dx.chunks_exact_mut(d))
        {
            let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
            for ((dv, yv), gv) in dr.iter_mut().zip(yr).zip(gr) {
                *dv = self.scale * yv * (gv - dot);
            }
        }
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Softmax over the last axis, differentiable.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    scaled_softmax_last_dim(x, 1.0)
}

/// `softmax(scale * x)` over the last axis in one pass (attention scores
/// need no separate scaling op), differentiable.
pub fn scaled_softmax_last_dim(x: &Tensor, scale: f64) -> Result<Tensor> {
    if fused(x) {
        Ok(x.contiguous()?.apply_op1(SoftmaxOp {
            scale: scale as f32,
        })?)
    } else {
        Ok(candle_nn::ops::softmax(&(x * scale)?, D::Minus1)?)
    }
}

// ------------------------------------------------------------------- SiLU

/// `x * sigmoid(x)`.
struct SiluOp;

impl CustomOp1 for SiluOp {
    fn name(&self) -> &'static str {
        "rediff-silu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        count_run();
        let x = contiguous_f32(s, l, "silu")?;
        let mut y: Vec<f32> = x.iter().map(|&v| -v).collect();
        exp_in_place(&mut y);
        y.iter_mut().zip(x).for_each(|(e, &v)| *e = v / (1.0 + *e));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &SiluGrad)?))
    }
}

/// `dx = g * s * (1 + x * (1 - s))` with `s = sigmoid(x)`.
struct SiluGrad;

impl CustomOp2 for SiluGrad {
    fn name(&self) -> &'static str {
        "rediff-silu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        count_run();
        let x = contiguous_f32(s1, l1, "silu grad")?;
        let g = contiguous_f32(s2, l2, "silu grad")?;
        let mut dx: Vec<f32> = x.iter().map(|&v| -v).collect();
        exp_in_place(&mut dx);
        for ((d, &v), &gv) in dx.iter_mut().zip(x).zip(g) {
            let s = 1.0 / (1.0 + *d);
            *d = gv * s * (1.0 + v * (1.0 - s));
        }
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// SiLU (`x * sigmoid(x)`), differentiable.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        Ok(x.contiguous()?.apply_op1(SiluOp)?)
    } else {
        Ok(x.silu()?)
    }
}

// ---------------------------------------------------------- cross-entropy

/// Per-position `w * (logsumexp(logits) - logits[label])`.
struct WeightedCrossEntropy {
    labels: Vec<u32>,
    weights: Vec<f32>,
}

impl CustomOp1 for WeightedCrossEntropy {
    fn name(&self) -> &'static str {
        "rediff-weighted-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        count_run();
        let x = contiguous_f32(s, l, "cross-entropy")?;
        let dims = l.shape().dims();
        let v = dims[dims.len() - 1];
        let rows = x.len() / v;
        if rows != self.labels.len() || rows != self.weights.len() {
            candle_core::bail!(
                "cross-entropy: {rows} positions, {} labels",
                self.labels.len()
            );
        }
        let mut out = vec![0f32; rows];
        let mut buf = vec![0f32; v];
        for (i, row) in x.chunks_exact(v).enumerate() {
            let w = self.weights[i];
            if w == 0.0 {
                continue;
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            buf.iter_mut().zip(row).for_each(|(b, z)| *b = z - max);
            exp_in_place(&mut buf);
            let lse = max + buf.iter().sum::<f32>().ln();
            let label = self.labels[i] as usize;
            if label >= v {
                candle_core::bail!("cross-entropy: label {label} outside a vocabulary of {v}");
            }
            out[i] = w * (lse - row[label]);
        }
        Ok((CpuStorage::F32(out), Shape::from(&dims[..dims.len() - 1])))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let op = WeightedCrossEntropyGrad {
            labels: self.labels.clone(),
            weights: self.weights.clone(),
        };
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &op)?))
    }
}

/// `dlogits = g * w * (softmax(logits) - onehot(label))` per row.
struct WeightedCrossEntropyGrad {
    labels: Vec<u32>,
    weights: Vec<f32>,
}

impl CustomOp2 for WeightedCrossEntropyGrad {
    fn name(&self) -> &'static str {
        "rediff-weighted-cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        count_run();
        let x = contiguous_f32(s1, l1, "cross-entropy grad")?;
        let g = contiguous_f32(s2, l2, "cross-entropy grad")?;
        let v = *l1.shape().dims().last().unwrap_or(&1);
        let mut dx = vec![0f32; x.len()];
        for (i, (row, drow)) in x.chunks_exact(v).zip(dx.chunks_exact_mut(v)).enumerate() {
            let scale = g[i] * self.weights[i];
            if scale == 0.0 {
                continue;
            }
            softmax_row(row, drow);
            drow.iter_mut().for_each(|d| *d *= scale);
            drow[self.labels[i] as usize] -= scale;
        }
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Per-position weighted cross-entropy `w * CE(label | logits)`,
/// differentiable in `logits`.
///
/// # Shapes
/// - `logits`: `[batch, L, vocab]`; `labels` (`u32`), `weights`: `[batch, L]`
/// - returns: `[batch, L]`
pub fn weighted_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    weights: &Tensor,
) -> Result<Tensor> {
    if fused(logits) {
        let op = WeightedCrossEntropy {
            labels: labels.flatten_all()?.to_vec1::<u32>()?,
            weights: weights
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        };
        Ok(logits.contiguous()?.apply_op1(op)?)
    } else {
        weighted_cross_entropy_plain(logits, labels, weights)
    }
}

/// [`weighted_cross_entropy`] from differentiable ops.
pub fn weighted_cross_entropy_plain(
    logits: &Tensor,
    labels: &Tensor,
    weights: &Tensor,
) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&labels.unsqueeze(D::Minus1)?, D::Minus1)?;
    let ce = picked.squeeze(D::Minus1)?.neg()?;
    Ok((ce * weights.to_dtype(logits.dtype())?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};

    fn random(shape: &[usize], seed: u64, scale: f32) -> Var {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| scale * (rng.random::<f32>() * 2.0 - 1.0))
            .collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        max_abs_diff(a, b).unwrap()
    }

    /// Compares values and gradients of `fused` and `plain` under a random
    /// upstream gradient (a weighted sum of the outputs).
    ///
    /// The fused side must run at least `kernels` fused kernels (forward and
    /// backward together): equal values alone would also pass if it
    /// silently fell back to the plain path.
    fn check(
        inputs: &[&Var],
        fused: impl Fn() -> Tensor,
        plain: impl Fn() -> Tensor,
        tol: f32,
        kernels: usize,
    ) {
        let runs = fused_runs();
        let a = fused();
        let forward_runs = fused_runs() - runs;
        let b = plain();
        assert_eq!(
            fused_runs() - runs,
            forward_runs,
            "the plain side ran a fused kernel"
        );
        assert!(
            max_diff(&a, &b) <= tol,
            "values differ by {}",
            max_diff(&a, &b)
        );
        let up = random(a.dims(), 99, 1.0);
        let ga = (&a * up.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gb = (&b * up.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(
            fused_runs() - runs >= kernels,
            "{} fused kernels ran, expected at least {kernels}: the fused path fell back",
            fused_runs() - runs
        );
        for (k, v) in inputs.iter().enumerate() {
            let (x, y) = (
                ga.get(v.as_tensor()).unwrap(),
                gb.get(v.as_tensor()).unwrap(),
            );
            assert!(
                max_diff(x, y) <= tol,
                "input {k}: gradients differ by {}",
                max_diff(x, y)
            );
        }
    }

    #[test]
    fn linear_matches_candle_linear() {
        use candle_core::Module;
        let x = random(&[4, 3, 8], 6, 1.0);
        let w = random(&[5, 8], 7, 1.0);
        let b = random(&[5], 8, 1.0);
        let layer = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        check(
            &[&x, &w, &b],
            || linear(x.as_tensor(), &layer).unwrap(),
            || layer.forward(x.as_tensor()).unwrap(),
            1e-5,
            0,
        );
    }

    #[test]
    fn rms_norm_matches_the_composition() {
        let x = random(&[3, 5, 16], 1, 2.0);
        let w = random(&[16], 2, 1.5);
        check(
            &[&x, &w],
            || rms_norm(x.as_tensor(), w.as_tensor(), 1e-5).unwrap(),
            || rms_norm_plain(x.as_tensor(), w.as_tensor(), 1e-5).unwrap(),
            1e-5,
            3,
        );
        // A transposed (non-contiguous) input works too.
        let t = x.as_tensor().transpose(0, 1).unwrap();
        let a = rms_norm(&t, w.as_tensor(), 1e-5).unwrap();
        let b = rms_norm_plain(&t, w.as_tensor(), 1e-5).unwrap();
        assert!(max_diff(&a, &b) < 1e-5);
    }

    #[test]
    fn softmax_matches_the_composition() {
        let x = random(&[2, 4, 7, 9], 3, 6.0);
        check(
            &[&x],
            || softmax_last_dim(x.as_tensor()).unwrap(),
            || candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap(),
            1e-6,
            2,
        );
    }

    #[test]
    fn scaled_softmax_matches_the_composition() {
        let x = random(&[3, 5, 8], 9, 4.0);
        check(
            &[&x],
            || scaled_softmax_last_dim(x.as_tensor(), 0.35).unwrap(),
            || candle_nn::ops::softmax(&(x.as_tensor() * 0.35).unwrap(), D::Minus1).unwrap(),
            1e-6,
            2,
        );
    }

    #[test]
    fn silu_matches_the_composition() {
        let x = random(&[4, 7, 9], 10, 8.0);
        check(
            &[&x],
            || silu(x.as_tensor()).unwrap(),
            || x.as_tensor().silu().unwrap(),
            1e-5,
            2,
        );
    }

    #[test]
    fn weighted_cross_entropy_matches_the_composition() {
        let logits = random(&[3, 6, 11], 4, 5.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let labels: Vec<u32> = (0..18).map(|_| rng.random_range(0..11)).collect();
        let mut weights: Vec<f32> = (0..18).map(|_| rng.random::<f32>()).collect();
        weights[3] = 0.0;
        let labels = Tensor::from_vec(labels, (3, 6), &Device::Cpu).unwrap();
        let weights = Tensor::from_vec(weights, (3, 6), &Device::Cpu).unwrap();
        check(
            &[&logits],
            || weighted_cross_entropy(logits.as_tensor(), &labels, &weights).unwrap(),
            || weighted_cross_entropy_plain(logits.as_tensor(), &labels, &weights).unwrap(),
            1e-5,
            2,
        );
    }

    #[test]
    fn fast_exp_is_accurate_over_the_range() {
        let mut xs: Vec<f32> = (-9000..=8800).map(|i| i as f32 * 0.01).collect();
        let exact: Vec<f32> = xs.iter().map(|x| x.exp()).collect();
        exp_in_place(&mut xs);
        for (a, b) in xs.iter().zip(&exact) {
            assert!((a - b).abs() <= 3e-7 * b.abs() + 1e-37, "{a} vs {b}");
        }
        let mut edge = [f32::NEG_INFINITY, -100.0, 0.0];
        exp_in_place(&mut edge);
        assert_eq!(edge, [0.0, 0.0, 1.0]);
    }

    #[test]
    fn cross_entropy_by_hand() {
        // logits [0, ln 3] -> p = [1/4, 3/4]; CE(label 1) = ln(4/3); weight 2.
        let logits = Tensor::new(&[[[0f32, 3f32.ln()]]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[[1u32]], &Device::Cpu).unwrap();
        let weights = Tensor::new(&[[2f32]], &Device::Cpu).unwrap();
        let ce = weighted_cross_entropy(&logits, &labels, &weights).unwrap();
        let v = ce.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((v - 2.0 * (4f32 / 3.0).ln()).abs() < 1e-6, "{v}");
    }
}
