//! `rediff bench` runs end to end with tiny budgets: the table, the JSON,
//! and a clear note when the PyTorch reference cannot run. (The
//! measurements themselves are not checked here: timings belong to
//! `rediff bench`, not to tests.)

mod common;

use common::rediff;

#[test]
fn bench_writes_a_table_and_says_why_the_reference_was_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bench.json");
    let output = rediff()
        .args([
            "bench",
            "--sizes",
            "quickstart",
            "--threads",
            "1",
            "--runs",
            "1",
        ])
        .args(["--python", "/nonexistent/python3"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("| Quickstart | 1 | train_step |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PyTorch reference skipped: cannot run /nonexistent/python3"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    for row in rows {
        assert!(row["rediff_ms"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["pytorch_ms"].is_null());
    }
    // Captions report the sampler's own share of a step.
    assert!(rows[2]["sampler_share"].as_f64().unwrap() < 1.0);
}

#[test]
fn bench_rejects_zero_runs() {
    let output = rediff().args(["bench", "--runs", "0"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--runs"));
}
