//! Test fixture for the plugin loader: each feature builds a library that is
//! wrong in one way (see Cargo.toml). Without features it is a well-formed
//! plugin registering the expert `faulty-expert`.

use std::sync::Arc;

use async_trait::async_trait;
use rediff_core::expert::{
    ExpertCorrector, ExpertError, ExpertReply, ExpertRequest, ExpertVerdict,
};
use rediff_core::registry::{Plugin, Registrar, RegistryError};

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

#[cfg(not(any(
    feature = "abi",
    feature = "compiler",
    feature = "interface",
    feature = "no-declaration"
)))]
rediff_core::export_plugin!(FaultyPlugin);

#[cfg(any(feature = "abi", feature = "compiler", feature = "interface"))]
mod declaration {
    use rediff_core::dynamic::{self, PluginDeclaration};
    use std::ffi::c_char;

    const fn c(s: &'static str) -> *const c_char {
        s.as_ptr() as *const c_char
    }

    fn create() -> Result<Box<dyn rediff_core::Plugin>, String> {
        dynamic::create_guarded(|| Box::new(super::FaultyPlugin))
    }

    #[no_mangle]
    #[used]
    pub static REDIFF_PLUGIN_DECLARATION: PluginDeclaration = PluginDeclaration {
        abi_version: if cfg!(feature = "abi") {
            999
        } else {
            dynamic::ABI_VERSION
        },
        rustc_version: if cfg!(feature = "compiler") {
            c("rustc 1.0.0 (a28077b28 2015-05-13)\0")
        } else {
            c(dynamic::RUSTC_VERSION_C)
        },
        core_version: if cfg!(feature = "interface") {
            c("0.0.1-other\0")
        } else {
            c(dynamic::CORE_VERSION_C)
        },
        candle_version: c(dynamic::CANDLE_VERSION_C),
        set_allocator: dynamic::set_host_allocator,
        create,
    };
}
