//! AdamW with its moment estimates kept in the open, so a resumed run
//! continues with exactly the optimiser state it stopped with (candle-nn's
//! `AdamW` keeps them private), plus global-norm gradient clipping.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use rediff_api::error::{Error, Result};

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Numerical epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// AdamW over the named variables of a [`VarMap`].
pub struct AdamW {
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: usize,
    config: AdamWConfig,
}

impl AdamW {
    /// Optimises every variable of `varmap` (sorted by name for a stable order).
    pub fn new(varmap: &VarMap, config: AdamWConfig) -> Result<Self> {
        let params = sorted_vars(varmap)?;
        let m = params
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            params,
            m,
            v,
            step: 0,
            config,
        })
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// Global L2 norm of the gradients present in `grads`.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut total = 0f64;
        for (_, var) in &self.params {
            if let Some(g) = grads.get(var.as_tensor()) {
                total += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
        }
        Ok(total.sqrt())
    }

    /// One update at learning rate `lr`, gradients scaled by `grad_scale`
    /// (use it for clipping). Variables without a gradient only decay.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        for (i, (_, var)) in self.params.iter().enumerate() {
            let theta = var.as_tensor();
            let decayed = (theta * (1.0 - lr * c.weight_decay))?;
            let Some(g) = grads.get(theta) else {
                var.set(&decayed)?;
                continue;
            };
            let g = (g * grad_scale)?;
            let m = ((&self.m[i] * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&m / bias1)?;
            let v_hat = (&v / bias2)?;
            let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Moment tensors by name (`m.<var>`, `v.<var>`) for saving.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
        }
        out
    }

    /// Restores moments saved by [`state`](Self::state) and the step count.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        for (i, (name, var)) in self.params.iter().enumerate() {
            for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                *slot = saved_tensor(state, &format!("{prefix}.{name}"), var, "optimizer state")?;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// The variables of `varmap`, sorted by name (a stable order for saved state).
pub(crate) fn sorted_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let mut params: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .map_err(|_| Error::invalid("variable map lock poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(params)
}

/// `state[key]`, checked against `var`'s shape and moved to its device;
/// `what` names the state in errors.
pub(crate) fn saved_tensor(
    state: &HashMap<String, Tensor>,
    key: &str,
    var: &Var,
    what: &str,
) -> Result<Tensor> {
    let t = state
        .get(key)
        .ok_or_else(|| Error::invalid(format!("{what} lacks `{key}`")))?;
    if t.dims() != var.dims() {
        return Err(Error::invalid(format!(
            "{what} `{key}` has shape {:?}, variable has {:?}",
            t.dims(),
            var.dims()
        )));
    }
    Ok(t.to_device(var.device())?)
}

/// Warm-up then cosine decay to `min_ratio * peak`.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64, min_ratio: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup.min(step)) as f64 / span as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * (min_ratio + (1.0 - min_ratio) * cosine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{Init, VarBuilder};

    #[test]
    fn lr_schedule_warms_up_then_decays() {
        assert!((lr_at(0, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 100, 10, 1.0, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, 100, 10, 1.0, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(100, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
        let mid = lr_at(55, 100, 10, 1.0, 0.1);
        assert!((mid - 0.55).abs() < 1e-9, "{mid}");
    }

    #[test]
    fn adamw_matches_the_closed_form_first_step() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let w = vb.get_with_hints(2, "w", Init::Const(1.0)).unwrap();
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(&vm, cfg).unwrap();
        // loss = sum(3 w) -> grad 3; first Adam step moves by lr * sign(g).
        let loss = (w.clone() * 3.0).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        assert!((opt.grad_norm(&grads).unwrap() - (18f64).sqrt()).abs() < 1e-5);
        opt.step(&grads, 0.01, 1.0).unwrap();
        let got = vm.data().lock().unwrap()["w"].to_vec1::<f32>().unwrap();
        let expected = 1.0 * (1.0 - 0.01 * 0.1) - 0.01;
        assert!((f64::from(got[0]) - expected).abs() < 1e-6, "{got:?}");
        // State round trip.
        let state = opt.state();
        let mut other = AdamW::new(&vm, cfg).unwrap();
        other.load_state(&state, opt.step_count()).unwrap();
        assert_eq!(other.step_count(), 1);
        assert_eq!(
            other.state()["m.w"].to_vec1::<f32>().unwrap(),
            state["m.w"].to_vec1::<f32>().unwrap()
        );
    }
}
