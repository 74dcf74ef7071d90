//! Drawing scenes into RGB images.

use image::{Rgb, RgbImage};
use rand::Rng;

use crate::scene::{Scene, SceneObject};

/// Image geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenderOptions {
    /// Square image side in pixels (three equal columns).
    pub image_size: u32,
    /// Amplitude of uniform pixel noise added everywhere.
    pub noise: u8,
    /// Share (0..=1) of the free space in its cell by which an object's
    /// centre may move at random.
    pub jitter: f32,
}

fn color_rgb(name: &str) -> [u8; 3] {
    match name {
        "red" => [220, 40, 40],
        "green" => [40, 180, 60],
        "blue" => [50, 90, 230],
        "yellow" => [230, 210, 40],
        _ => [255, 255, 255],
    }
}

fn inside(shape: &str, dx: f32, dy: f32, half: f32) -> bool {
    match shape {
        "circle" => dx * dx + dy * dy <= half * half,
        "square" => dx.abs() <= half * 0.85 && dy.abs() <= half * 0.85,
        // Upward triangle: apex at top, base at bottom.
        "triangle" => {
            let t = (dy + half) / (2.0 * half); // 0 at top, 1 at bottom
            (0.0..=1.0).contains(&t) && dx.abs() <= t * half
        }
        _ => false,
    }
}

fn draw_object<R: Rng + ?Sized>(
    img: &mut RgbImage,
    obj: &SceneObject,
    opts: &RenderOptions,
    rng: &mut R,
) {
    let s = opts.image_size as f32;
    let col_w = s / 3.0;
    let col = Scene::column(&obj.position).unwrap_or(0) as f32;
    let half = if obj.size == "big" {
        col_w * 0.40
    } else {
        col_w * 0.24
    };
    let jitter = (col_w * 0.5 - half - 1.0).max(0.0) * opts.jitter.clamp(0.0, 1.0);
    let cx = col_w * (col + 0.5) + rng.random_range(-jitter..=jitter);
    let cy = s * 0.5 + rng.random_range(-jitter..=jitter);
    let rgb = color_rgb(&obj.color);
    for y in 0..opts.image_size {
        for x in 0..opts.image_size {
            let dx = x as f32 + 0.5 - cx;
            let dy = y as f32 + 0.5 - cy;
            if inside(&obj.shape, dx, dy, half) {
                img.put_pixel(x, y, Rgb(rgb));
            }
        }
    }
}

/// Renders a scene on a dark background with mild noise.
pub fn render<R: Rng + ?Sized>(scene: &Scene, opts: &RenderOptions, rng: &mut R) -> RgbImage {
    let mut img = RgbImage::from_pixel(opts.image_size, opts.image_size, Rgb([24, 24, 28]));
    for obj in &scene.objects {
        draw_object(&mut img, obj, opts, rng);
    }
    if opts.noise > 0 {
        let n = i16::from(opts.noise);
        for p in img.pixels_mut() {
            for c in p.0.iter_mut() {
                *c = (i16::from(*c) + rng.random_range(-n..=n)).clamp(0, 255) as u8;
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn objects_land_in_their_column_with_their_colour() {
        let scene = Scene {
            objects: vec![SceneObject {
                size: "big".into(),
                color: "red".into(),
                shape: "square".into(),
                position: "right".into(),
            }],
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let opts = RenderOptions {
            image_size: 48,
            noise: 0,
            jitter: 1.0,
        };
        let img = render(&scene, &opts, &mut rng);
        let red = |x: u32, y: u32| img.get_pixel(x, y).0 == [220, 40, 40];
        let count = |x0: u32, x1: u32| {
            (x0..x1)
                .flat_map(|x| (0..48).map(move |y| (x, y)))
                .filter(|&(x, y)| red(x, y))
                .count()
        };
        assert_eq!(count(0, 32), 0);
        assert!(count(32, 48) > 60);
    }
}
