//! Stage II with the `command` trainer: a stand-in trainer script (it
//! copies its input checkpoint to its output) trains two rounds; a run
//! killed with SIGKILL while the second round's command runs resumes
//! without running the first round's command again; a failing command
//! (non-zero exit, no checkpoint written, timeout) is an error with the
//! log's tail, and `--resume` retries the round.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{rediff, write, TINY};
use rediff_engine::pipeline::{self, RunOptions};
use rediff_engine::PipelineConfig;

/// The stand-in trainer: behaviour from `$CONTROL/mode` (ok, fail, silent,
/// slow; `hold-2` makes round 2 wait for `$CONTROL/go`), one line per call
/// in `$CONTROL/calls-ROUND`.
const SCRIPT: &str = r#"#!/bin/sh
round="$1"; input="$2"; output="$3"; dataset="$4"; control="$5"
echo "stand-in trainer: round $round, dataset $dataset"
echo call >> "$control/calls-$round"
test -s "$dataset" || { echo "empty dataset" >&2; exit 2; }
mode=$(cat "$control/mode" 2>/dev/null || echo ok)
case "$mode" in
  fail) echo "planted failure: CUDA out of memory" >&2; exit 3 ;;
  silent) exit 0 ;;
  slow) sleep 60 ;;
  hold-2) if [ "$round" = 2 ]; then
            while [ ! -e "$control/go" ]; do
              if [ -e "$control/abandon" ]; then echo "abandoned"; exit 9; fi
              sleep 0.1
            done
          fi ;;
esac
mkdir -p "$output" && cp -R "$input"/. "$output"/
echo "stand-in trainer: wrote $output"
"#;

/// A two-round tiny pipeline whose rounds the stand-in trains; returns
/// (pipeline file, control directory).
fn setup(dir: &Path, timeout_s: Option<f64>) -> (PathBuf, PathBuf) {
    let control = dir.join("control");
    std::fs::create_dir_all(&control).unwrap();
    let script = write(dir, "train.sh", SCRIPT);
    let trainer = format!(
        "trainer = {{ kind = \"command\", command = [\"sh\", \"{}\", \"{{round}}\", \"{{checkpoint}}\", \"{{output}}\", \"{{dataset}}\", \"{}\"]{} }}",
        script.display(),
        control.display(),
        timeout_s.map_or(String::new(), |t| format!(", timeout_s = {t}"))
    );
    let text = TINY.replace("steps = 10\nlr = 1e-3\n", &format!("{trainer}\n"));
    assert!(text.contains("kind = \"command\""));
    (write(dir, "pipeline.toml", &text), control)
}

fn calls(control: &Path, round: usize) -> usize {
    std::fs::read_to_string(control.join(format!("calls-{round}")))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn run_lib(file: &Path, out: &Path, resume: bool) -> rediff_api::Result<rediff_report::Report> {
    let cfg = PipelineConfig::from_file(file).unwrap();
    let options = RunOptions {
        resume,
        ..RunOptions::new(out)
    };
    pipeline::run(&cfg, &common::builtin_registry(), &options)
}

#[cfg(unix)]
#[test]
fn two_rounds_resume_after_kill_9_without_rerunning_a_finished_command() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, control) = setup(tmp.path(), None);
    std::fs::write(control.join("mode"), "hold-2").unwrap();
    let out = tmp.path().join("run");
    let mut child = rediff()
        .args(["run", "--quiet", "--out"])
        .arg(&out)
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until round 2's command is running, then kill rediff outright.
    let log2 = out.join("stage2/round-2/trainer.log");
    let t = Instant::now();
    loop {
        let started = std::fs::read_to_string(&log2)
            .map(|l| l.contains("stand-in trainer: round 2"))
            .unwrap_or(false);
        if started && calls(&control, 2) == 1 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "round 2 never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "rediff ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The orphaned stand-in (in its own process group) gives up on its own;
    // no signal is sent to a process this test did not start.
    std::fs::write(control.join("abandon"), "").unwrap();
    let t = Instant::now();
    while !std::fs::read_to_string(&log2)
        .unwrap_or_default()
        .contains("abandoned")
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the stand-in did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_file(control.join("abandon")).unwrap();
    assert_eq!(calls(&control, 1), 1);
    let journal = std::fs::read_to_string(out.join("stage2/round-1/trainer.jsonl")).unwrap();
    assert!(
        journal.contains("\"start\"") && journal.contains("\"finish\""),
        "{journal}"
    );
    // Resume: round 1 is loaded, round 2's command runs again and finishes.
    std::fs::write(control.join("go"), "").unwrap();
    let resumed = rediff()
        .args(["run", "--quiet", "--resume", "--out"])
        .arg(&out)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(calls(&control, 1), 1, "round 1's command ran again");
    assert_eq!(calls(&control, 2), 2);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let rounds = report["stage2"]["rounds"].as_array().unwrap();
    assert_eq!(rounds[0]["external"]["resumed"], true);
    assert_eq!(rounds[1]["external"]["resumed"], false);
    assert_eq!(rounds[1]["external"]["trainer"], "command");
    // The final model is the stand-in's output, evaluated like any other.
    assert!(report["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["model"] == "rediff"));
    let journal = std::fs::read_to_string(out.join("stage2/round-2/trainer.jsonl")).unwrap();
    assert_eq!(journal.matches("\"start\"").count(), 2, "{journal}");
    assert_eq!(journal.matches("\"finish\"").count(), 1, "{journal}");
}

#[cfg(unix)]
#[test]
fn a_failing_command_reports_its_log_tail_and_the_round_retries_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, control) = setup(tmp.path(), Some(2.0));
    let out = tmp.path().join("run");
    for (mode, expected) in [
        (
            "fail",
            vec!["exit code 3", "planted failure: CUDA out of memory"],
        ),
        (
            "silent",
            vec!["wrote no checkpoint", "config.json is missing"],
        ),
        ("slow", vec!["timed out", "stand-in trainer: round 1"]),
    ] {
        std::fs::write(control.join("mode"), mode).unwrap();
        let t = Instant::now();
        let err = run_lib(&file, &out, true).unwrap_err().to_string();
        for e in expected {
            assert!(err.contains(e), "{mode}: {err}");
        }
        assert!(err.contains("--resume"), "{mode}: {err}");
        assert!(t.elapsed() < Duration::from_secs(120), "{mode}");
    }
    let drafts = std::fs::read_to_string(out.join("stage2/round-1/drafts.jsonl")).unwrap();
    std::fs::write(control.join("mode"), "ok").unwrap();
    let report = run_lib(&file, &out, true).unwrap();
    let rounds = &report.stage2.as_ref().unwrap().rounds;
    assert_eq!(rounds.len(), 2);
    assert!(rounds.iter().all(|r| r.external.is_some()));
    assert_eq!(calls(&control, 1), 4, "three failures, then success");
    // Drafts were not redone by the retries.
    assert_eq!(
        std::fs::read_to_string(out.join("stage2/round-1/drafts.jsonl")).unwrap(),
        drafts
    );
}

#[test]
fn the_llada_v_stage2_recipe_assembles_with_a_tiny_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ReDiff-base");
    rediff_llada_v::testing::write_random_checkpoint(
        &ckpt,
        &rediff_llada_v::testing::TinySpec::default(),
        3,
    )
    .unwrap();
    image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, 9]))
        .save(tmp.path().join("a.png"))
        .unwrap();
    write(
        tmp.path(),
        "captions.json",
        r#"[{"id": "a", "image": "a.png", "conversations": [
            {"from": "human", "value": "<image>\ndescribe the image ."},
            {"from": "gpt", "value": "a red circle ."}]}]"#,
    );
    let recipe = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/llada-v-stage2.toml"),
    )
    .unwrap();
    let text = recipe
        .replace("/models/ReDiff-base", &ckpt.display().to_string())
        .replace("device = \"cuda\"", "device = \"cpu\"")
        .replace(
            "data/captions.json",
            &tmp.path().join("captions.json").display().to_string(),
        )
        .replace("\"data/images\"", &format!("\"{}\"", tmp.path().display()))
        .replace("/src/ReDiff/train", &tmp.path().display().to_string());
    let file = write(tmp.path(), "recipe.toml", &text);
    let out = rediff()
        .arg("check")
        .arg(&file)
        .env("OPENAI_API_KEY", "sk-test-not-used")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("command"), "{stdout}");
    assert!(
        !stdout.contains("sk-test-not-used"),
        "the key leaked: {stdout}"
    );
}
