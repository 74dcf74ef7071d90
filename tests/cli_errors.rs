//! Bad input gets a one-line error naming the place, a non-zero exit, and
//! never a panic or a backtrace.

mod common;

use common::{rediff, texts, trained_run, write, TINY};

fn assert_clean_failure(output: &std::process::Output, must_contain: &[&str]) {
    let (out, err) = texts(output);
    assert!(!output.status.success(), "expected failure:\n{out}\n{err}");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{err}");
    for needle in must_contain {
        assert!(
            lines[0].contains(needle),
            "`{needle}` missing from: {}",
            lines[0]
        );
    }
}

fn check(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "p.toml", text);
    rediff().arg("check").arg(&path).output().unwrap()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn misspelt_keys_name_file_line_and_column() {
    let text = TINY.replace("seed = 5", "sed = 5");
    assert_clean_failure(
        &check(&text),
        &["p.toml:2:1", "unknown field `sed`", "seed"],
    );
    let text = TINY.replace("rate = 0.05", "rat = 0.05");
    let line = line_of(&text, "rat = 0.05");
    assert_clean_failure(
        &check(&text),
        &[&format!("p.toml:{line}:"), "unknown field `rat`", "`rate`"],
    );
    let text = TINY.replace("hidden_size = 32", "hiden_size = 32");
    let line = line_of(&text, "hiden_size");
    assert_clean_failure(
        &check(&text),
        &[
            &format!("p.toml:{line}:1"),
            "unknown field `hiden_size`",
            "hidden_size",
        ],
    );
}

#[test]
fn wrong_types_name_file_line_and_column() {
    let text = TINY.replace("train_samples = 120", "train_samples = \"many\"");
    let line = line_of(&text, "train_samples");
    assert_clean_failure(
        &check(&text),
        &[
            &format!("p.toml:{line}:17"),
            "invalid type: string \"many\"",
        ],
    );
}

#[test]
fn unknown_kinds_list_the_registered_ones() {
    let text = TINY.replace("kind = \"span-pairs\"", "kind = \"span-pair\"");
    assert_clean_failure(
        &check(&text),
        &[
            "p.toml:",
            "unknown synthesizer `span-pair`",
            "masked, random-replace, span-pairs",
        ],
    );
    let text = TINY.replace("kind = \"tiny-vlm\"", "kind = \"huge-vlm\"");
    assert_clean_failure(&check(&text), &["unknown model `huge-vlm`", "tiny-vlm"]);
}

#[test]
fn invalid_values_and_missing_files_are_reported() {
    let text = TINY.replace("tokens_per_step = [1, 8]", "tokens_per_step = [1, 5]");
    assert_clean_failure(&check(&text), &["p.toml:", "tokens_per_step 5"]);
    let out = rediff()
        .args(["check", "/nonexistent/p.toml"])
        .output()
        .unwrap();
    assert_clean_failure(&out, &["/nonexistent/p.toml"]);
    // A number out of range fails `rediff check` at its key, not the stage
    // that would use it minutes into a run.
    let text = TINY.replace("batch_size = 16", "batch_size = 16\nema = 1.5");
    let line = line_of(&text, "ema = 1.5");
    assert_clean_failure(
        &check(&text),
        &[
            &format!("p.toml:{line}:7:"),
            "train.ema must lie in [0, 1), got 1.5",
        ],
    );
    let text = TINY.replace("num_heads = 2", "num_heads = 3");
    assert_clean_failure(
        &check(&text),
        &["p.toml:", "num_heads 3 must divide hidden_size 32"],
    );
}

#[test]
fn missing_image_names_the_file() {
    let model = trained_run().join("models/rediff-base");
    let out = rediff()
        .arg("generate")
        .arg("--model")
        .arg(&model)
        .args(["--image", "/no/such/picture.png"])
        .output()
        .unwrap();
    assert_clean_failure(&out, &["/no/such/picture.png", "not found"]);
}

#[test]
fn truncated_checkpoint_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let src = trained_run().join("models/rediff-base");
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(f), model.join(f)).unwrap();
    }
    let weights = model.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 3]).unwrap();
    let image = trained_run().join("data/images/eval-00000.png");
    let out = rediff()
        .arg("generate")
        .arg("--model")
        .arg(&model)
        .arg("--image")
        .arg(&image)
        .output()
        .unwrap();
    assert_clean_failure(&out, &["model.safetensors", "truncated"]);
    std::fs::remove_file(model.join("config.json")).unwrap();
    let out = rediff()
        .arg("generate")
        .arg("--model")
        .arg(&model)
        .arg("--image")
        .arg(&image)
        .output()
        .unwrap();
    assert_clean_failure(&out, &["config.json"]);
}

#[test]
fn openai_options_are_checked_at_check_time_with_their_place() {
    // (options after kind, the value the error points at, what it says)
    let cases = [
        (
            "base_url = \"http://h/v1\", model = \"m\", timeout_s = inf",
            "inf",
            "timeout_s must be a number of seconds in (0, 3600]",
        ),
        (
            "base_url = \"http://h/v1\", model = \"m\", max_concurrency = 0",
            "0 }",
            "max_concurrency must be at least 1",
        ),
        (
            "base_url = \"localhost:8000/v1\", model = \"m\"",
            "\"localhost",
            "http:// or https://",
        ),
        (
            "base_url = \"\", model = \"m\"",
            "\"\"",
            "base_url is empty",
        ),
        (
            "base_url = \"http://h/v1\", model = \"m\", api_key_env = \"\"",
            "\"\" }",
            "api_key_env is empty",
        ),
        (
            "base_url = \"http://h/v1\", model = \"m\", headers_env = { \"api-key\" = \"\" }",
            "{ \"api-key\"",
            "headers_env names no variable",
        ),
        (
            "base_url = \"http://h/v1\", model = \"m\", headers = { \"api-key\" = \"k-123\" }",
            "{ \"api-key\"",
            "use headers_env",
        ),
        (
            "base_url = \"http://h/v1\", model = \"m\", image = \"jpeg\"",
            "\"jpeg\"",
            "expected `data_url` or `none`",
        ),
        (
            "base_url = \"http://h/v1\", model = \"m\", token_field = \"max_token\"",
            "\"max_token\"",
            "expected one of `max_tokens`, `max_completion_tokens`, `both`",
        ),
    ];
    for (options, at, message) in cases {
        let expert = format!("expert = {{ kind = \"openai\", {options} }}");
        let text = TINY.replace("expert = { kind = \"oracle\" }", &expert);
        let line = line_of(&text, "kind = \"openai\"");
        let column = expert.find(at).unwrap() + 1;
        assert_clean_failure(
            &check(&text),
            &[&format!("p.toml:{line}:{column}:"), message],
        );
    }
    let text = TINY.replace(
        "stage1_share = 0.5",
        "stage1_share = 0.5\nmin_reviewed = 2.0",
    );
    let line = line_of(&text, "min_reviewed");
    assert_clean_failure(
        &check(&text),
        &[
            &format!("p.toml:{line}:16:"),
            "min_reviewed must lie in [0, 1]",
        ],
    );
}

#[test]
fn a_closed_stdout_ends_output_quietly() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write(dir.path(), "p.toml", TINY);
    let out = dir.path().join("run");
    let runs: [&[&str]; 3] = [
        &["components"],
        &["check", pipeline.to_str().unwrap()],
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--dry-run",
            "--out",
            out.to_str().unwrap(),
        ],
    ];
    for args in runs {
        let mut child = rediff()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command prints (`rediff ... | head -0`).
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let (_, err) = texts(&output);
        assert!(output.status.success(), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
