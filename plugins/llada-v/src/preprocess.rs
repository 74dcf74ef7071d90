//! Image preprocessing the checkpoint expects: the whole image squashed to
//! one tile, then the image resized onto its `anyres` canvas (black
//! padding, centred) and cut into tiles row by row; every tile scaled to
//! `[0, 1]` and normalised with mean 0.5 and std 0.5 (SigLIP's processor).
//!
//! Resizing is bicubic (Catmull-Rom) like the reference's PIL `BICUBIC`;
//! the two round differently, so pixels may differ by one level.

use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{Rgb, RgbImage};

use crate::anyres::{resize_and_pad_plan, AnyresLayout};

/// The `1 + columns x rows` tiles of `image` for `layout`.
///
/// # Shapes
/// - returns: `[tiles, 3, tile, tile]` (f32, normalised to `[-1, 1]`)
pub fn image_tiles(
    image: &RgbImage,
    layout: &AnyresLayout,
    tile: u32,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let size = image.dimensions();
    let base = image::imageops::resize(image, tile, tile, FilterType::CatmullRom);
    let ((nw, nh), (x, y)) = resize_and_pad_plan(size, layout.canvas);
    let resized = image::imageops::resize(image, nw, nh, FilterType::CatmullRom);
    let mut canvas = RgbImage::from_pixel(layout.canvas.0, layout.canvas.1, Rgb([0, 0, 0]));
    image::imageops::replace(&mut canvas, &resized, i64::from(x), i64::from(y));
    let side = tile as usize;
    let mut data = Vec::with_capacity(layout.num_tiles() * 3 * side * side);
    push_tile(&mut data, &base, 0, 0, tile);
    for row in 0..layout.grid.1 {
        for col in 0..layout.grid.0 {
            push_tile(&mut data, &canvas, col * tile, row * tile, tile);
        }
    }
    Tensor::from_vec(data, (layout.num_tiles(), 3, side, side), device)
}

/// Appends one `tile x tile` crop at `(x0, y0)` in CHW order, normalised.
fn push_tile(out: &mut Vec<f32>, img: &RgbImage, x0: u32, y0: u32, tile: u32) {
    for c in 0..3 {
        for y in y0..y0 + tile {
            for x in x0..x0 + tile {
                let v = f32::from(img.get_pixel(x, y).0[c]) / 255.0;
                out.push((v - 0.5) / 0.5);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anyres::GridPinpoints;

    #[test]
    fn tiles_cover_the_padded_canvas_row_by_row() {
        // 200x100 red image on 2x1 tiles of 28 px (candidates 28x28, 56x28):
        // canvas 56x28, resized to 56x28 exactly (no padding).
        let img = RgbImage::from_pixel(200, 100, Rgb([255, 0, 0]));
        let cands = GridPinpoints::List(vec![[28, 28], [56, 28]])
            .resolutions(28)
            .unwrap();
        let layout = AnyresLayout::new((200, 100), 28, 14, &cands, 4);
        assert_eq!(layout.grid, (2, 1));
        let t = image_tiles(&img, &layout, 28, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[3, 3, 28, 28]);
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Red channel 1.0, green and blue -1.0 everywhere.
        let plane = 28 * 28;
        for tile in 0..3 {
            let o = tile * 3 * plane;
            assert!(v[o..o + plane].iter().all(|&x| (x - 1.0).abs() < 1e-6));
            assert!(v[o + plane..o + 3 * plane]
                .iter()
                .all(|&x| (x + 1.0).abs() < 1e-6));
        }
    }

    #[test]
    fn padding_is_black_and_centred() {
        // A white 10x40 image on a 28x28 canvas: resized to 7x28, pasted at x = 10.
        let img = RgbImage::from_pixel(10, 40, Rgb([255, 255, 255]));
        let cands = vec![(28, 28)];
        let layout = AnyresLayout::new((10, 40), 28, 14, &cands, 4);
        let t = image_tiles(&img, &layout, 28, &Device::Cpu).unwrap();
        let grid_tile = t.get(1).unwrap().get(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(grid_tile[14][9], -1.0);
        assert_eq!(grid_tile[14][10], 1.0);
        assert_eq!(grid_tile[14][16], 1.0);
        assert_eq!(grid_tile[14][17], -1.0);
    }
}
