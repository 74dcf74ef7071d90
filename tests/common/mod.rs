//! Shared helpers for the end-to-end tests: a pipeline small enough to train
//! in seconds, and a way to run the `rediff` binary.

#![allow(dead_code)]

pub mod fake_judge;
pub mod fake_llm;
mod files;

pub use files::{copy_dir, TINY};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// [`TINY`] without its `[stage2]` table.
pub fn without_stage2(text: &str) -> String {
    let a = text.find("[stage2]").expect("has [stage2]");
    let b = text.find("[eval]").expect("has [eval]");
    format!("{}{}", &text[..a], &text[b..])
}

/// The built-in components, as the binary registers them.
pub fn builtin_registry() -> rediff_api::Registry {
    rediff_builtins::registry().unwrap()
}

/// The expert reviews of Stage II round `round` in a run directory, in
/// journal order.
pub fn round_reviews(out: &Path, round: usize) -> Vec<rediff_engine::stage2::ReviewRecord> {
    let path = out.join(format!("stage2/round-{round}/reviews.jsonl"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `rediff` binary.
pub fn rediff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rediff"))
}

/// Writes `text` as `name` in `dir` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// stdout and stderr as strings.
pub fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `rediff run PIPELINE --out OUT --quiet EXTRA...`, ready to run.
pub fn run_command(pipeline: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = rediff();
    cmd.arg("run")
        .arg(pipeline)
        .arg("--out")
        .arg(out)
        .arg("--quiet")
        .args(extra);
    cmd
}

/// Runs `rediff run` on `pipeline` into `out`, panicking with its output on failure.
pub fn run_pipeline(pipeline: &Path, out: &Path, extra: &[&str]) -> Output {
    let output = run_command(pipeline, out, extra).output().unwrap();
    let (o, e) = texts(&output);
    assert!(output.status.success(), "rediff run failed:\n{o}\n{e}");
    output
}

/// One tiny run shared by every test (of this test binary) that only needs
/// trained checkpoints. It lives in the target directory, replaced on every
/// run: a static is never dropped, so a temporary directory would leak.
pub fn trained_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_stem().unwrap().to_string_lossy().to_string();
        let dir = exe.parent().unwrap().join("trained-runs").join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        let pipeline = write(&dir, "tiny.toml", TINY);
        let out = dir.join("run");
        run_pipeline(&pipeline, &out, &[]);
        out
    })
}

/// A copy of [`trained_run`] in `dir` without its Stage II: run a [`TINY`]
/// variant on it with `--resume` and only Stage II runs (the trained
/// baseline and Stage I models are loaded), in seconds.
pub fn stage1_copy(dir: &Path) -> PathBuf {
    let out = dir.join("run");
    copy_dir(trained_run(), &out);
    for stale in [
        "stage2",
        "models/rediff",
        "models/rediff-r1",
        "checkpoints/rediff",
        "checkpoints/rediff-r1",
    ] {
        let p = out.join(stale);
        if p.exists() {
            std::fs::remove_dir_all(&p).unwrap();
        }
    }
    for f in ["report.json", "report.md"] {
        let _ = std::fs::remove_file(out.join(f));
    }
    out
}
