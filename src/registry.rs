//! The registry: the built-in plugin group plus the plugin libraries the
//! user named.

use std::path::PathBuf;

use rediff_api::Registry;

/// The built-ins plus every plugin library in `paths`, loaded in order.
/// Nothing is loaded from anywhere else.
pub fn with_plugins<'p>(paths: impl IntoIterator<Item = &'p PathBuf>) -> anyhow::Result<Registry> {
    Ok(rediff_builtins::registry_with(paths)?.0)
}
