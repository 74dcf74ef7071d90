//! Why a plugin did not load.

use std::path::PathBuf;

use rediff_api::registry::RegistryError;

/// Why a plugin did not load. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// No such file.
    #[error("plugin {path}: file not found")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Not a loadable shared library, or one without a rediff declaration.
    #[error("plugin {path}: not a rediff plugin ({reason})")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// What the dynamic loader or the symbol lookup said.
        reason: String,
    },
    /// Built against another plugin ABI.
    #[error("plugin {path}: built for plugin ABI {plugin}, this rediff speaks ABI {host}; rebuild the plugin against this rediff-api")]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's ABI version.
        plugin: u32,
        /// This build's.
        host: u32,
    },
    /// Built differently: another compiler, target, rediff-api, boundary
    /// crate version or feature set.
    #[error("plugin {path}: built differently from this rediff, so the types it would exchange may not match; rebuild it in the same workspace (same Cargo.lock, compiler and features). Differences (plugin vs rediff):\n{}", list(.differences))]
    FingerprintMismatch {
        /// The file.
        path: PathBuf,
        /// `(fact, plugin, host)` for every fact that differs.
        differences: Vec<(String, String, String)>,
    },
    /// The plugin panicked while being created or registering.
    #[error("plugin {path}: panicked while registering: {message}")]
    Panicked {
        /// The file.
        path: PathBuf,
        /// The panic message.
        message: String,
    },
    /// Registration failed (a name collision, a missing dependency).
    #[error("plugin {path}: {source}")]
    Registry {
        /// The file.
        path: PathBuf,
        /// What the registry said.
        source: RegistryError,
    },
}

fn list(differences: &[(String, String, String)]) -> String {
    differences
        .iter()
        .map(|(fact, plugin, host)| format!("  {fact}: plugin `{plugin}`, rediff `{host}`"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl PluginError {
    /// The facts that differ, for a [`FingerprintMismatch`](Self::FingerprintMismatch).
    pub fn differences(&self) -> &[(String, String, String)] {
        match self {
            PluginError::FingerprintMismatch { differences, .. } => differences,
            _ => &[],
        }
    }
}
