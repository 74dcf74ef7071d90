//! The `mlp2x_gelu` projector: vision features into the LM's embedding
//! space (`Linear -> GELU (erf) -> Linear`), stored as `model.mm_projector.{0,2}`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

/// Two linear layers with an exact GELU between them.
#[derive(Debug, Clone)]
pub struct MlpGeluProjector {
    fc0: Linear,
    fc2: Linear,
}

impl MlpGeluProjector {
    /// `mm_projector.0` (`vision -> hidden`) and `mm_projector.2` (`hidden -> hidden`).
    pub fn new(vision: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc0: linear(vision, hidden, vb.pp("0"))?,
            fc2: linear(hidden, hidden, vb.pp("2"))?,
        })
    }

    /// # Shapes
    /// - `x`: `[..., vision]` -> `[..., hidden]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc0.forward(x)?.gelu_erf()?)
    }
}
