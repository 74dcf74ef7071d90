//! The Pillow 10 operations LLaDA-V's image processing runs, reproduced bit
//! for bit: `Image.resize` with its default filter (bicubic, `a = -0.5`,
//! support scaled on downsampling, 22-bit fixed-point coefficients, a
//! rounded 8-bit intermediate between the horizontal and the vertical pass;
//! nearest neighbour for palette and bilevel images; premultiplied alpha for
//! `LA` / `RGBA`), the conversion to RGB (alpha dropped, as transformers 4.40's
//! `convert_to_rgb` does), and pasting onto a black canvas.
//!
//! Source: Pillow's `src/libImaging/Resample.c` (`precompute_coeffs`,
//! `ImagingResample*_8bpc`), `Geometry.c` (`ImagingScaleAffine`) and
//! `Convert.c` (`rgbA2rgba`, `rgba2rgbA`); tested pixel for pixel against
//! Pillow 10.3 in `tests/official.rs`.

use image::RgbImage;
use rediff_api::image::{SourceImage, StoredMode};

/// Bits of the fixed-point filter coefficients (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// An 8-bit image as Pillow holds it: four bytes per pixel (`R, G, B, A`;
/// grey modes repeat the level in the first three), whether the fourth is a
/// real alpha band, and whether Pillow resizes it by nearest neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PilImage {
    width: u32,
    height: u32,
    pixels: Vec<[u8; 4]>,
    alpha: bool,
    nearest: bool,
}

impl PilImage {
    /// The image a decoded file gives Pillow (`Image.open`): palette and
    /// bilevel images resize by nearest neighbour, `LA` / `RGBA` keep alpha.
    pub fn from_source(src: &SourceImage) -> Self {
        let (width, height) = src.dimensions();
        let alpha_plane = src.alpha();
        let pixels = src
            .rgb()
            .chunks_exact(3)
            .enumerate()
            .map(|(i, p)| {
                let a = alpha_plane.map_or(255, |a| a[i]);
                [p[0], p[1], p[2], a]
            })
            .collect();
        Self {
            width,
            height,
            pixels,
            alpha: alpha_plane.is_some(),
            nearest: matches!(src.mode(), StoredMode::Palette | StoredMode::Bilevel),
        }
    }

    /// An RGB image (no alpha, bicubic).
    pub fn from_rgb(rgb: &RgbImage) -> Self {
        let (width, height) = rgb.dimensions();
        Self {
            width,
            height,
            pixels: rgb
                .pixels()
                .map(|p| [p.0[0], p.0[1], p.0[2], 255])
                .collect(),
            alpha: false,
            nearest: false,
        }
    }

    /// `(width, height)`.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Whether the image carries an alpha band.
    pub fn has_alpha(&self) -> bool {
        self.alpha
    }

    /// The pixel at `(x, y)` as `[R, G, B, A]`.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 4] {
        self.pixels[(y * self.width + x) as usize]
    }

    /// `Image.resize(size)` with Pillow's default filter for the mode.
    pub fn resize(&self, width: u32, height: u32) -> Self {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        if self.nearest {
            return self.resize_nearest(width, height);
        }
        let pixels = if self.alpha {
            let pre: Vec<[u8; 4]> = self.pixels.iter().map(|&p| premultiply(p)).collect();
            let out = resample_bicubic(&pre, self.width, self.height, width, height, 4);
            out.into_iter().map(unpremultiply).collect()
        } else {
            resample_bicubic(&self.pixels, self.width, self.height, width, height, 3)
        };
        Self {
            width,
            height,
            pixels,
            alpha: self.alpha,
            nearest: false,
        }
    }

    /// `ImagingScaleAffine`: nearest neighbour with Pillow's accumulated
    /// source coordinates.
    fn resize_nearest(&self, width: u32, height: u32) -> Self {
        let coords = |inp: u32, out: u32| -> Vec<u32> {
            let step = f64::from(inp as f32) / f64::from(out);
            let mut v = step * 0.5;
            (0..out)
                .map(|_| {
                    let c = if v < 0.0 { 0 } else { (v as u32).min(inp - 1) };
                    v += step;
                    c
                })
                .collect()
        };
        let xs = coords(self.width, width);
        let ys = coords(self.height, height);
        let mut pixels = Vec::with_capacity((width * height) as usize);
        for &y in &ys {
            for &x in &xs {
                pixels.push(self.pixel(x, y));
            }
        }
        Self {
            width,
            height,
            pixels,
            alpha: self.alpha,
            nearest: true,
        }
    }

    /// `Image.convert("RGB")`: alpha dropped, grey levels repeated.
    pub fn to_rgb(&self) -> RgbImage {
        let mut raw = Vec::with_capacity(self.pixels.len() * 3);
        for p in &self.pixels {
            raw.extend_from_slice(&p[..3]);
        }
        RgbImage::from_raw(self.width, self.height, raw).expect("sized buffer")
    }

    /// `Image.new("RGB", size, (0, 0, 0)).paste(self, (x, y))`, then
    /// converted: the colour bands land on black, alpha is not applied.
    pub fn paste_on_black(&self, width: u32, height: u32, x: u32, y: u32) -> RgbImage {
        let mut canvas = RgbImage::new(width, height);
        for sy in 0..self.height {
            for sx in 0..self.width {
                let (cx, cy) = (sx + x, sy + y);
                if cx < width && cy < height {
                    let p = self.pixel(sx, sy);
                    canvas.put_pixel(cx, cy, image::Rgb([p[0], p[1], p[2]]));
                }
            }
        }
        canvas
    }
}

/// Pillow's `MULDIV255`: `a * b / 255`, rounded.
fn muldiv255(a: u8, b: u8) -> u8 {
    let t = u32::from(a) * u32::from(b) + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// `rgbA2rgba`: colour bands multiplied by alpha.
fn premultiply(p: [u8; 4]) -> [u8; 4] {
    let a = p[3];
    [
        muldiv255(p[0], a),
        muldiv255(p[1], a),
        muldiv255(p[2], a),
        a,
    ]
}

/// `rgba2rgbA`: colour bands divided by alpha (unchanged at alpha 0 and 255).
fn unpremultiply(p: [u8; 4]) -> [u8; 4] {
    let a = u32::from(p[3]);
    if a == 0 || a == 255 {
        return p;
    }
    let div = |c: u8| (255 * u32::from(c) / a).min(255) as u8;
    [div(p[0]), div(p[1]), div(p[2]), p[3]]
}

/// Pillow's bicubic kernel (`a = -0.5`).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` for one axis: per output
/// pixel, the first source pixel and its fixed-point weights.
fn coefficients(in_size: u32, out_size: u32) -> Vec<(usize, Vec<i32>)> {
    let scale = f64::from(in_size as f32) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (f64::from(xx) + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) - xmin;
            let w: Vec<f64> = (0..xmax)
                .map(|x| bicubic((x as f64 + xmin as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { k };
                    let scaled = k * f64::from(1u32 << PRECISION_BITS);
                    if k < 0.0 {
                        (scaled - 0.5) as i32
                    } else {
                        (scaled + 0.5) as i32
                    }
                })
                .collect();
            (xmin as usize, fixed)
        })
        .collect()
}

/// `clip8`: the fixed-point sum back to a byte.
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's two-pass resample (horizontal first, rounded to bytes, then
/// vertical) over the first `bands` bytes of each pixel; the rest keep 255.
fn resample_bicubic(
    src: &[[u8; 4]],
    w: u32,
    h: u32,
    out_w: u32,
    out_h: u32,
    bands: usize,
) -> Vec<[u8; 4]> {
    let vert = coefficients(h, out_h);
    let first_row = vert[0].0;
    let last_row = vert
        .last()
        .map(|(ymin, k)| ymin + k.len())
        .unwrap_or(first_row);
    let half = 1i32 << (PRECISION_BITS - 1);
    // Horizontal pass over the rows the vertical pass reads (skipped when
    // the width does not change, as Pillow does).
    let (tmp, tmp_w, row0) = if out_w != w {
        let horiz = coefficients(w, out_w);
        let mut tmp = vec![[0u8, 0, 0, 255]; out_w as usize * (last_row - first_row)];
        for y in first_row..last_row {
            let row = &src[y * w as usize..(y + 1) * w as usize];
            for (xx, (xmin, k)) in horiz.iter().enumerate() {
                let out = &mut tmp[(y - first_row) * out_w as usize + xx];
                for b in 0..bands {
                    let mut ss = half;
                    for (i, &c) in k.iter().enumerate() {
                        ss += i32::from(row[xmin + i][b]) * c;
                    }
                    out[b] = clip8(ss);
                }
            }
        }
        (tmp, out_w, first_row)
    } else {
        (src.to_vec(), w, 0)
    };
    if out_h == h {
        return tmp;
    }
    let mut out = vec![[0u8, 0, 0, 255]; (out_w * out_h) as usize];
    for (yy, (ymin, k)) in vert.iter().enumerate() {
        let ymin = ymin - row0;
        for xx in 0..tmp_w as usize {
            let px = &mut out[yy * out_w as usize + xx];
            for b in 0..bands {
                let mut ss = half;
                for (i, &c) in k.iter().enumerate() {
                    ss += i32::from(tmp[(ymin + i) * tmp_w as usize + xx][b]) * c;
                }
                px[b] = clip8(ss);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_matches_the_closed_form() {
        assert_eq!(bicubic(0.0), 1.0);
        assert_eq!(bicubic(1.0), 0.0);
        assert_eq!(bicubic(2.0), 0.0);
        assert!((bicubic(0.5) - 0.5625).abs() < 1e-15);
        assert!((bicubic(1.5) + 0.0625).abs() < 1e-15);
    }

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (i, o) in [(10, 3), (3, 10), (384, 384), (1100, 384), (7, 7)] {
            for (_, k) in coefficients(i, o) {
                let s: i32 = k.iter().sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= k.len() as i32,
                    "{i}->{o}: {s}"
                );
            }
        }
    }

    #[test]
    fn premultiplication_round_trips_opaque_and_clear_pixels() {
        assert_eq!(
            unpremultiply(premultiply([10, 200, 255, 255])),
            [10, 200, 255, 255]
        );
        assert_eq!(premultiply([10, 200, 255, 0]), [0, 0, 0, 0]);
        // 200 * 128 / 255 = 100.4 -> 100; 255 * 100 / 128 = 199.
        assert_eq!(premultiply([200, 0, 0, 128])[0], 100);
        assert_eq!(unpremultiply([100, 0, 0, 128])[0], 199);
    }

    #[test]
    fn a_flat_image_stays_flat_and_same_size_is_a_copy() {
        let img = PilImage::from_rgb(&RgbImage::from_pixel(13, 7, image::Rgb([40, 90, 200])));
        for (w, h) in [(5, 3), (40, 29), (13, 7)] {
            let r = img.resize(w, h);
            assert_eq!(r.size(), (w, h));
            assert!(r.to_rgb().pixels().all(|p| p.0 == [40, 90, 200]));
        }
    }

    #[test]
    fn nearest_picks_pixel_centres() {
        // 4 -> 2 columns: centres at 1.0 and 3.0 -> source columns 1 and 3.
        let rgb = RgbImage::from_fn(4, 1, |x, _| image::Rgb([x as u8 * 10, 0, 0]));
        let mut img = PilImage::from_rgb(&rgb);
        img.nearest = true;
        let r = img.resize(2, 1);
        assert_eq!((r.pixel(0, 0)[0], r.pixel(1, 0)[0]), (10, 30));
    }
}
