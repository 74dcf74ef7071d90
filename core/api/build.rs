//! Records what a dynamically loaded plugin must share with the host (see
//! `src/__private/fingerprint.rs`): the compiler, the target, the panic
//! strategy, and the locked versions of the crates whose types cross the
//! plugin boundary, read from the Cargo.lock of the build.

use std::path::{Path, PathBuf};
use std::process::Command;

include!("boundary.rs");

#[path = "src/__private/digest.rs"]
mod digest;

fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `name=version;...` for the boundary crates in `lock` (the first version
/// listed when a crate appears in several).
fn locked_versions(lock: &str) -> String {
    let mut out = Vec::new();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("name = \"")
            .and_then(|n| n.strip_suffix('"'))
        else {
            continue;
        };
        if !BOUNDARY_CRATES.contains(&name) || out.iter().any(|(n, _)| n == name) {
            continue;
        }
        if let Some(v) = lines
            .next()
            .and_then(|l| l.trim().strip_prefix("version = \""))
            .and_then(|v| v.strip_suffix('"'))
        {
            out.push((name.to_string(), v.to_string()));
        }
    }
    out.iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The nearest Cargo.lock above `start`.
fn find_lock(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())
}

fn main() {
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rerun-if-env-changed=REDIFF_LOCKFILE");
    println!("cargo:rustc-env=REDIFF_RUSTC_VERSION={}", rustc_version());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=REDIFF_TARGET={target}");
    let panic = std::env::var("CARGO_CFG_PANIC").unwrap_or_else(|_| "unwind".into());
    println!("cargo:rustc-env=REDIFF_PANIC={panic}");
    // The build directory sits below the workspace whose lock file resolved
    // the dependencies; the manifest directory does when rediff-api is a
    // path dependency; REDIFF_LOCKFILE names it otherwise.
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let lock = std::env::var_os("REDIFF_LOCKFILE")
        .map(PathBuf::from)
        .or_else(|| find_lock(&out))
        .or_else(|| find_lock(&manifest));
    let versions = match &lock {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", path.display());
            std::fs::read_to_string(path)
                .map(|t| locked_versions(&t))
                .unwrap_or_default()
        }
        None => String::new(),
    };
    println!("cargo:rustc-env=REDIFF_LOCKED_VERSIONS={versions}");
    // The public surface (trait methods, struct fields, ...) as the
    // public_api test snapshots it: a changed trait changes its vtable even
    // when the version number stays.
    let surface = manifest.join("public-api.txt");
    println!("cargo:rerun-if-changed={}", surface.display());
    let digest = std::fs::read(&surface).map_or_else(
        |_| "unknown (no public-api.txt)".to_string(),
        |bytes| digest::surface_digest(&bytes),
    );
    println!("cargo:rustc-env=REDIFF_API_SURFACE={digest}");
}
