//! Plugins as shared libraries: the example plugins drive a pipeline from
//! its `[[plugins]]` table, and every way a library can be wrong is a
//! distinct error that the process survives.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{builtin_registry, run_pipeline, texts, write, TINY};
use rediff_core::dynamic::{load_plugin, PluginError, ABI_VERSION, RUSTC_VERSION};
use rediff_core::registry::{BuildContext, RegistryError};
use rediff_core::stage2::{ReviewOutcome, ReviewRecord};
use rediff_core::ComponentSpec;

/// Built plugin libraries, each copied under its own name (the dynamic
/// loader caches libraries by path).
struct Built {
    _dir: tempfile::TempDir,
    files: BTreeMap<String, PathBuf>,
}

const FAULTS: [&str; 7] = [
    "abi",
    "compiler",
    "interface",
    "register-panics",
    "expert-panics",
    "duplicate",
    "no-declaration",
];

fn cargo_build(package: &str, features: Option<&str>) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet", "-p", package]);
    if let Some(f) = features {
        cmd.args(["--features", f]);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "building {package}: {}",
        texts(&out).1
    );
    // Tests run from target/release/deps.
    let release = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    release.join(file)
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        let mut keep = |name: &str, from: PathBuf| {
            let to = dir
                .path()
                .join(format!("{name}{}", std::env::consts::DLL_SUFFIX));
            std::fs::copy(&from, &to).unwrap();
            files.insert(name.to_string(), to);
        };
        keep("cosine", cargo_build("rediff-example-cosine", None));
        keep("glossary", cargo_build("rediff-example-glossary", None));
        keep("faulty", cargo_build("rediff-test-faulty-plugin", None));
        for fault in FAULTS {
            keep(fault, cargo_build("rediff-test-faulty-plugin", Some(fault)));
        }
        Built { _dir: dir, files }
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

#[test]
fn example_plugins_drive_a_pipeline_from_its_toml() {
    let dir = tempfile::tempdir().unwrap();
    // Relative paths in [[plugins]] resolve against the pipeline's directory.
    std::fs::copy(lib("cosine"), dir.path().join("cosine.so")).unwrap();
    let glossary = lib("glossary").display().to_string();
    let text = format!(
        "{}\n[[plugins]]\npath = \"cosine.so\"\n\n[[plugins]]\npath = \"{glossary}\"\n",
        TINY.replace("kind = \"linear\"", "kind = \"cosine\"")
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
    let err = |name: &str, registry: &mut rediff_core::Registry| {
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
    let e = err("compiler", &mut registry);
    assert!(matches!(e, PluginError::CompilerMismatch { .. }), "{e}");
    let message = e.to_string();
    assert!(
        message.contains("rustc 1.0.0")
            && message.contains(RUSTC_VERSION)
            && message.contains("rebuild"),
        "{message}"
    );
    let e = err("interface", &mut registry);
    assert!(matches!(e, PluginError::InterfaceMismatch { .. }), "{e}");
    assert!(e.to_string().contains("0.0.1-other"), "{e}");
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
