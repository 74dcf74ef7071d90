//! Images as components receive them: plain pixels plus what the file
//! stored beyond its RGB values (an alpha band, a palette or a bilevel
//! mode), because a backend that reproduces a reference's preprocessing
//! (Pillow resizes palette images by nearest neighbour and premultiplies
//! alpha) needs it. Decoding files is `rediff_formats::load_image`.

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

/// A decoded image: colours as `convert("RGB")` gives them (row-major RGB
/// bytes), the alpha band when the file has one (not a PNG `tRNS` colour
/// key, which Pillow keeps aside), and the stored mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceImage {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
    alpha: Option<Vec<u8>>,
    mode: StoredMode,
}

impl SourceImage {
    /// An image from row-major RGB bytes (`3 * width * height` of them),
    /// with an alpha band of `width * height` bytes for `LA` / `RGBA` modes.
    ///
    /// # Panics
    /// When the buffers do not match the size, or alpha is given for a mode
    /// without it (or missing for one with it).
    pub fn new(
        width: u32,
        height: u32,
        rgb: Vec<u8>,
        alpha: Option<Vec<u8>>,
        mode: StoredMode,
    ) -> Self {
        let n = width as usize * height as usize;
        assert_eq!(rgb.len(), 3 * n, "RGB buffer of a {width}x{height} image");
        let wants_alpha = matches!(mode, StoredMode::GrayAlpha | StoredMode::Rgba);
        assert_eq!(alpha.is_some(), wants_alpha, "alpha band for mode {mode:?}");
        if let Some(a) = &alpha {
            assert_eq!(a.len(), n, "alpha band of a {width}x{height} image");
        }
        Self {
            width,
            height,
            rgb,
            alpha,
            mode,
        }
    }

    /// An RGB image (what synthetic data renders).
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Self {
        Self::new(width, height, rgb, None, StoredMode::Rgb)
    }

    /// Row-major RGB bytes.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// The alpha band (row-major), for `LA` and `RGBA` files.
    pub fn alpha(&self) -> Option<&[u8]> {
        self.alpha.as_deref()
    }

    /// The mode the file stored.
    pub fn mode(&self) -> StoredMode {
        self.mode
    }

    /// `(width, height)`.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The RGB value at `(x, y)`.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = 3 * (y as usize * self.width as usize + x as usize);
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_are_row_major_and_sizes_are_checked() {
        let img = SourceImage::from_rgb(2, 1, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(img.pixel(1, 0), [4, 5, 6]);
        assert_eq!(img.dimensions(), (2, 1));
        let bad = std::panic::catch_unwind(|| SourceImage::from_rgb(2, 2, vec![0; 3]));
        assert!(bad.is_err());
        let rgba = SourceImage::new(1, 1, vec![9, 8, 7], Some(vec![128]), StoredMode::Rgba);
        assert_eq!(rgba.alpha(), Some(&[128u8][..]));
    }
}
