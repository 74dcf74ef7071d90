//! Loading images for the model: the one path real and synthetic data share.

use std::path::Path;

use image::RgbImage;

use crate::error::{Error, Result};

/// Opens an image file as RGB, naming the file on any failure.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    if !path.exists() {
        return Err(Error::Image {
            path: path.to_path_buf(),
            message: "file not found".into(),
        });
    }
    let reader = image::ImageReader::open(path)
        .map_err(|e| Error::Image {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?
        .with_guessed_format()
        .map_err(|e| Error::Image {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let img = reader.decode().map_err(|e| Error::Image {
        path: path.to_path_buf(),
        message: format!("cannot decode: {e}"),
    })?;
    Ok(img.to_rgb8())
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
    }
}
