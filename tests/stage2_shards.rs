//! Sharded Stage II drafting (`rediff run --shard I/N`): two processes on
//! one run directory write the same round datasets, and train the same
//! models, as one process; a shard's slice resumes on its own; a shard
//! with another configuration, or a shard count the round was not drafted
//! with, is refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{rediff, run_command, stage1_copy, texts, trained_run, write, TINY};

/// Starts `rediff run --shard I/N --resume` on `out`.
fn shard(pipeline: &Path, out: &Path, spec: &str) -> Child {
    run_command(pipeline, out, &["--resume", "--shard", spec])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for every child (killing them all after `limit`), and asserts
/// each succeeded; their outputs.
fn finish(children: Vec<Child>, limit: Duration) -> Vec<Output> {
    let started = Instant::now();
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    while children
        .iter_mut()
        .flatten()
        .any(|c| c.try_wait().unwrap().is_none())
    {
        if started.elapsed() > limit {
            for c in children.iter_mut().flatten() {
                let _ = c.kill();
            }
            let outs: Vec<String> = children
                .iter_mut()
                .map(|c| {
                    let (o, e) = texts(&c.take().unwrap().wait_with_output().unwrap());
                    format!("{o}\n{e}")
                })
                .collect();
            panic!(
                "shards still running after {limit:?}:\n{}",
                outs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    children
        .iter_mut()
        .map(|c| {
            let out = c.take().unwrap().wait_with_output().unwrap();
            let (o, e) = texts(&out);
            assert!(out.status.success(), "a shard failed:\n{o}\n{e}");
            out
        })
        .collect()
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn lines(path: PathBuf) -> usize {
    read(path).lines().count()
}

/// The rows of model `rediff*` in a report, as JSON text.
fn stage2_rows(out: &Path) -> Vec<String> {
    let report: serde_json::Value = serde_json::from_str(&read(out.join("report.json"))).unwrap();
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["model"] == "rediff")
        .map(|r| {
            let mut r = r.clone();
            // Wall-clock figures differ between any two runs.
            r.as_object_mut()
                .unwrap()
                .retain(|k, _| !k.contains("second"));
            r.to_string()
        })
        .collect()
}

#[test]
fn two_processes_write_the_datasets_one_process_writes_and_resume_per_shard() {
    let single = trained_run();
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = write(tmp.path(), "tiny.toml", TINY);
    let out = stage1_copy(tmp.path());
    // The follower starts first: it waits for shard 0.
    let follower = shard(&pipeline, &out, "1/2");
    std::thread::sleep(Duration::from_millis(300));
    let lead = shard(&pipeline, &out, "0/2");
    let outputs = finish(vec![lead, follower], Duration::from_secs(900));
    let (follower_text, _) = texts(&outputs[1]);
    assert!(
        follower_text.contains("round 1: shard 1/2 drafted") && follower_text.contains("round 2"),
        "{follower_text}"
    );
    for round in 1..=2 {
        let dataset = |run: &Path| read(run.join(format!("stage2/round-{round}/dataset.json")));
        assert_eq!(dataset(&out), dataset(single), "round {round} dataset");
        // Each shard drafted its own batches, dealt in turn: 12 drafts per
        // tokens-per-step setting in batches of 8 make batches of 8, 4, 8
        // and 4 drafts; shard 0 drafts the first and third.
        let dir = out.join(format!("stage2/round-{round}"));
        let drafts: Vec<usize> = (0..2)
            .map(|i| lines(dir.join(format!("shard-{i}-of-2/drafts.jsonl"))))
            .collect();
        assert_eq!(drafts, vec![16, 8], "round {round}");
        assert!(!dir.join("drafts.jsonl").exists());
    }
    // The lead trained the same models: the final model's rows are equal.
    assert_eq!(stage2_rows(&out), stage2_rows(single));
    let report: serde_json::Value = serde_json::from_str(&read(out.join("report.json"))).unwrap();
    assert_eq!(report["stage2"]["rounds"][0]["shards"], 2);
    assert_eq!(report["stage2"]["rounds"][0]["drafts"], 24);

    // Resume per shard: round 2 lost its model and half of shard 1's
    // reviews (shard 1 was killed in the middle of its slice).
    let round2 = out.join("stage2/round-2");
    let slice1 = round2.join("shard-1-of-2");
    let reviews1 = read(slice1.join("reviews.jsonl"));
    let kept: Vec<&str> = reviews1
        .lines()
        .take(reviews1.lines().count() / 2)
        .collect();
    assert!(!kept.is_empty());
    std::fs::write(slice1.join("reviews.jsonl"), kept.join("\n") + "\n").unwrap();
    std::fs::remove_file(slice1.join("done.json")).unwrap();
    std::fs::remove_file(round2.join("outcome.json")).unwrap();
    for dir in ["models/rediff", "checkpoints/rediff"] {
        std::fs::remove_dir_all(out.join(dir)).unwrap();
    }
    let reviews0 = read(round2.join("shard-0-of-2/reviews.jsonl"));
    let lead = shard(&pipeline, &out, "0/2");
    let follower = shard(&pipeline, &out, "1/2");
    finish(vec![lead, follower], Duration::from_secs(900));
    // Shard 0's finished slice was not redone; shard 1 sent only what it lacked.
    assert_eq!(read(round2.join("shard-0-of-2/reviews.jsonl")), reviews0);
    // (Reviews are journaled as they complete, several in flight: compare
    // them as sets of lines.)
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(&read(slice1.join("reviews.jsonl"))),
        sorted(&reviews1)
    );
    let dataset = |run: &Path| read(run.join("stage2/round-2/dataset.json"));
    assert_eq!(dataset(&out), dataset(single));
    assert_eq!(stage2_rows(&out), stage2_rows(single));
}

#[test]
fn a_shard_must_run_the_leads_configuration_and_shard_count() {
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = write(tmp.path(), "tiny.toml", TINY);
    let out = stage1_copy(tmp.path());
    // Another seed: refused before any work, naming the change.
    let other = run_command(
        &pipeline,
        &out,
        &["--resume", "--shard", "1/2", "--seed", "6"],
    )
    .output()
    .unwrap();
    let (_, err) = texts(&other);
    assert!(!other.status.success());
    assert!(
        err.contains("seed: 5 -> 6") && err.contains("shard 1/2"),
        "{err}"
    );
    // A round drafted by one process cannot be continued by two.
    std::fs::create_dir_all(out.join("stage2/round-1")).unwrap();
    std::fs::write(out.join("stage2/round-1/drafts.jsonl"), "").unwrap();
    let lead = run_command(&pipeline, &out, &["--resume", "--shard", "0/2"])
        .output()
        .unwrap();
    let (_, err) = texts(&lead);
    assert!(!lead.status.success());
    assert!(
        err.contains("drafted by 1 process(es)") && err.contains("without --shard"),
        "{err}"
    );
    // Malformed shards and pipelines without Stage II are usage errors.
    let bad = rediff()
        .args(["run", "--shard", "2/2"])
        .arg(&pipeline)
        .output()
        .unwrap();
    let (_, err) = texts(&bad);
    assert!(!bad.status.success() && err.contains("I/N"), "{err}");
    let plain = write(tmp.path(), "plain.toml", &common::without_stage2(TINY));
    let none = run_command(&plain, &tmp.path().join("plain"), &["--shard", "1/2"])
        .output()
        .unwrap();
    let (_, err) = texts(&none);
    assert!(
        !none.status.success() && err.contains("no [stage2]"),
        "{err}"
    );
}
