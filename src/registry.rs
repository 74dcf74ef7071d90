//! The registry of built-in components.

use rediff_core::Registry;

/// Every built-in plugin, registered the way a third-party plugin would be.
pub fn builtin() -> anyhow::Result<Registry> {
    let mut registry = Registry::new();
    registry.add_plugin(&rediff_standard::StandardPlugin)?;
    registry.add_plugin(&rediff_shapes::ShapesPlugin)?;
    registry.add_plugin(&rediff_tiny_vlm::TinyVlmPlugin)?;
    Ok(registry)
}
