//! # rediff-formats
//!
//! Files in other tools' formats, read and written without loss:
//!
//! - [`reference`]: the PyTorch reference's training and prediction files
//!   (LLaVA conversations, ViCrit samples, `{image: caption}` predictions);
//! - [`tokenizer`]: Hugging Face `tokenizer.json` behind rediff's
//!   [`TextTokenizer`](rediff_api::TextTokenizer);
//! - [`image`]: PNG and JPEG files as [`SourceImage`](rediff_api::image::SourceImage)s,
//!   with the mode Pillow would open them in.

pub mod image;
pub mod reference;
pub mod tokenizer;

pub use image::{load_image, load_rgb, rgb_image, source_from_rgb};
pub use tokenizer::HfTokenizer;
