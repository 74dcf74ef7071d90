//! `spatial_unpad` merge of projected tile features into the image's
//! feature sequence: the grid tiles' maps joined into one map, the padding
//! rows or columns cut, the map shrunk bilinearly to about `N` tiles when
//! larger, a newline vector after every row, and the base tile in front.

use candle_core::{Result, Tensor};

use crate::anyres::AnyresLayout;

/// Weights of PyTorch's `interpolate(mode="bilinear", align_corners=False)`
/// along one axis as an `[out, in]` matrix.
pub fn bilinear_matrix(input: usize, output: usize) -> Vec<f32> {
    let scale = input as f64 / output as f64;
    let mut m = vec![0f32; output * input];
    for o in 0..output {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(input - 1);
        let i1 = (i0 + 1).min(input - 1);
        let l1 = (src - i0 as f64) as f32;
        m[o * input + i0] += 1.0 - l1;
        m[o * input + i1] += l1;
    }
    m
}

/// Merges one image's projected tile features.
///
/// # Shapes
/// - `tiles`: `[1 + rows * cols, unit^2, hidden]` (base tile first)
/// - `newline`: `[hidden]`
/// - returns: `[layout.num_features(), hidden]`
pub fn merge_tiles(tiles: &Tensor, newline: &Tensor, layout: &AnyresLayout) -> Result<Tensor> {
    let (n, per_tile, c) = tiles.dims3()?;
    let unit = layout.unit;
    let (cols, rows) = (layout.grid.0 as usize, layout.grid.1 as usize);
    if n != layout.num_tiles() || per_tile != unit * unit {
        candle_core::bail!(
            "{n} tiles of {per_tile} features, the layout needs {} of {}",
            layout.num_tiles(),
            unit * unit
        );
    }
    let base = tiles.get(0)?;
    // [rows, cols, unit, unit, C] -> [C, rows, unit, cols, unit] -> [C, H, W]
    let map = tiles
        .narrow(0, 1, n - 1)?
        .reshape((rows, cols, unit, unit, c))?
        .permute((4, 0, 2, 1, 3))?
        .contiguous()?
        .reshape((c, rows * unit, cols * unit))?;
    let w = layout.unpadded;
    let map = map.narrow(1, w.top, w.rows)?.narrow(2, w.left, w.cols)?;
    let (h2, w2) = layout.merged;
    let map = if (h2, w2) != (w.rows, w.cols) {
        let dev = map.device();
        let dtype = map.dtype();
        let mh = Tensor::from_vec(bilinear_matrix(w.rows, h2), (h2, w.rows), dev)?;
        let mw = Tensor::from_vec(bilinear_matrix(w.cols, w2), (w2, w.cols), dev)?;
        // out[c] = Mh · map[c] · Mwᵀ, in f32.
        let m = map.to_dtype(candle_core::DType::F32)?.contiguous()?;
        let m = m.broadcast_matmul(&mw.t()?)?;
        mh.broadcast_left(c)?.matmul(&m)?.to_dtype(dtype)?
    } else {
        map
    };
    let nl = newline.reshape((c, 1, 1))?.broadcast_as((c, h2, 1))?;
    let map = Tensor::cat(&[&map, &nl.to_dtype(map.dtype())?], 2)?;
    let grid = map.reshape((c, h2 * (w2 + 1)))?.t()?;
    Tensor::cat(&[&base, &grid], 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anyres::{AnyresLayout, GridPinpoints};
    use candle_core::Device;

    #[test]
    fn bilinear_weights_match_pytorch_by_hand() {
        // 4 -> 2: src = (o + 0.5) * 2 - 0.5 = 0.5, 2.5 -> halves of (0,1), (2,3).
        assert_eq!(
            bilinear_matrix(4, 2),
            vec![0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5]
        );
        // 2 -> 4: src = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (edge).
        assert_eq!(
            bilinear_matrix(2, 4),
            vec![1.0, 0.0, 0.75, 0.25, 0.25, 0.75, 0.0, 1.0]
        );
    }

    #[test]
    fn merge_orders_rows_then_newline_and_puts_the_base_first() {
        // 2x1 grid of 2x2-feature tiles (tile 28, patch 14), one channel:
        // tile k holds values 10k + (0..4).
        let cands = GridPinpoints::List(vec![[56, 28]]).resolutions(28).unwrap();
        let layout = AnyresLayout::new((56, 28), 28, 14, &cands, 4);
        assert_eq!(layout.grid, (2, 1));
        let v: Vec<f32> = (0..3)
            .flat_map(|k| (0..4).map(move |i| (10 * k + i) as f32))
            .collect();
        let tiles = Tensor::from_vec(v, (3, 4, 1), &Device::Cpu).unwrap();
        let newline = Tensor::new(&[-1f32], &Device::Cpu).unwrap();
        let out = merge_tiles(&tiles, &newline, &layout).unwrap();
        let out: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        // Base 0..3, then row 0: tile1 (10,11) tile2 (20,21) newline, row 1: 12,13,22,23, newline.
        assert_eq!(
            out,
            vec![0., 1., 2., 3., 10., 11., 20., 21., -1., 12., 13., 22., 23., -1.]
        );
        assert_eq!(out.len(), layout.num_features());
    }
}
