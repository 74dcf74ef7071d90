//! Records what a dynamically loaded plugin must match: the exact compiler
//! and the resolved candle version (read from the Cargo.lock of the build).

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The `candle-core` version in the nearest Cargo.lock above `start`.
fn candle_version(start: &Path) -> Option<(String, PathBuf)> {
    for dir in start.ancestors() {
        let lock = dir.join("Cargo.lock");
        let Ok(text) = std::fs::read_to_string(&lock) else {
            continue;
        };
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.trim() == "name = \"candle-core\"" {
                let version = lines.next()?.trim();
                let version = version.strip_prefix("version = \"")?.strip_suffix('"')?;
                return Some((version.to_string(), lock));
            }
        }
    }
    None
}

fn main() {
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rustc-env=REDIFF_RUSTC_VERSION={}", rustc_version());
    // The build directory sits below the workspace whose lock file resolved
    // candle; the manifest directory does when rediff-core is a path dependency.
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let found = candle_version(&out).or_else(|| candle_version(&manifest));
    match found {
        Some((version, lock)) => {
            println!("cargo:rerun-if-changed={}", lock.display());
            println!("cargo:rustc-env=REDIFF_CANDLE_VERSION={version}");
        }
        None => println!("cargo:rustc-env=REDIFF_CANDLE_VERSION=unknown"),
    }
}
