//! # rediff-builtins
//!
//! rediff's default plugin group: every built-in component, registered
//! through the same [`Plugin`] / [`Registrar`](rediff_api::Registrar) path
//! a third-party library uses. The binary and the tests build their
//! registry here, so the list exists once.
//!
//! | plugin | components |
//! |---|---|
//! | `standard` | schedules, synthesizers, refinement policies |
//! | `shapes` | the synthetic captioning task and its scorer |
//! | `tiny-vlm` | the small trainable VLM |
//! | `llada-v` | LLaDA-V / ReDiff checkpoints |
//! | `openai` | experts behind an OpenAI-compatible API |
//! | `model` | an expert that is a local rediff model |
//! | `judge` | caption metrics scored by an LLM judge (CLAIR, factuality, coverage, CAPTURE) |

use std::path::Path;

use rediff_api::registry::RegistryError;
use rediff_api::{Plugin, Registry};
use rediff_dynamic::{load_plugin, LoadedPlugin, PluginError};

/// The built-in plugins, in registration order.
pub fn plugins() -> Vec<Box<dyn Plugin>> {
    vec![
        Box::new(rediff_standard::StandardPlugin),
        Box::new(rediff_shapes::ShapesPlugin),
        Box::new(rediff_tiny_vlm::TinyVlmPlugin),
        Box::new(rediff_llada_v::LladaVPlugin),
        Box::new(rediff_expert_openai::OpenAiPlugin),
        Box::new(rediff_expert_model::ModelExpertPlugin),
        Box::new(rediff_judge::JudgePlugin),
    ]
}

/// Why a registry could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A built-in failed to register (a bug: the tests build this registry).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A plugin library failed to load; the error names the file.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// A registry with every built-in component.
pub fn registry() -> Result<Registry, RegistryError> {
    let mut registry = Registry::new();
    for plugin in plugins() {
        registry.add_plugin(plugin.as_ref())?;
    }
    Ok(registry)
}

/// The built-ins plus every plugin library in `paths`, loaded in order.
/// Nothing is loaded from anywhere else.
pub fn registry_with<P: AsRef<Path>>(
    paths: impl IntoIterator<Item = P>,
) -> Result<(Registry, Vec<LoadedPlugin>), BuildError> {
    let mut registry = registry()?;
    let mut loaded = Vec::new();
    for path in paths {
        let plugin = load_plugin(&mut registry, path.as_ref())?;
        tracing::info!(plugin = %plugin.name, path = %plugin.path.display(), "plugin loaded");
        loaded.push(plugin);
    }
    Ok((registry, loaded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rediff_api::ComponentKind;

    #[test]
    fn every_builtin_registers_once_and_twice_is_refused() {
        let mut registry = registry().unwrap();
        for (kind, name) in [
            (ComponentKind::Schedule, "linear"),
            (ComponentKind::Data, "shapes"),
            (ComponentKind::Model, "tiny-vlm"),
            (ComponentKind::Model, "llada-v"),
            (ComponentKind::Expert, "openai"),
            (ComponentKind::Expert, "model"),
            (ComponentKind::Scorer, "judge"),
        ] {
            assert!(
                registry.names(kind).iter().any(|n| n == name),
                "{kind:?} {name}"
            );
        }
        let err = registry
            .add_plugin(&rediff_standard::StandardPlugin)
            .unwrap_err();
        assert!(err.to_string().contains("standard"), "{err}");
    }

    #[test]
    fn a_missing_library_is_named() {
        let Err(err) = registry_with(["/nonexistent/libx.so"]) else {
            panic!("a missing library loaded")
        };
        assert!(err.to_string().contains("/nonexistent/libx.so"), "{err}");
    }
}
