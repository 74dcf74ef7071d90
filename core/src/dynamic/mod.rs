//! Plugins loaded at run time from shared libraries (`cdylib`s).
//!
//! A plugin exports one [`PluginDeclaration`] under the symbol
//! `REDIFF_PLUGIN_DECLARATION`; [`export_plugin!`](crate::export_plugin)
//! writes it. The loader reads the declaration's ABI version first and the
//! compiler, `rediff-core` and candle versions next, and trusts nothing else
//! in the library until all four match this build: Rust has no stable ABI,
//! so trait objects may only cross between identical compilers and crates.
//! Then it points the plugin's allocator at the host's (so memory may be
//! freed on either side), creates the [`Plugin`](crate::Plugin) and
//! registers it through the same [`Registrar`](crate::Registrar) built-ins
//! use, recording the file as the components' origin.
//!
//! A plugin is native code running with the user's privileges: it is only
//! ever loaded from a path the user named. Loaded libraries are never
//! unloaded, so objects they created stay valid wherever they live.

mod allocator;
mod guard;
mod loader;

pub use allocator::{set_host_allocator, HostAllocator, PluginAllocator, HOST_ALLOCATOR};
pub use guard::{panic_message, Guard};
pub use loader::{load_plugin, LoadedPlugin, PluginError};

use std::ffi::c_char;

/// Version of [`PluginDeclaration`]'s layout and of the loading protocol.
pub const ABI_VERSION: u32 = 1;
/// The compiler this build of `rediff-core` was made with (`rustc --version`).
pub const RUSTC_VERSION: &str = env!("REDIFF_RUSTC_VERSION");
/// This `rediff-core`'s version.
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The candle version resolved for this build (tensors cross the boundary).
pub const CANDLE_VERSION: &str = env!("REDIFF_CANDLE_VERSION");
/// The exported symbol's name.
pub const DECLARATION_SYMBOL: &str = "REDIFF_PLUGIN_DECLARATION";

/// NUL-terminated copies for the declaration.
#[doc(hidden)]
pub const RUSTC_VERSION_C: &str = concat!(env!("REDIFF_RUSTC_VERSION"), "\0");
#[doc(hidden)]
pub const CORE_VERSION_C: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
#[doc(hidden)]
pub const CANDLE_VERSION_C: &str = concat!(env!("REDIFF_CANDLE_VERSION"), "\0");

/// What a plugin library exports. `abi_version` comes first and keeps its
/// place in every ABI version, so a mismatch is detected before any other
/// field is read.
#[repr(C)]
pub struct PluginDeclaration {
    /// [`ABI_VERSION`] of the interface the plugin was built against.
    pub abi_version: u32,
    /// NUL-terminated [`RUSTC_VERSION`] of the plugin's build.
    pub rustc_version: *const c_char,
    /// NUL-terminated [`CORE_VERSION`] of the plugin's build.
    pub core_version: *const c_char,
    /// NUL-terminated [`CANDLE_VERSION`] of the plugin's build.
    pub candle_version: *const c_char,
    /// Makes the plugin allocate through the host's allocator.
    pub set_allocator: unsafe extern "C" fn(*const HostAllocator),
    /// Creates the plugin (Rust ABI: called only once the versions match).
    /// Panics are caught on the plugin's side and returned as the message.
    pub create: fn() -> Result<Box<dyn crate::Plugin>, String>,
}

/// Wraps a plugin so a panic in its `build` is caught on the plugin's side
/// (see [`guard`]); what [`export_plugin!`](crate::export_plugin) creates.
pub struct CatchingPlugin(pub Box<dyn crate::Plugin>);

impl crate::Plugin for CatchingPlugin {
    fn build(
        &self,
        registrar: &mut crate::Registrar<'_>,
    ) -> Result<(), crate::registry::RegistryError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.build(registrar)))
            .unwrap_or_else(|payload| {
                Err(crate::registry::RegistryError::Panicked {
                    plugin: self.0.name().to_string(),
                    message: panic_message(payload.as_ref()),
                })
            })
    }

    fn name(&self) -> &str {
        self.0.name()
    }

    fn requires(&self) -> Vec<String> {
        self.0.requires()
    }
}

/// Creates a plugin on the plugin's side of the boundary, catching panics
/// (used by [`export_plugin!`](crate::export_plugin)).
pub fn create_guarded(
    make: impl FnOnce() -> Box<dyn crate::Plugin>,
) -> Result<Box<dyn crate::Plugin>, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(make))
        .map(|plugin| Box::new(CatchingPlugin(plugin)) as Box<dyn crate::Plugin>)
        .map_err(|payload| panic_message(payload.as_ref()))
}

// The pointers are to static strings.
unsafe impl Sync for PluginDeclaration {}

/// Declares a plugin library: the [`PluginDeclaration`] the loader reads
/// and the allocator that forwards to the host's. Takes an expression that
/// makes the [`Plugin`](crate::Plugin):
///
/// ```ignore
/// rediff_core::export_plugin!(CosinePlugin);
/// ```
///
/// The crate must be a `cdylib` and must not define another global allocator.
#[macro_export]
macro_rules! export_plugin {
    ($make:expr) => {
        #[global_allocator]
        static __REDIFF_PLUGIN_ALLOCATOR: $crate::dynamic::PluginAllocator =
            $crate::dynamic::PluginAllocator;

        #[no_mangle]
        #[used]
        pub static REDIFF_PLUGIN_DECLARATION: $crate::dynamic::PluginDeclaration =
            $crate::dynamic::PluginDeclaration {
                abi_version: $crate::dynamic::ABI_VERSION,
                rustc_version: $crate::dynamic::RUSTC_VERSION_C.as_ptr()
                    as *const ::std::ffi::c_char,
                core_version: $crate::dynamic::CORE_VERSION_C.as_ptr() as *const ::std::ffi::c_char,
                candle_version: $crate::dynamic::CANDLE_VERSION_C.as_ptr()
                    as *const ::std::ffi::c_char,
                set_allocator: $crate::dynamic::set_host_allocator,
                create: {
                    fn __rediff_create_plugin() -> ::std::result::Result<
                        ::std::boxed::Box<dyn $crate::Plugin>,
                        ::std::string::String,
                    > {
                        $crate::dynamic::create_guarded(|| ::std::boxed::Box::new($make))
                    }
                    __rediff_create_plugin
                },
            };
    };
}
