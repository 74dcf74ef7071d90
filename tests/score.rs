//! `rediff score` and the `judge` scorer end to end, against a scripted
//! judge on loopback (`common::fake_judge`) and the committed fixture
//! `tests/fixtures/judge/` (20 images, references, captions; expected
//! values worked out by hand in its `make_fixture.py`): exact metric values,
//! a malformed reply retried then listed as a failure, 429/500 retried,
//! kill -9 and `--resume` without a call sent twice, images shown to a judge
//! that sees them, and a judge in `rediff eval`'s grid.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::fake_judge::{fixture, ScriptedJudge};
use common::{rediff, texts, trained_run, write};
use serde_json::Value;

fn judge_arg(uri: &str, extra: &str) -> String {
    format!("base_url = \"{uri}/v1\"\nmodel = \"scripted\"\nbackoff_ms = 5\n{extra}")
}

fn score_cmd(uri: &str, out: &Path, extra: &str) -> std::process::Command {
    let f = fixture();
    let mut cmd = rediff();
    cmd.arg("score")
        .arg(f.join("preds.json"))
        .arg("--refs")
        .arg(f.join("refs.json"))
        .arg("--judge")
        .arg(judge_arg(uri, extra))
        .arg("--out")
        .arg(out)
        .arg("--quiet");
    cmd
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn expected() -> Value {
    read(&fixture().join("expected.json"))
}

/// Every metric and every caption's value equal the hand-worked ones.
fn assert_scores_as_expected(scores: &Value) {
    let want = expected();
    for m in scores["metrics"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let (got, exp) = (
            m["value"].as_f64().unwrap(),
            want["metrics"][name].as_f64().unwrap(),
        );
        assert!((got - exp).abs() < 1e-12, "{name}: {got} != {exp}");
        let [lo, hi] = [
            m["interval"][0].as_f64().unwrap(),
            m["interval"][1].as_f64().unwrap(),
        ];
        assert!(
            lo <= got && got <= hi && lo < hi,
            "{name}: [{lo}, {hi}] around {got}"
        );
    }
    for c in scores["captions"].as_array().unwrap() {
        let image = c["image"].as_str().unwrap();
        let counts: Vec<(String, Value)> = serde_json::from_value(c["counts"].clone()).unwrap();
        for (name, exp) in want["captions"][image].as_object().unwrap() {
            let got = counts.iter().find(|(n, _)| n == name).and_then(|(_, k)| {
                let (h, t) = (k["hits"].as_f64().unwrap(), k["total"].as_f64().unwrap());
                (t > 0.0).then_some(h / t)
            });
            match exp.as_f64() {
                Some(e) => {
                    let g = got.unwrap_or_else(|| panic!("{image} {name}: no value"));
                    assert!((g - e).abs() < 1e-12, "{image} {name}: {g} != {e}");
                }
                None => assert_eq!(got, None, "{image} {name}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_equal_hand_computed_values_and_failures_are_listed() {
    let mut judge = ScriptedJudge::new();
    // Transient failures, retried by the client: not failures of a caption.
    judge.fail_first = vec![
        (
            "clair",
            "Caption 5: a model's description of image 5.".into(),
            429,
        ),
        (
            "graph",
            "Caption 9: a model's description of image 9.".into(),
            500,
        ),
    ];
    let log = judge.log.clone();
    let server = judge.start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scores");
    let uri = server.uri();
    let o = out.clone();
    let output = tokio::task::spawn_blocking(move || score_cmd(&uri, &o, "").output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let scores = read(&out.join("scores.json"));
    assert_scores_as_expected(&scores);
    // Calls per step as designed: retries of malformed replies included.
    let answered = log.answered.lock().unwrap().clone();
    let want = expected();
    for (step, n) in want["calls"].as_object().unwrap() {
        let got = answered.iter().filter(|a| &a.step == step).count();
        assert_eq!(got as u64, n.as_u64().unwrap(), "calls of {step}");
    }
    // Item 3's malformed first reply was retried with the next seed.
    assert!(answered
        .iter()
        .any(|a| a.step == "clair" && a.subject.starts_with("Caption 3:") && a.seed == 1));
    // Item 7 stayed malformed: listed, with the reason, out of the average.
    let c7 = scores["captions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["image"] == "img07.png")
        .unwrap();
    let why = c7["failures"][0].as_str().unwrap();
    assert!(
        why.starts_with("clair: clair: malformed reply 3 time(s)"),
        "{why}"
    );
    let clair = &scores["metrics"][0];
    assert_eq!(
        (clair["captions"].as_u64(), clair["failures"].as_u64()),
        (Some(19), Some(1))
    );
    let md = std::fs::read_to_string(out.join("scores.md")).unwrap();
    assert!(
        md.contains("## Failures") && md.contains("`img07.png`: clair: clair: malformed"),
        "{md}"
    );
    assert!(md.contains("| clair | 0.7205 |"), "{md}");
    assert!(stdout.contains("138 calls, 0 cached"), "{stdout}");
    let usage = &scores["usage"];
    assert_eq!(usage["calls"], 138);
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);

    // Scoring again is free and gives the same numbers; without --resume
    // the folder is refused.
    let uri = server.uri();
    let o = out.clone();
    let refused = tokio::task::spawn_blocking(move || score_cmd(&uri, &o, "").output().unwrap())
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        texts(&refused).1.contains("--resume"),
        "{}",
        texts(&refused).1
    );
    let before = log.requests.load(Ordering::SeqCst);
    let uri = server.uri();
    let o = out.clone();
    let again = tokio::task::spawn_blocking(move || {
        score_cmd(&uri, &o, "").arg("--resume").output().unwrap()
    })
    .await
    .unwrap();
    assert!(again.status.success(), "{}", texts(&again).1);
    assert_eq!(
        log.requests.load(Ordering::SeqCst),
        before,
        "a cached call was sent again"
    );
    let rescored = read(&out.join("scores.json"));
    assert_eq!(rescored["metrics"], scores["metrics"]);
    assert_eq!(rescored["usage"]["cached"], 138);
}

/// One call in flight at a time: every reply the scorer received is in the
/// cache before the next call goes out, so the only call a kill can lose is
/// the one the judge never answered. (With `max_concurrency = n`, up to n - 1
/// replies can be in transit at the kill and are asked again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_scoring_resumes_without_sending_a_call_twice() {
    let pid = Arc::new(AtomicU32::new(0));
    let mut judge = ScriptedJudge::new();
    judge.kill_at = Some((pid.clone(), 60));
    let log = judge.log.clone();
    let server = judge.start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scores");
    let (uri, o, p) = (server.uri(), out.clone(), pid.clone());
    let status = tokio::task::spawn_blocking(move || {
        let mut child = score_cmd(&uri, &o, "max_concurrency = 1").spawn().unwrap();
        p.store(child.id(), Ordering::SeqCst);
        child.wait().unwrap()
    })
    .await
    .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the scorer was not killed: {status:?}"
    );
    assert!(!out.join("scores.json").exists());
    let first = log.answered.lock().unwrap().len();
    assert!(first >= 50, "{first} answers before the kill");
    let (uri, o) = (server.uri(), out.clone());
    let output = tokio::task::spawn_blocking(move || {
        score_cmd(&uri, &o, "max_concurrency = 1")
            .arg("--resume")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", texts(&output).1);
    let answered = log.answered.lock().unwrap().clone();
    let unique: HashSet<_> = answered.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        answered.len(),
        "an answered call was sent twice"
    );
    assert_eq!(
        answered.len(),
        138,
        "every call answered exactly once over both runs"
    );
    let scores = read(&out.join("scores.json"));
    assert_scores_as_expected(&scores);
    assert_eq!(scores["usage"]["cached"].as_u64().unwrap() as usize, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_that_sees_images_is_shown_them_and_a_missing_one_is_named() {
    let judge = ScriptedJudge::new();
    let log = judge.log.clone();
    let server = judge.start().await;
    let dir = tempfile::tempdir().unwrap();
    let (uri, out) = (server.uri(), dir.path().join("with-images"));
    let images = fixture().join("images");
    let output = tokio::task::spawn_blocking(move || {
        score_cmd(&uri, &out, "image = \"data_url\"")
            .args(["--metric", "factuality"])
            .arg("--images")
            .arg(images)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", texts(&output).1);
    // Only verification is shown the image: one per caption with propositions.
    assert_eq!(log.images.load(Ordering::SeqCst), 19);
    let (uri, out) = (server.uri(), dir.path().join("missing"));
    let output = tokio::task::spawn_blocking(move || {
        score_cmd(&uri, &out, "image = \"data_url\"")
            .args(["--metric", "factuality", "--images", "/nonexistent/imgs"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", texts(&output).1);
    let scores = read(&dir.path().join("missing/scores.json"));
    let f = scores["captions"][0]["failures"][0].as_str().unwrap();
    assert!(f.contains("/nonexistent/imgs/img01.png"), "{f}");
}

#[test]
fn bad_arguments_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let run = |judge: &str, extra: &[&str]| {
        let f = fixture();
        let output = rediff()
            .arg("score")
            .arg(f.join("preds.json"))
            .arg("--refs")
            .arg(f.join("refs.json"))
            .args(["--judge", judge, "--quiet", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert!(!output.status.success());
        texts(&output).1
    };
    let e = run(
        "base_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"",
        &["--metric", "clairr"],
    );
    assert!(
        e.contains("clairr") && e.contains("clair") && e.contains("capture"),
        "{e}"
    );
    let e = run(
        "base_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\ntimeout_s = -1",
        &[],
    );
    assert!(e.contains("timeout_s"), "{e}");
    let e = run("kind = \"oracle\"", &[]);
    assert!(e.contains("openai"), "{e}");
    let e = run("base_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\napi_key_env = \"REDIFF_TEST_UNSET_KEY\"", &[]);
    assert!(e.contains("REDIFF_TEST_UNSET_KEY"), "{e}");
    let f = fixture();
    let output = rediff()
        .arg("score")
        .arg(f.join("preds.json"))
        .arg("--refs")
        .arg(dir.path().join("none.json"))
        .args([
            "--judge",
            "base_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"",
            "--quiet",
            "--out",
        ])
        .arg(dir.path().join("o2"))
        .output()
        .unwrap();
    assert!(
        texts(&output).1.contains("none.json"),
        "{}",
        texts(&output).1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_in_the_eval_grid_adds_its_columns_to_the_report() {
    let run = trained_run();
    let mut judge = ScriptedJudge::new();
    judge.fallback = true;
    let server = judge.start().await;
    let dir = tempfile::tempdir().unwrap();
    let grid = write(
        dir.path(),
        "judged.toml",
        &format!(
            r#"
[eval]
samples = 12
tokens_per_step = [1, 8]
batch_size = 12
examples = 1
samplers = [{{ name = "denoise", policy = {{ kind = "none" }} }}]

[[eval.scorers]]
kind = "judge"
metrics = ["clair", "factuality", "coverage", "capture"]
judge = {{ base_url = "{}/v1", model = "scripted", backoff_ms = 5 }}
"#,
            server.uri()
        ),
    );
    let out = dir.path().join("eval");
    let o = out.clone();
    let output = tokio::task::spawn_blocking(move || {
        rediff()
            .args(["eval", "--quiet", "--models", "baseline", "--out"])
            .arg(&o)
            .arg(run)
            .arg(&grid)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: Value = read(&out.join("report.json"));
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        for m in [
            "factuality",
            "grammar",
            "clair",
            "llm_factuality",
            "llm_coverage",
            "capture",
        ] {
            let v = row[m].as_f64().unwrap_or_else(|| panic!("no {m} in {row}"));
            assert!((0.0..=1.0).contains(&v), "{m} = {v}");
            assert!(row["intervals"][m].is_array(), "no interval for {m}");
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| clair |") || md.contains(" clair |"), "{md}");
    assert!(
        md.contains("llm_coverage") && md.contains("capture"),
        "{md}"
    );
    assert!(out.join("quality_vs_parallelism.png").is_file());
    // The judge's replies were cached in the report folder.
    assert!(out.join("judge-cache.jsonl").is_file());
}
