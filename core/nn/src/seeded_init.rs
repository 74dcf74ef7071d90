//! Reproducible weight initialisation.
//!
//! candle's initialisers draw from a global RNG that cannot be seeded on the
//! CPU. [`seeded_var_builder`] returns a `VarBuilder` whose new variables
//! are drawn from a stream derived from `(seed, variable name)`, so a model's
//! initial weights depend only on the seed, not on construction order.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::rng;

struct SeededBackend {
    varmap: VarMap,
    seed: u64,
}

fn draw(init: Init, shape: &Shape, seed: u64, name: &str) -> Vec<f32> {
    let n = shape.elem_count();
    let mut rng = rng::stream(seed, "init", 0);
    // Fold the name in so each variable gets its own independent stream.
    let mut rng = rng::stream(rng.random::<u64>(), name, 0);
    let normal = |rng: &mut rng::Rng, mean: f64, std: f64| -> Vec<f32> {
        let d = Normal::new(mean, std.max(0.0)).expect("finite std");
        (0..n).map(|_| d.sample(rng) as f32).collect()
    };
    let uniform = |rng: &mut rng::Rng, lo: f64, up: f64| -> Vec<f32> {
        (0..n)
            .map(|_| rng.random_range(lo..up.max(lo + f64::EPSILON)) as f32)
            .collect()
    };
    match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev),
        Init::Uniform { lo, up } => uniform(&mut rng, lo, up),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let b = 3f64.sqrt() * std;
                    uniform(&mut rng, -b, b)
                }
                NormalOrUniform::Normal => normal(&mut rng, 0.0, std),
            }
        }
    }
}

impl SimpleBackend for SeededBackend {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.varmap.data().lock().expect("varmap lock");
        if let Some(var) = data.get(name) {
            let t = var.as_tensor();
            if t.shape() != &s {
                candle_core::bail!("shape mismatch for {name}: {:?} vs {:?}", t.shape(), s);
            }
            return Ok(t.clone());
        }
        let values = draw(h, &s, self.seed, name);
        let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        let data = self.varmap.data().lock().expect("varmap lock");
        match data.get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("no variable named {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .expect("varmap lock")
            .contains_key(name)
    }
}

/// A `VarBuilder` that creates missing variables in `varmap`, drawn from
/// `(seed, name)`; existing variables are returned as they are.
pub fn seeded_var_builder(
    varmap: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededBackend {
            varmap: varmap.clone(),
            seed,
        }),
        dtype,
        device.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_regardless_of_order() {
        let a = VarMap::new();
        let vb = seeded_var_builder(&a, 5, DType::F32, &Device::Cpu);
        let x = vb
            .get_with_hints(
                (3, 2),
                "x",
                Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            )
            .unwrap();
        let y = vb
            .get_with_hints(4, "y", candle_nn::init::DEFAULT_KAIMING_UNIFORM)
            .unwrap();
        let b = VarMap::new();
        let vb = seeded_var_builder(&b, 5, DType::F32, &Device::Cpu);
        let y2 = vb
            .get_with_hints(4, "y", candle_nn::init::DEFAULT_KAIMING_UNIFORM)
            .unwrap();
        let x2 = vb
            .get_with_hints(
                (3, 2),
                "x",
                Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            )
            .unwrap();
        assert_eq!(x.to_vec2::<f32>().unwrap(), x2.to_vec2::<f32>().unwrap());
        assert_eq!(y.to_vec1::<f32>().unwrap(), y2.to_vec1::<f32>().unwrap());
        let c = VarMap::new();
        let vb = seeded_var_builder(&c, 6, DType::F32, &Device::Cpu);
        let x3 = vb
            .get_with_hints(
                (3, 2),
                "x",
                Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            )
            .unwrap();
        assert_ne!(x.to_vec2::<f32>().unwrap(), x3.to_vec2::<f32>().unwrap());
        // Variables land in the map, trainable.
        assert_eq!(a.all_vars().len(), 2);
    }
}
