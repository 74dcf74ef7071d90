//! Decoding image files into [`SourceImage`]s: the one path real and
//! synthetic data share. PNGs keep the mode Pillow would open them in
//! (read from the IHDR chunk), since a backend reproducing Pillow needs it.

use std::path::Path;

use image::{DynamicImage, RgbImage};
use rediff_api::image::{SourceImage, StoredMode};
use rediff_api::{Error, Result};

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

/// Converts a decoded image, with the stored mode from the PNG header when
/// there is one (a `tRNS` colour key becomes no alpha band, as in Pillow).
fn from_decoded(img: DynamicImage, png: Option<PngHeader>) -> SourceImage {
    let mode = match png {
        Some(h) => match h.color_type {
            0 if h.bit_depth == 1 => StoredMode::Bilevel,
            0 => StoredMode::Gray,
            3 => StoredMode::Palette,
            4 => StoredMode::GrayAlpha,
            6 => StoredMode::Rgba,
            _ => StoredMode::Rgb,
        },
        None => match (img.color().has_color(), img.color().has_alpha()) {
            (false, false) => StoredMode::Gray,
            (false, true) => StoredMode::GrayAlpha,
            (true, false) => StoredMode::Rgb,
            (true, true) => StoredMode::Rgba,
        },
    };
    let alpha = matches!(mode, StoredMode::GrayAlpha | StoredMode::Rgba)
        .then(|| img.to_rgba8().pixels().map(|p| p.0[3]).collect());
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    SourceImage::new(w, h, rgb.into_raw(), alpha, mode)
}

/// An RGB image buffer as a [`SourceImage`].
pub fn source_from_rgb(rgb: RgbImage) -> SourceImage {
    let (w, h) = rgb.dimensions();
    SourceImage::from_rgb(w, h, rgb.into_raw())
}

/// The colours of a [`SourceImage`] as an `image` buffer.
pub fn rgb_image(src: &SourceImage) -> RgbImage {
    let (w, h) = src.dimensions();
    RgbImage::from_raw(w, h, src.rgb().to_vec()).expect("a SourceImage's buffer fits its size")
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
    Ok(from_decoded(img, png_header(&bytes)))
}

/// Opens an image file as RGB, naming the file on any failure.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    Ok(rgb_image(&load_image(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::GrayImage;

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
        assert_eq!(got.alpha().unwrap()[5], 200);
        assert_eq!(got.pixel(2, 1), [9, 8, 7]);
        let gray = dir.path().join("g.png");
        GrayImage::from_pixel(2, 2, image::Luma([77]))
            .save(&gray)
            .unwrap();
        let got = load_image(&gray).unwrap();
        assert_eq!((got.mode(), got.alpha()), (StoredMode::Gray, None));
        assert_eq!(got.pixel(1, 1), [77, 77, 77]);
    }
}
