//! The library-wide error type. Every variant that concerns a file names it.

use std::path::PathBuf;

use crate::spec::ConfigError;

/// Result alias used throughout rediff.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised by the engine and by components.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pipeline file is malformed; the inner error carries file, line and column.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// An image is missing, unreadable or not an image.
    #[error("image {}: {message}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A checkpoint directory is missing a file, or a file is truncated or corrupt.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A JSON file (report, journal, model config) could not be parsed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        #[source]
        source: serde_json::Error,
    },
    /// Tokenizer failure (loading `tokenizer.json`, encoding or decoding).
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A component was used in a way its contract forbids (bad option value,
    /// response longer than the generation length, ...).
    #[error("{0}")]
    Invalid(String),
    /// The run was interrupted (Ctrl-C) after saving what it had.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An invalid-use error from anything displayable.
    pub fn invalid(message: impl std::fmt::Display) -> Self {
        Error::Invalid(message.to_string())
    }

    /// A checkpoint error naming the offending path.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Checkpoint {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
