//! The build fingerprint a plugin must share with the host: everything that
//! decides whether the types crossing the boundary (trait objects, candle
//! tensors and devices, `dyn RngCore`) have the same layout and meaning on
//! both sides.
//!
//! - the compiler (`rustc --version`), the target triple and the panic
//!   strategy;
//! - this crate's version and enabled features, and a digest of its public
//!   surface (`public-api.txt`, which the `public_api` test keeps current):
//!   a trait that gained a method has another vtable under the same version;
//! - the exact versions of the crates whose types cross the boundary
//!   (candle-core, candle-nn, half, rand_core, serde_json, toml), read by the
//!   build script from
//!   the `Cargo.lock` of the build (`REDIFF_LOCKFILE` names it when the
//!   build directory is not below the workspace);
//! - the features candle was compiled with (`cuda`, `metal`, `mkl`,
//!   `accelerate`: `cuda` changes `Device`), asked of each side's own copy of
//!   candle at run time, so feature unification cannot hide a difference.

use std::collections::BTreeMap;

include!("../../boundary.rs");

/// A build's fingerprint: named facts that must be equal on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(BTreeMap<String, String>);

impl Fingerprint {
    /// This build's fingerprint.
    pub fn this_build() -> Self {
        let mut facts = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            facts.insert(k.to_string(), v);
        };
        put("rustc", env!("REDIFF_RUSTC_VERSION").to_string());
        put("target", env!("REDIFF_TARGET").to_string());
        put("panic", env!("REDIFF_PANIC").to_string());
        put("rediff-api", env!("CARGO_PKG_VERSION").to_string());
        put("rediff-api features", api_features().join(", "));
        put("rediff-api surface", env!("REDIFF_API_SURFACE").to_string());
        let locked = env!("REDIFF_LOCKED_VERSIONS");
        for name in BOUNDARY_CRATES {
            let version = locked
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .map_or(
                    "unknown (no Cargo.lock found; set REDIFF_LOCKFILE)",
                    |(_, v)| v,
                );
            put(name, version.to_string());
        }
        put("candle features", candle_features().join(", "));
        put("serde_json features", serde_json_features().join(", "));
        put("toml features", toml_features().join(", "));
        Self(facts)
    }

    /// Parses the text form ([`Fingerprint::to_text`]).
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter_map(|l| l.split_once(" = "))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// One `key = value` line per fact, sorted by key.
    pub fn to_text(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The facts, by name.
    pub fn facts(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Every fact that differs: `(name, this side, other side)`; a fact one
    /// side lacks reads `(missing)`.
    pub fn differences(&self, other: &Self) -> Vec<(String, String, String)> {
        let missing = || "(missing)".to_string();
        let mut keys: Vec<&String> = self.0.keys().chain(other.0.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| {
                let (a, b) = (self.0.get(k), other.0.get(k));
                (a != b).then(|| {
                    (
                        k.clone(),
                        a.cloned().unwrap_or_else(missing),
                        b.cloned().unwrap_or_else(missing),
                    )
                })
            })
            .collect()
    }
}

/// This crate's enabled features.
fn api_features() -> Vec<&'static str> {
    let mut f = Vec::new();
    if cfg!(feature = "cuda") {
        f.push("cuda");
    }
    if cfg!(feature = "fingerprint-selftest") {
        f.push("fingerprint-selftest");
    }
    f
}

/// The features this side's candle was compiled with.
fn candle_features() -> Vec<&'static str> {
    use candle_core::utils;
    let mut f = Vec::new();
    if utils::cuda_is_available() {
        f.push("cuda");
    }
    if utils::metal_is_available() {
        f.push("metal");
    }
    if utils::has_mkl() {
        f.push("mkl");
    }
    if utils::has_accelerate() {
        f.push("accelerate");
    }
    f
}

/// The layout-changing features this side's serde_json was compiled with,
/// observed: `preserve_order` keeps insertion order in `Map` (else sorted),
/// `arbitrary_precision` accepts numbers beyond f64.
fn serde_json_features() -> Vec<&'static str> {
    let mut f = Vec::new();
    let mut map = serde_json::Map::new();
    map.insert("b".into(), serde_json::Value::Null);
    map.insert("a".into(), serde_json::Value::Null);
    if map.keys().next().map(String::as_str) == Some("b") {
        f.push("preserve_order");
    }
    if serde_json::from_str::<serde_json::Value>("1e400").is_ok() {
        f.push("arbitrary_precision");
    }
    f
}

/// The layout-changing features this side's toml was compiled with, observed.
fn toml_features() -> Vec<&'static str> {
    let mut table = toml::Table::new();
    table.insert("b".into(), toml::Value::Boolean(true));
    table.insert("a".into(), toml::Value::Boolean(true));
    if table.keys().next().map(String::as_str) == Some("b") {
        vec!["preserve_order"]
    } else {
        Vec::new()
    }
}

/// Writes this build's fingerprint into `buf` (at most `cap` bytes) and
/// returns its full length: the C-ABI function a [`PluginDeclaration`]
/// exports, safe to call from a host built with anything.
///
/// # Safety
/// `buf` must be valid for `cap` bytes of writes.
///
/// [`PluginDeclaration`]: super::PluginDeclaration
pub unsafe extern "C" fn write_fingerprint(buf: *mut u8, cap: usize) -> usize {
    let text = Fingerprint::this_build().to_text();
    let n = text.len().min(cap);
    if !buf.is_null() {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf, n);
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_surface_is_digested_from_the_snapshot() {
        let this = Fingerprint::this_build();
        let digest = &this.facts()["rediff-api surface"];
        assert_eq!(digest.len(), 16, "{digest}");
        assert!(digest.chars().all(|c| c.is_ascii_hexdigit()), "{digest}");
    }

    #[test]
    fn the_text_form_round_trips_and_differences_are_named() {
        let this = Fingerprint::this_build();
        assert_eq!(Fingerprint::parse(&this.to_text()), this);
        for key in [
            "rustc",
            "target",
            "rediff-api",
            "candle-core",
            "serde_json",
            "toml",
            "candle features",
            "serde_json features",
        ] {
            assert!(this.facts().contains_key(key), "{key}");
        }
        assert!(this.facts()["rustc"].starts_with("rustc "));
        for name in BOUNDARY_CRATES {
            assert!(!this.facts()[name].starts_with("unknown"), "{name}");
        }
        // This workspace builds serde_json and toml without the features
        // that change their maps.
        assert_eq!(this.facts()["serde_json features"], "");
        assert_eq!(this.facts()["toml features"], "");
        let mut other = this.clone();
        other.0.insert("candle-core".into(), "0.0.1".into());
        other.0.remove("panic");
        let d = this.differences(&other);
        assert_eq!(d.len(), 2);
        assert!(d.contains(&(
            "candle-core".into(),
            this.facts()["candle-core"].clone(),
            "0.0.1".into()
        )));
        assert!(d.iter().any(|(k, _, b)| k == "panic" && b == "(missing)"));
    }

    #[test]
    fn the_c_function_reports_the_full_length_and_truncates() {
        let text = Fingerprint::this_build().to_text();
        let mut small = [0u8; 8];
        let n = unsafe { write_fingerprint(small.as_mut_ptr(), small.len()) };
        assert_eq!(n, text.len());
        assert_eq!(&small[..], &text.as_bytes()[..8]);
    }
}
