//! Opening a plugin library, checking its declaration, registering it.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use super::{
    PluginDeclaration, ABI_VERSION, CANDLE_VERSION, CORE_VERSION, DECLARATION_SYMBOL,
    HOST_ALLOCATOR, RUSTC_VERSION,
};
use crate::registry::{Origin, Registry, RegistryError};

/// Why a plugin did not load. Every variant names the file.
#[derive(Debug, thiserror::Error)]
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
    #[error("plugin {path}: built for plugin ABI {plugin}, this rediff speaks ABI {host}; rebuild the plugin against this rediff-core")]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's ABI version.
        plugin: u32,
        /// This build's.
        host: u32,
    },
    /// Built with another compiler.
    #[error("plugin {path}: built with {plugin}, this rediff is built with {host}; rebuild the plugin with the same compiler")]
    CompilerMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's `rustc --version`.
        plugin: String,
        /// This build's.
        host: String,
    },
    /// Built against another `rediff-core`.
    #[error("plugin {path}: built against rediff-core {plugin}, this rediff is built with rediff-core {host}; rebuild the plugin")]
    InterfaceMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's `rediff-core` version.
        plugin: String,
        /// This build's.
        host: String,
    },
    /// Built against another candle.
    #[error("plugin {path}: built with candle {plugin}, this rediff is built with candle {host}; rebuild the plugin")]
    CandleMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's candle version.
        plugin: String,
        /// This build's.
        host: String,
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

/// A plugin that loaded.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    /// The plugin's name.
    pub name: String,
    /// The file.
    pub path: PathBuf,
}

fn c_string(ptr: *const std::ffi::c_char) -> String {
    if ptr.is_null() {
        return "(none)".into();
    }
    // SAFETY: only called after the ABI version matched, so the field is a
    // pointer to a NUL-terminated static string.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// Loads the plugin at `path` into `registry`; see the [module docs](super).
pub fn load_plugin(registry: &mut Registry, path: &Path) -> Result<LoadedPlugin, PluginError> {
    let path = path.to_path_buf();
    if !path.is_file() {
        return Err(PluginError::Missing { path });
    }
    // SAFETY: loading runs the library's initialisers: native code the user
    // chose to run by naming the file.
    let library =
        unsafe { libloading::Library::new(&path) }.map_err(|e| PluginError::NotAPlugin {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    // SAFETY: the symbol is only read as a pointer here; what it points to is
    // checked field by field, the ABI version first.
    let declaration: &PluginDeclaration = unsafe {
        let symbol = library
            .get::<*const PluginDeclaration>(DECLARATION_SYMBOL.as_bytes())
            .map_err(|_| PluginError::NotAPlugin {
                path: path.clone(),
                reason: format!(
                    "no `{DECLARATION_SYMBOL}` symbol; declare it with rediff_core::export_plugin!"
                ),
            })?;
        let ptr: *const PluginDeclaration = *symbol;
        if ptr.is_null() {
            return Err(PluginError::NotAPlugin {
                path,
                reason: "null declaration".into(),
            });
        }
        let abi = std::ptr::read(std::ptr::addr_of!((*ptr).abi_version));
        if abi != ABI_VERSION {
            return Err(PluginError::AbiMismatch {
                path,
                plugin: abi,
                host: ABI_VERSION,
            });
        }
        &*ptr
    };
    let rustc = c_string(declaration.rustc_version);
    if rustc != RUSTC_VERSION {
        return Err(PluginError::CompilerMismatch {
            path,
            plugin: rustc,
            host: RUSTC_VERSION.into(),
        });
    }
    let core = c_string(declaration.core_version);
    if core != CORE_VERSION {
        return Err(PluginError::InterfaceMismatch {
            path,
            plugin: core,
            host: CORE_VERSION.into(),
        });
    }
    let candle = c_string(declaration.candle_version);
    if candle != CANDLE_VERSION {
        return Err(PluginError::CandleMismatch {
            path,
            plugin: candle,
            host: CANDLE_VERSION.into(),
        });
    }
    // SAFETY: versions match; the table is a static of this binary.
    unsafe { (declaration.set_allocator)(&HOST_ALLOCATOR) };
    let origin = Origin::Library(path.display().to_string());
    // Objects made by the library may outlive the registry: never unload it.
    std::mem::forget(library);
    // Panics are caught on the plugin's side (`create_guarded`,
    // `CatchingPlugin`): one unwinding into this binary's runtime would abort.
    let plugin = (declaration.create)().map_err(|message| PluginError::Panicked {
        path: path.clone(),
        message,
    })?;
    let name = plugin.name().to_string();
    match registry.add_plugin_from(plugin.as_ref(), origin) {
        Ok(()) => Ok(LoadedPlugin { name, path }),
        Err(RegistryError::Panicked { message, .. }) => {
            Err(PluginError::Panicked { path, message })
        }
        Err(source) => Err(PluginError::Registry { path, source }),
    }
}
