//! The workspace's manifests say what each crate really uses: every normal
//! dependency is named by the crate's own sources (`src/`, or `build.rs`
//! for build dependencies), and every dev-dependency by its tests,
//! benchmarks, examples or test modules. So the `rediff` binary carries no
//! test-only crate, and no crate builds what it never uses. (The check
//! cargo-machete makes, as a test: it needs no install in CI.)
//!
//! A dependency kept on purpose though never named (a crate taken only to
//! turn on a feature) is listed under `[package.metadata.cargo-machete]
//! ignored = [...]` with a comment saying why, the key cargo-machete reads.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The text of every `.rs` file under `dirs` of `root`.
fn sources(root: &Path, dirs: &[&str]) -> String {
    let mut files = Vec::new();
    for d in dirs {
        let p = root.join(d);
        if p.is_file() {
            files.push(p);
        } else {
            rust_files(&p, &mut files);
        }
    }
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `text` names the crate `lib` (`lib::`, `use lib`, `lib!`).
fn names(text: &str, lib: &str) -> bool {
    text.match_indices(lib).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = &text[at + lib.len()..];
        let boundary_before = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        boundary_before
            && (after.starts_with("::")
                || after.starts_with(';')
                || after.starts_with(" as ")
                || after.starts_with('!')
                || after.starts_with(",")
                || after.starts_with("}"))
    })
}

/// The library name a dependency is imported by (its `package` when renamed).
fn lib_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Every workspace member's directory.
fn members(root: &Path) -> Vec<PathBuf> {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    manifest["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| root.join(m.as_str().unwrap()))
        .collect()
}

/// `(crate directory, section, dependency)` for every dependency no source
/// of its kind names.
fn unused(root: &Path) -> Vec<(String, &'static str, String)> {
    let mut found = Vec::new();
    for dir in members(root) {
        let manifest: toml::Table =
            toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
        let ignored: Vec<String> = manifest
            .get("package")
            .and_then(|p| p.get("metadata"))
            .and_then(|m| m.get("cargo-machete"))
            .and_then(|m| m.get("ignored"))
            .and_then(|i| i.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let normal = sources(&dir, &["src"]);
        let dev = normal.clone() + &sources(&dir, &["tests", "benches", "examples"]);
        let build = sources(&dir, &["build.rs"]);
        for (section, text) in [
            ("dependencies", &normal),
            ("dev-dependencies", &dev),
            ("build-dependencies", &build),
        ] {
            let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) else {
                continue;
            };
            for (name, spec) in deps {
                let package = spec
                    .get("package")
                    .and_then(|p| p.as_str())
                    .map(|_| name.as_str())
                    .unwrap_or(name);
                if ignored.iter().any(|i| i == name) || names(text, &lib_name(package)) {
                    continue;
                }
                let rel = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
                found.push((
                    if rel.is_empty() { ".".into() } else { rel },
                    section,
                    name.clone(),
                ));
            }
        }
    }
    found
}

#[test]
fn every_dependency_is_used_where_it_is_declared() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unused = unused(root);
    assert!(
        unused.is_empty(),
        "dependencies no source of their kind names (remove them, move them to the section that uses them, or list them under [package.metadata.cargo-machete] ignored with the reason):\n{}",
        unused
            .iter()
            .map(|(c, s, d)| format!("  {c}: [{s}] {d}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_crate_named_only_in_a_comment_or_a_longer_name_is_not_used() {
    assert!(names("use rediff_api::Error;", "rediff_api"));
    assert!(names("fn f() -> anyhow::Result<()>", "anyhow"));
    assert!(names("extern crate serde;", "serde"));
    assert!(!names("use rediff_api_extra::X;", "rediff_api"));
    assert!(!names("// see serde docs", "serde"));
    assert!(!names("let my_toml::x", "toml"));
}
