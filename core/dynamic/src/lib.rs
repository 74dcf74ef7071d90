//! # rediff-dynamic
//!
//! Plugins loaded at run time from shared libraries (`cdylib`s).
//!
//! A plugin exports one [`PluginDeclaration`] (written by
//! [`rediff_api::export_plugin!`]). [`load_plugin`] reads its ABI version
//! first and its build [`Fingerprint`] next (through a C-ABI function), and
//! trusts nothing else in the library until both equal this build's: Rust
//! has no stable ABI, so trait objects, candle tensors and JSON values may
//! only cross between builds with the same compiler, target, `rediff-api`,
//! boundary-crate versions and features. A mismatch names every fact that
//! differs. Then the loader points the plugin's allocator at the host's (so
//! memory may be freed on either side), creates the plugin and registers it
//! through the same [`Registrar`](rediff_api::Registrar) built-ins use,
//! recording the file as the components' origin.
//!
//! A plugin is native code running with the user's privileges: it is only
//! ever loaded from a path the user named. Loaded libraries are never
//! unloaded, so objects they created stay valid wherever they live.

mod allocator;
mod error;

use std::path::{Path, PathBuf};

use rediff_api::__private::{Fingerprint, PluginDeclaration, ABI_VERSION, DECLARATION_SYMBOL};
use rediff_api::registry::{Origin, Registry, RegistryError};

pub use allocator::HOST_ALLOCATOR;
pub use error::PluginError;

/// A plugin that loaded.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    /// The plugin's name.
    pub name: String,
    /// The file.
    pub path: PathBuf,
}

/// The fingerprint a declaration reports, through its C-ABI function.
fn fingerprint_of(declaration: &PluginDeclaration) -> Fingerprint {
    let mut buf = vec![0u8; 4096];
    // SAFETY: the function is the plugin's `write_fingerprint` (the ABI
    // version matched, so the field is where this build expects it); it
    // writes at most `cap` bytes.
    let n = unsafe { (declaration.fingerprint)(buf.as_mut_ptr(), buf.len()) };
    if n > buf.len() {
        buf.resize(n, 0);
        // SAFETY: as above, with a buffer of the full length.
        unsafe { (declaration.fingerprint)(buf.as_mut_ptr(), buf.len()) };
    }
    buf.truncate(n);
    Fingerprint::parse(&String::from_utf8_lossy(&buf))
}

/// Loads the plugin at `path` into `registry`; see the [crate docs](crate).
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
                    "no `{DECLARATION_SYMBOL}` symbol; declare it with rediff_api::export_plugin!"
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
    let differences = fingerprint_of(declaration).differences(&Fingerprint::this_build());
    if !differences.is_empty() {
        return Err(PluginError::FingerprintMismatch { path, differences });
    }
    // SAFETY: the builds match; the table is a static of this binary.
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
