//! The registry: built-in components plus the plugin libraries the user
//! named.

use std::path::PathBuf;

use rediff_core::dynamic::load_plugin;
use rediff_core::Registry;

/// Every built-in plugin, registered the way a third-party plugin would be.
pub fn builtin() -> anyhow::Result<Registry> {
    let mut registry = Registry::new();
    registry.add_plugin(&rediff_standard::StandardPlugin)?;
    registry.add_plugin(&rediff_shapes::ShapesPlugin)?;
    registry.add_plugin(&rediff_tiny_vlm::TinyVlmPlugin)?;
    registry.add_plugin(&rediff_llada_v::LladaVPlugin)?;
    registry.add_plugin(&rediff_expert_openai::OpenAiPlugin)?;
    registry.add_plugin(&rediff_expert_model::ModelExpertPlugin)?;
    Ok(registry)
}

/// The built-ins plus every plugin library in `paths`, loaded in order.
/// Nothing is loaded from anywhere else.
pub fn with_plugins<'p>(paths: impl IntoIterator<Item = &'p PathBuf>) -> anyhow::Result<Registry> {
    let mut registry = builtin()?;
    for path in paths {
        let loaded = load_plugin(&mut registry, path)?;
        tracing::info!(plugin = %loaded.name, path = %loaded.path.display(), "plugin loaded");
    }
    Ok(registry)
}
