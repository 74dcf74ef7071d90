//! Loading images for the model: the one path real and synthetic data share.
//!
//! A [`SourceImage`] keeps what the file stored beyond its RGB values (an
//! alpha band, a palette or a bilevel mode), because a backend that
//! reproduces a reference's preprocessing (Pillow resizes palette images by
//! nearest neighbour and premultiplies alpha) needs it; backends that only
//! want colours read [`SourceImage::rgb`].

use std::path::Path;

use image::{DynamicImage, GrayImage, RgbImage};

use crate::error::{Error, Result};

/// How the file stored its pixels (Pillow's mode on opening it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredMode {
    /// One bit per pixel (Pillow `1`).
    Bilevel,
    /// Grey levels (`L`).
    Gray,
    /// Grey levels with alpha (`LA`).
    GrayAlpha,
    /// Colour (`RGB`).
    Rgb,
    /// Colour with alpha (`RGBA`).
    Rgba,
    /// Palette indices (`P`); colours are stored expanded.
    Palette,
}

/// A decoded image: colours as `convert("RGB")` gives them, the alpha band
/// when the file has one (not a PNG `tRNS` colour key, which Pillow keeps
/// aside), and the stored mode.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceImage {
    rgb: RgbImage,
    alpha: Option<GrayImage>,
    mode: StoredMode,
}

impl SourceImage {
    /// An RGB image (what synthetic data renders).
    pub fn from_rgb(rgb: RgbImage) -> Self {
        Self {
            rgb,
            alpha: None,
            mode: StoredMode::Rgb,
        }
    }

    /// Colours, one RGB triple per pixel.
    pub fn rgb(&self) -> &RgbImage {
        &self.rgb
    }

    /// The alpha band, for `LA` and `RGBA` files.
    pub fn alpha(&self) -> Option<&GrayImage> {
        self.alpha.as_ref()
    }

    /// The mode the file stored.
    pub fn mode(&self) -> StoredMode {
        self.mode
    }

    /// `(width, height)`.
    pub fn dimensions(&self) -> (u32, u32) {
        self.rgb.dimensions()
    }

    fn from_decoded(img: DynamicImage, png: Option<PngHeader>) -> Self {
        let has_alpha_band = img.color().has_alpha();
        let mode = match png {
            Some(h) => match h.color_type {
                0 if h.bit_depth == 1 => StoredMode::Bilevel,
                0 => StoredMode::Gray,
                3 => StoredMode::Palette,
                4 => StoredMode::GrayAlpha,
                6 => StoredMode::Rgba,
                _ => StoredMode::Rgb,
            },
            None => match (img.color().has_color(), has_alpha_band) {
                (false, false) => StoredMode::Gray,
                (false, true) => StoredMode::GrayAlpha,
                (true, false) => StoredMode::Rgb,
                (true, true) => StoredMode::Rgba,
            },
        };
        let alpha = matches!(mode, StoredMode::GrayAlpha | StoredMode::Rgba).then(|| {
            let rgba = img.to_rgba8();
            GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                image::Luma([rgba.get_pixel(x, y).0[3]])
            })
        });
        Self {
            rgb: img.to_rgb8(),
            alpha,
            mode,
        }
    }
}

/// The two IHDR fields that decide Pillow's mode for a PNG.
#[derive(Debug, Clone, Copy)]
struct PngHeader {
    bit_depth: u8,
    color_type: u8,
}

fn png_header(bytes: &[u8]) -> Option<PngHeader> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    (bytes.len() > 25 && bytes[..8] == SIGNATURE && &bytes[12..16] == b"IHDR").then(|| PngHeader {
        bit_depth: bytes[24],
        color_type: bytes[25],
    })
}

fn image_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Image {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Opens an image file (PNG or JPEG), naming the file on any failure.
pub fn load_image(path: &Path) -> Result<SourceImage> {
    if !path.exists() {
        return Err(image_error(path, "file not found"));
    }
    let bytes = std::fs::read(path).map_err(|e| image_error(path, e.to_string()))?;
    let img = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| image_error(path, e.to_string()))?
        .decode()
        .map_err(|e| image_error(path, format!("cannot decode: {e}")))?;
    Ok(SourceImage::from_decoded(img, png_header(&bytes)))
}

/// Opens an image file as RGB, naming the file on any failure.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    Ok(load_image(path)?.rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_corrupt_images_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.png");
        let err = load_rgb(&missing).unwrap_err().to_string();
        assert!(
            err.contains("nope.png") && err.contains("not found"),
            "{err}"
        );
        let corrupt = dir.path().join("bad.png");
        std::fs::write(&corrupt, b"not a png").unwrap();
        let err = load_rgb(&corrupt).unwrap_err().to_string();
        assert!(err.contains("bad.png"), "{err}");
    }

    #[test]
    fn round_trips_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        let img = RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
        img.save(&path).unwrap();
        assert_eq!(load_rgb(&path).unwrap(), img);
        assert_eq!(load_image(&path).unwrap().mode(), StoredMode::Rgb);
    }

    #[test]
    fn keeps_alpha_bands_and_the_stored_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        let img = image::RgbaImage::from_fn(3, 2, |x, _| image::Rgba([9, 8, 7, x as u8 * 100]));
        img.save(&path).unwrap();
        let got = load_image(&path).unwrap();
        assert_eq!(got.mode(), StoredMode::Rgba);
        assert_eq!(got.alpha().unwrap().get_pixel(2, 1).0, [200]);
        assert_eq!(got.rgb().get_pixel(2, 1).0, [9, 8, 7]);
        let gray = dir.path().join("g.png");
        GrayImage::from_pixel(2, 2, image::Luma([77]))
            .save(&gray)
            .unwrap();
        let got = load_image(&gray).unwrap();
        assert_eq!((got.mode(), got.alpha()), (StoredMode::Gray, None));
        assert_eq!(got.rgb().get_pixel(1, 1).0, [77, 77, 77]);
    }
}
