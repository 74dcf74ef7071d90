//! **Not part of the plugin API.** The plumbing that the loader
//! (`rediff-dynamic`), the engine and the `rediff` binary use and that
//! [`export_plugin!`](crate::export_plugin) expands to; it may change in any
//! release. A plugin author needs none of it by name.
//!
//! Here: the plugin side of dynamic loading, what a `cdylib` exports so the
//! host can check it and create it. Host-side methods of public types (the
//! registry's build and list calls, configuration spans, ...) are marked
//! `#[doc(hidden)]` where they are defined and belong to this tier too.
//!
//! A plugin exports one [`PluginDeclaration`] under the symbol
//! [`DECLARATION_SYMBOL`]; [`export_plugin!`](crate::export_plugin) writes
//! it. The host reads the declaration's ABI version first and the build
//! [`Fingerprint`] next (through a C-ABI function, so reading it is safe
//! whatever the plugin was built with), and trusts nothing else in the
//! library until both match its own: Rust has no stable ABI, so trait
//! objects and candle tensors may only cross between identical builds.

mod allocator;
mod digest;
mod fingerprint;

pub use crate::guard::panic_message;
pub use crate::topk::torch_topk_indices;
pub use allocator::{set_host_allocator, HostAllocator, PluginAllocator};
pub use digest::surface_digest;
pub use fingerprint::{write_fingerprint, Fingerprint};

/// Version of [`PluginDeclaration`]'s layout and of the loading protocol.
pub const ABI_VERSION: u32 = 2;
/// The exported symbol's name.
pub const DECLARATION_SYMBOL: &str = "REDIFF_PLUGIN_DECLARATION";

/// What a plugin library exports. `abi_version` comes first and keeps its
/// place in every ABI version, so a mismatch is detected before any other
/// field is read.
#[repr(C)]
pub struct PluginDeclaration {
    /// [`ABI_VERSION`] of the interface the plugin was built against.
    pub abi_version: u32,
    /// Writes the plugin's build [`Fingerprint`] (UTF-8) into `buf`, at most
    /// `cap` bytes, and returns its full length (C ABI).
    pub fingerprint: unsafe extern "C" fn(buf: *mut u8, cap: usize) -> usize,
    /// Makes the plugin allocate through the host's allocator.
    pub set_allocator: unsafe extern "C" fn(*const HostAllocator),
    /// Creates the plugin (Rust ABI: called only once the fingerprints
    /// match). Panics are caught on the plugin's side and returned as the
    /// message.
    pub create: fn() -> Result<Box<dyn crate::Plugin>, String>,
}

// The function pointers are to functions of the plugin, valid for its life.
unsafe impl Sync for PluginDeclaration {}

/// Wraps a plugin so a panic in its `build` is caught on the plugin's side
/// (see `crate::guard`); what [`export_plugin!`](crate::export_plugin) creates.
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

/// Declares a plugin library: the [`PluginDeclaration`] the host reads and
/// the allocator that forwards to the host's. Takes an expression that
/// makes the [`Plugin`](crate::Plugin):
///
/// ```ignore
/// rediff_api::export_plugin!(CosinePlugin);
/// ```
///
/// The crate must be a `cdylib` and must not define another global allocator.
#[macro_export]
macro_rules! export_plugin {
    ($make:expr) => {
        #[global_allocator]
        static __REDIFF_PLUGIN_ALLOCATOR: $crate::__private::PluginAllocator =
            $crate::__private::PluginAllocator;

        #[no_mangle]
        #[used]
        pub static REDIFF_PLUGIN_DECLARATION: $crate::__private::PluginDeclaration =
            $crate::__private::PluginDeclaration {
                abi_version: $crate::__private::ABI_VERSION,
                fingerprint: $crate::__private::write_fingerprint,
                set_allocator: $crate::__private::set_host_allocator,
                create: {
                    fn __rediff_create_plugin() -> ::std::result::Result<
                        ::std::boxed::Box<dyn $crate::Plugin>,
                        ::std::string::String,
                    > {
                        $crate::__private::create_guarded(|| ::std::boxed::Box::new($make))
                    }
                    __rediff_create_plugin
                },
            };
    };
}
