//! Image preprocessing as the reference's `process_anyres_image` does it,
//! pixel for pixel (Pillow's resampling in [`crate::pil`]): the whole image
//! resized to one tile (the "base" tile), the image resized onto its
//! `anyres` canvas (black padding, centred) and cut into tiles row by row;
//! each tile converted to RGB (transformers 4.40's `convert_to_rgb`: alpha
//! dropped), scaled by 1/255 in float64, cast to float32 and normalised with
//! mean 0.5 and std 0.5 (`SigLipImageProcessor`).

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::anyres::{resize_and_pad_plan, AnyresLayout};
use crate::pil::PilImage;

/// The 8-bit RGB tiles of `image` for `layout`: the base tile, then the
/// canvas tiles row by row.
pub fn image_tiles_u8(image: &PilImage, layout: &AnyresLayout, tile: u32) -> Vec<RgbImage> {
    let base = image.resize(tile, tile).to_rgb();
    let ((nw, nh), (x, y)) = resize_and_pad_plan(image.size(), layout.canvas);
    let canvas = image
        .resize(nw, nh)
        .paste_on_black(layout.canvas.0, layout.canvas.1, x, y);
    let mut tiles = Vec::with_capacity(layout.num_tiles());
    tiles.push(base);
    for row in 0..layout.grid.1 {
        for col in 0..layout.grid.0 {
            tiles.push(
                image::imageops::crop_imm(&canvas, col * tile, row * tile, tile, tile).to_image(),
            );
        }
    }
    tiles
}

/// The normalised tiles of `image` for `layout`.
///
/// # Shapes
/// - returns: `[tiles, 3, tile, tile]` (f32, in `[-1, 1]`)
pub fn image_tiles(
    image: &PilImage,
    layout: &AnyresLayout,
    tile: u32,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let tiles = image_tiles_u8(image, layout, tile);
    let side = tile as usize;
    let mut data = Vec::with_capacity(tiles.len() * 3 * side * side);
    for t in &tiles {
        push_chw(&mut data, t);
    }
    Tensor::from_vec(data, (tiles.len(), 3, side, side), device)
}

/// One pixel level as the processor normalises it.
pub fn normalize(v: u8) -> f32 {
    let scaled = (f64::from(v) * (1.0 / 255.0)) as f32;
    (scaled - 0.5) / 0.5
}

/// Appends a tile in CHW order, normalised.
fn push_chw(out: &mut Vec<f32>, img: &RgbImage) {
    for c in 0..3 {
        out.extend(img.pixels().map(|p| normalize(p.0[c])));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anyres::GridPinpoints;
    use image::Rgb;

    #[test]
    fn tiles_cover_the_padded_canvas_row_by_row() {
        // 200x100 red image on 2x1 tiles of 28 px (candidates 28x28, 56x28):
        // canvas 56x28, resized to 56x28 exactly (no padding).
        let img = PilImage::from_rgb(&RgbImage::from_pixel(200, 100, Rgb([255, 0, 0])));
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
            assert!(v[o..o + plane].iter().all(|&x| x == 1.0));
            assert!(v[o + plane..o + 3 * plane].iter().all(|&x| x == -1.0));
        }
    }

    #[test]
    fn padding_is_black_and_centred() {
        // A white 10x40 image on a 28x28 canvas: resized to 7x28, pasted at x = 10.
        let img = PilImage::from_rgb(&RgbImage::from_pixel(10, 40, Rgb([255, 255, 255])));
        let cands = vec![(28, 28)];
        let layout = AnyresLayout::new((10, 40), 28, 14, &cands, 4);
        let t = image_tiles(&img, &layout, 28, &Device::Cpu).unwrap();
        let grid_tile = t.get(1).unwrap().get(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(grid_tile[14][9], -1.0);
        assert_eq!(grid_tile[14][10], 1.0);
        assert_eq!(grid_tile[14][16], 1.0);
        assert_eq!(grid_tile[14][17], -1.0);
    }

    #[test]
    fn normalisation_is_the_processors_float64_scale_then_float32() {
        assert_eq!(normalize(0), -1.0);
        assert_eq!(normalize(255), 1.0);
        // 77 * (1/255) rounds differently from 77 / 255 in float64.
        let expected = ((77.0f64 * (1.0 / 255.0)) as f32 - 0.5f32) / 0.5f32;
        assert_eq!(normalize(77), expected);
    }
}
