//! Exponential moving average of the weights (Polyak averaging, as diffusion
//! models train with since Ho et al. 2020, <https://arxiv.org/abs/2006.11239>):
//! a stage with `[train].ema = d` writes `w_ema <- d w_ema + (1 - d) w` after
//! every optimiser step and saves the average as its model, so the result
//! depends less on the last few batches.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use crate::optim::{saved_tensor, sorted_vars};
use rediff_api::error::{Error, Result};

/// The running average of every variable of a [`VarMap`].
pub struct Ema {
    decay: f64,
    params: Vec<(String, Var)>,
    shadow: Vec<Tensor>,
}

impl Ema {
    /// Starts the average at the current weights; `decay` in `[0, 1)`.
    pub fn new(varmap: &VarMap, decay: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&decay) {
            return Err(Error::invalid(format!(
                "ema must lie in [0, 1) (0 = off), got {decay}"
            )));
        }
        let params = sorted_vars(varmap)?;
        let shadow = params
            .iter()
            .map(|(_, v)| v.as_tensor().detach().copy())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            decay,
            params,
            shadow,
        })
    }

    /// Folds the current weights into the average (after an optimiser step).
    pub fn update(&mut self) -> Result<()> {
        let d = self.decay;
        for (slot, (_, var)) in self.shadow.iter_mut().zip(&self.params) {
            let w = var.as_tensor().detach();
            // Detached: the average must not hold a graph across steps.
            *slot = ((&*slot * d)? + (w * (1.0 - d))?)?.detach();
        }
        Ok(())
    }

    /// Writes the average into the variables (the stage's final model).
    pub fn copy_into_weights(&self) -> Result<()> {
        for (avg, (_, var)) in self.shadow.iter().zip(&self.params) {
            var.set(avg)?;
        }
        Ok(())
    }

    /// The average by variable name (`ema.<var>`), for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        self.params
            .iter()
            .zip(&self.shadow)
            .map(|((name, _), t)| (format!("ema.{name}"), t.clone()))
            .collect()
    }

    /// Restores an average saved by [`state`](Self::state).
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (slot, (name, var)) in self.shadow.iter_mut().zip(&self.params) {
            *slot = saved_tensor(state, &format!("ema.{name}"), var, "weight average")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{Init, VarBuilder};

    fn weights(vm: &VarMap) -> Vec<f32> {
        vm.data().lock().unwrap()["w"].to_vec1::<f32>().unwrap()
    }

    #[test]
    fn averages_by_hand_and_round_trips() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let w = vb.get_with_hints(2, "w", Init::Const(1.0)).unwrap();
        let mut ema = Ema::new(&vm, 0.5).unwrap();
        // Weights 3 then 5: average 0.5 * 1 + 0.5 * 3 = 2, then 0.5 * 2 + 0.5 * 5 = 3.5.
        let var = vm.data().lock().unwrap()["w"].clone();
        var.set(&(w.ones_like().unwrap() * 3.0).unwrap()).unwrap();
        ema.update().unwrap();
        var.set(&(w.ones_like().unwrap() * 5.0).unwrap()).unwrap();
        ema.update().unwrap();
        assert_eq!(
            ema.state()["ema.w"].to_vec1::<f32>().unwrap(),
            vec![3.5, 3.5]
        );
        assert_eq!(
            weights(&vm),
            vec![5.0, 5.0],
            "updating leaves the weights alone"
        );
        // A checkpoint restores it exactly.
        let mut other = Ema::new(&vm, 0.5).unwrap();
        other.load_state(&ema.state()).unwrap();
        other.copy_into_weights().unwrap();
        assert_eq!(weights(&vm), vec![3.5, 3.5]);
        // Bad input is named.
        let err = other.load_state(&HashMap::new()).unwrap_err().to_string();
        assert!(err.contains("ema.w"), "{err}");
        let wrong = HashMap::from([(
            "ema.w".to_string(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        )]);
        assert!(other
            .load_state(&wrong)
            .unwrap_err()
            .to_string()
            .contains("shape"));
        assert!(Ema::new(&vm, 1.0).is_err());
        assert!(Ema::new(&vm, -0.1).is_err());
    }
}
