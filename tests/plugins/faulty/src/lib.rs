//! Test fixture for the plugin loader: each feature builds a library that is
//! wrong in one way (see Cargo.toml). Without features it is a well-formed
//! plugin registering the expert `faulty-expert`.

use std::sync::Arc;

use async_trait::async_trait;
use rediff_api::expert::{ExpertCorrector, ExpertError, ExpertReply, ExpertRequest, ExpertVerdict};
use rediff_api::registry::{Plugin, Registrar, RegistryError};

struct Expert;

#[async_trait]
impl ExpertCorrector for Expert {
    async fn review(&self, request: &ExpertRequest) -> Result<ExpertReply, ExpertError> {
        if cfg!(feature = "expert-panics") && request.draft.contains("big") {
            panic!("planted panic in a plugin expert");
        }
        Ok(ExpertVerdict::Right.into())
    }
}

/// The fixture plugin.
#[derive(Default)]
pub struct FaultyPlugin;

impl Plugin for FaultyPlugin {
    fn name(&self) -> &str {
        "faulty"
    }

    fn build(&self, r: &mut Registrar<'_>) -> Result<(), RegistryError> {
        if cfg!(feature = "register-panics") {
            panic!("planted panic in Plugin::build");
        }
        let name = if cfg!(feature = "duplicate") {
            "oracle"
        } else {
            "faulty-expert"
        };
        r.expert(name, "test fixture", |_, _| Ok(Arc::new(Expert)))
    }
}

#[cfg(not(any(feature = "abi", feature = "compiler", feature = "no-declaration")))]
rediff_api::export_plugin!(FaultyPlugin);

/// A hand-written declaration: another ABI version, or the fingerprint of
/// another compiler (the build is otherwise this one).
#[cfg(any(feature = "abi", feature = "compiler"))]
mod declaration {
    use rediff_api::__private::{
        create_guarded, set_host_allocator, Fingerprint, PluginDeclaration, ABI_VERSION,
    };

    fn create() -> Result<Box<dyn rediff_api::Plugin>, String> {
        create_guarded(|| Box::new(super::FaultyPlugin))
    }

    /// This build's fingerprint, with the compiler line of Rust 1.0.
    unsafe extern "C" fn fingerprint(buf: *mut u8, cap: usize) -> usize {
        let text = Fingerprint::this_build()
            .to_text()
            .lines()
            .map(|l| {
                if l.starts_with("rustc = ") && cfg!(feature = "compiler") {
                    "rustc = rustc 1.0.0 (a28077b28 2015-05-13)".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let n = text.len().min(cap);
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf, n);
        text.len()
    }

    #[no_mangle]
    #[used]
    pub static REDIFF_PLUGIN_DECLARATION: PluginDeclaration = PluginDeclaration {
        abi_version: if cfg!(feature = "abi") {
            999
        } else {
            ABI_VERSION
        },
        fingerprint,
        set_allocator: set_host_allocator,
        create,
    };
}
