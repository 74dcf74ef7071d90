//! Plugins as shared libraries: the example plugins drive a pipeline from
//! its `[[plugins]]` table, and every way a library can be wrong is a
//! distinct error that the process survives.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{builtin_registry, run_pipeline, texts, write, TINY};
use rediff_api::__private::{surface_digest, Fingerprint, ABI_VERSION};
use rediff_api::registry::{BuildContext, RegistryError};
use rediff_api::ComponentSpec;
use rediff_dynamic::{load_plugin, PluginError};
use rediff_engine::stage2::{ReviewOutcome, ReviewRecord};

/// Built plugin libraries, each copied under its own name (the dynamic
/// loader caches libraries by path).
struct Built {
    files: BTreeMap<String, PathBuf>,
}

const FAULTS: [&str; 6] = [
    "abi",
    "compiler",
    "register-panics",
    "expert-panics",
    "duplicate",
    "no-declaration",
];

/// The profile directory the tests run from (`target/<profile>/deps/..`):
/// plugins are built with the same profile, so `cargo test` works with and
/// without `--release`.
fn profile_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

fn cargo_build(package: &str, features: Option<&str>) -> PathBuf {
    cargo_build_in(None, package, features)
}

/// Builds `package` (in the workspace at `workspace`, else this one) with
/// this test's profile and target directory; returns the library.
fn cargo_build_in(workspace: Option<&Path>, package: &str, features: Option<&str>) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let profile = profile_dir();
    let release = profile.file_name().is_some_and(|n| n == "release");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package]);
    if release {
        cmd.arg("--release");
    }
    if let Some(f) = features {
        cmd.args(["--features", f]);
    }
    if let Some(dir) = workspace {
        // Same target directory: the dependencies are built once.
        cmd.current_dir(dir)
            .env("CARGO_TARGET_DIR", profile.parent().unwrap())
            .arg("--offline");
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "building {package}: {}",
        texts(&out).1
    );
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    profile.join(file)
}

/// A line the `surface` variant's rediff-api adds to its public API snapshot.
const OTHER_SURFACE: &str = "src/model.rs:   ModelBackend::fn a_method_the_host_lacks(&self)\n";

/// A workspace beside this one holding the fault plugin and a copy of
/// `rediff-api` whose version is `version` and whose public API snapshot is
/// extended by `extra_surface`, with this workspace's lock file (so every
/// other crate is the same).
fn workspace_with_api_version(dir: &Path, version: &str, extra_surface: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = |from: &Path, to: &Path| {
        let status = Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(status.success());
    };
    copy(&root.join("core/api"), &dir.join("api"));
    copy(&root.join("tests/plugins/faulty"), &dir.join("faulty"));
    let surface = dir.join("api/public-api.txt");
    let text = std::fs::read_to_string(&surface).unwrap();
    std::fs::write(&surface, text + extra_surface).unwrap();
    let manifest = dir.join("api/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replacen(
            "version.workspace = true",
            &format!("version = \"{version}\""),
            1,
        ),
    )
    .unwrap();
    let main = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let shared =
        &main[main.find("[workspace.package]").unwrap()..main.find("\n[package]").unwrap()];
    let shared: String = shared
        .lines()
        .filter(|l| !l.contains("path = ") || l.starts_with("rediff-api "))
        .map(|l| {
            l.replace("path = \"core/api\"", "path = \"api\"")
                .replace("version = \"0.1.0\" }", "version = \"*\" }")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let profiles = &main[main.find("[profile.").unwrap()..];
    std::fs::write(
        dir.join("Cargo.toml"),
        format!("[workspace]\nmembers = [\"api\", \"faulty\"]\nresolver = \"2\"\n\n{shared}\n\n{profiles}"),
    )
    .unwrap();
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    dir.to_path_buf()
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        // Each variant is copied out of cargo's output (the next build
        // overwrites it) into the target directory: a static is never
        // dropped, so a temporary directory here would leak its half a
        // gigabyte of libraries on every run. Old copies are unlinked, not
        // overwritten, so a process still running on them is unharmed.
        let dir = profile_dir().join("plugin-tests");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = BTreeMap::new();
        let mut keep = |name: &str, from: PathBuf| {
            let to = dir.join(format!("{name}{}", std::env::consts::DLL_SUFFIX));
            std::fs::copy(&from, &to).unwrap();
            files.insert(name.to_string(), to);
        };
        keep("cosine", cargo_build("rediff-example-cosine", None));
        keep("glossary", cargo_build("rediff-example-glossary", None));
        keep("drop", cargo_build("rediff-example-confidence-drop", None));
        keep("faulty", cargo_build("rediff-test-faulty-plugin", None));
        for fault in FAULTS {
            keep(fault, cargo_build("rediff-test-faulty-plugin", Some(fault)));
        }
        // A real feature difference in a crate whose types cross the boundary.
        keep(
            "features",
            cargo_build(
                "rediff-test-faulty-plugin",
                Some("rediff-api/fingerprint-selftest"),
            ),
        );
        // A real version difference: the plugin compiled against another rediff-api.
        let other = tempfile::tempdir().unwrap();
        let ws = workspace_with_api_version(other.path(), "0.1.1", "");
        keep(
            "version",
            cargo_build_in(Some(&ws), "rediff-test-faulty-plugin", None),
        );
        // A real surface difference: the same version with a trait that
        // gained a method (another vtable).
        let changed = tempfile::tempdir().unwrap();
        let ws =
            workspace_with_api_version(changed.path(), env!("CARGO_PKG_VERSION"), OTHER_SURFACE);
        keep(
            "surface",
            cargo_build_in(Some(&ws), "rediff-test-faulty-plugin", None),
        );
        Built { files }
    })
}

fn lib(name: &str) -> &'static Path {
    &built().files[name]
}

/// `rediff components --plugin PATH`.
fn components_with(plugin: &Path) -> std::process::Output {
    common::rediff()
        .arg("components")
        .arg("--plugin")
        .arg(plugin)
        .output()
        .unwrap()
}

fn spec(text: &str) -> ComponentSpec {
    ComponentSpec::from_toml_str("test", text).unwrap()
}

/// A copy of an example plugin in its own directory outside this
/// workspace, with the manifest as documented (no workspace inheritance;
/// `rediff-api` by path) and this workspace's Cargo.lock beside it, builds
/// and is loaded by `rediff`: the fingerprints match. (The workspace's
/// profiles are appended only so the build reuses this target directory's
/// dependencies.)
#[test]
fn a_copied_example_plugin_builds_outside_the_workspace_and_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("my-plugin");
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(root.join("plugins/examples/cosine-schedule/src"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let manifest =
        std::fs::read_to_string(root.join("plugins/examples/cosine-schedule/Cargo.toml")).unwrap();
    assert!(
        !manifest.contains(".workspace = true"),
        "the example's manifest inherits from the workspace: a copy would not build"
    );
    let api = root.join("core/api");
    // Renamed, as a third party would, so its library does not replace the
    // example's in the shared target directory.
    let manifest = manifest
        .replace("../../../core/api", api.to_str().unwrap())
        .replace(
            "name = \"rediff-example-cosine\"",
            "name = \"my-cosine-plugin\"",
        );
    let main = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let profiles = &main[main.find("[profile.").unwrap()..];
    std::fs::write(dir.join("Cargo.toml"), format!("{manifest}\n{profiles}")).unwrap();
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let library = cargo_build_in(Some(&dir), "my-cosine-plugin", None);
    let output = components_with(&library);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("cosine"), "{stdout}");
}

#[test]
fn example_plugins_drive_a_pipeline_from_its_toml() {
    let dir = tempfile::tempdir().unwrap();
    // Relative paths in [[plugins]] resolve against the pipeline's directory.
    std::fs::copy(lib("cosine"), dir.path().join("cosine.so")).unwrap();
    let glossary = lib("glossary").display().to_string();
    let drop = lib("drop").display().to_string();
    let text = format!(
        "{}\n[[plugins]]\npath = \"cosine.so\"\n\n[[plugins]]\npath = \"{glossary}\"\n\n[[plugins]]\npath = \"{drop}\"\n",
        TINY.replace("kind = \"linear\"", "kind = \"cosine\"")
            .replace(
                "{ name = \"refine\", policy = { kind = \"refine\" } },",
                "{ name = \"refine\", policy = { kind = \"refine\" } },\n  { name = \"drop\", policy = { kind = \"confidence-drop\", ratio = 0.9, max_remask = 3 } },"
            )
            .replace(
                "expert = { kind = \"oracle\" }",
                "expert = { kind = \"glossary\", terms = { \"left\" = \"right\" } }"
            )
            .replace("rounds = 2", "rounds = 1")
    );
    let pipeline = write(dir.path(), "plugged.toml", &text);
    let out = dir.path().join("run");
    run_pipeline(&pipeline, &out, &[]);

    // The schedule's unmask counts are the plugin's.
    let mut registry = builtin_registry();
    load_plugin(&mut registry, lib("cosine")).unwrap();
    let cosine = registry
        .build_schedule(&spec("kind = \"cosine\""), &BuildContext::default())
        .unwrap();
    assert_eq!(cosine.unmask_counts(24, 6), vec![1, 3, 4, 4, 6, 6]);
    let listed = registry.list();
    let row = listed.iter().find(|c| c.name == "cosine").unwrap();
    assert!(row.origin.to_string().contains("cosine"), "{}", row.origin);

    // The plugin policy sampled every setting, finishing every block.
    let report: rediff_report::Report =
        serde_json::from_str(&std::fs::read_to_string(out.join(rediff_report::JSON_FILE)).unwrap())
            .unwrap();
    let rows: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.sampler == "drop")
        .collect();
    assert_eq!(rows.len(), 2 * 3, "two parallelisms x three models");
    assert!(rows
        .iter()
        .all(|r| r.guard_stops == 0 && r.nfe_per_caption > 0.0));

    // The expert's pairs are in the journal.
    let reviews: Vec<ReviewRecord> = common::round_reviews(&out, 1);
    let mut corrected = 0;
    for r in &reviews {
        let has_left = r.draft.split_whitespace().any(|w| w == "left");
        match &r.outcome {
            ReviewOutcome::Revised { kept, .. } => {
                assert!(has_left, "{r:?}");
                assert_eq!(
                    (kept[0].pair.org.as_str(), kept[0].pair.target.as_str()),
                    ("left", "right")
                );
                corrected += 1;
            }
            ReviewOutcome::Right => assert!(!has_left, "{r:?}"),
            ReviewOutcome::Failed { message, .. } => panic!("{message}"),
        }
    }
    assert!(corrected > 0, "no draft mentioned `left`");

    // `rediff components --plugin` shows the file as the origin.
    let output = components_with(lib("glossary"));
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    let line = stdout.lines().find(|l| l.contains("glossary")).unwrap();
    assert!(line.contains(&glossary), "{line}");
}

#[test]
fn each_bad_library_is_a_distinct_error_and_the_process_survives() {
    let mut registry = builtin_registry();
    let before = registry.list().len();
    let err = |name: &str, registry: &mut rediff_api::Registry| {
        load_plugin(registry, lib(name)).expect_err(name)
    };
    match err("no-declaration", &mut registry) {
        PluginError::NotAPlugin { path, reason } => {
            assert_eq!(path, lib("no-declaration"));
            assert!(reason.contains("REDIFF_PLUGIN_DECLARATION"), "{reason}");
        }
        other => panic!("{other}"),
    }
    match err("abi", &mut registry) {
        PluginError::AbiMismatch { plugin, host, .. } => {
            assert_eq!((plugin, host), (999, ABI_VERSION))
        }
        other => panic!("{other}"),
    }
    // Each refusal names the fact that differs, with both sides' values.
    let host = Fingerprint::this_build();
    let refused = |name: &str, registry: &mut rediff_api::Registry, fact: &str, plugin: &str| {
        let e = err(name, registry);
        let d = e.differences().to_vec();
        assert_eq!(d.len(), 1, "{name}: {e}");
        assert_eq!(
            d[0],
            (
                fact.to_string(),
                plugin.to_string(),
                host.facts()[fact].clone()
            ),
            "{name}"
        );
        let message = e.to_string();
        assert!(
            message.contains(&format!("{fact}: plugin `{plugin}`")) && message.contains("rebuild"),
            "{message}"
        );
    };
    refused(
        "compiler",
        &mut registry,
        "rustc",
        "rustc 1.0.0 (a28077b28 2015-05-13)",
    );
    refused(
        "features",
        &mut registry,
        "rediff-api features",
        "fingerprint-selftest",
    );
    refused("version", &mut registry, "rediff-api", "0.1.1");
    let surface = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("core/api/public-api.txt"),
    )
    .unwrap()
        + OTHER_SURFACE;
    refused(
        "surface",
        &mut registry,
        "rediff-api surface",
        &surface_digest(surface.as_bytes()),
    );
    match err("register-panics", &mut registry) {
        PluginError::Panicked { message, .. } => {
            assert!(message.contains("planted panic"), "{message}")
        }
        other => panic!("{other}"),
    }
    match err("duplicate", &mut registry) {
        PluginError::Registry {
            source: RegistryError::Duplicate { name, .. },
            ..
        } => assert_eq!(name, "oracle"),
        other => panic!("{other}"),
    }
    let missing = Path::new("/nonexistent/plugin.so");
    assert!(matches!(
        load_plugin(&mut registry, missing),
        Err(PluginError::Missing { .. })
    ));
    // Nothing half-registered, and the registry still works.
    assert_eq!(registry.list().len(), before);
    load_plugin(&mut registry, lib("faulty")).unwrap();
    assert!(registry.list().iter().any(|c| c.name == "faulty-expert"));
    // The binary reports these as one-line errors, naming the file.
    let output = components_with(lib("abi"));
    let (_, stderr) = texts(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("plugin ABI 999") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn a_panicking_plugin_expert_fails_its_items_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[[plugins]]\npath = \"{}\"\n",
        TINY.replace(
            "expert = { kind = \"oracle\" }",
            "expert = { kind = \"faulty-expert\" }"
        )
        .replace("rounds = 2", "rounds = 1"),
        lib("expert-panics").display(),
    );
    let pipeline = write(dir.path(), "panicky.toml", &text);
    let out = dir.path().join("run");
    run_pipeline(&pipeline, &out, &[]);
    let reviews: Vec<ReviewRecord> = common::round_reviews(&out, 1);
    let (failed, fine): (Vec<_>, Vec<_>) = reviews.iter().partition(|r| r.failed());
    assert!(!failed.is_empty(), "no draft mentioned `big`");
    assert!(!fine.is_empty());
    for r in failed {
        assert!(r.draft.contains("big"));
        match &r.outcome {
            ReviewOutcome::Failed { message, .. } => {
                assert!(message.contains("planted panic"), "{message}")
            }
            _ => unreachable!(),
        }
    }
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(report.contains("\"failed\""));
}
