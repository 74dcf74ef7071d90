//! `rediff generate --images DIR --out preds.json`: batch captioning into the
//! predictions format, and its errors.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{rediff, texts, trained_run};

/// The shared tiny run (its models write captions with words in them).
fn captioning_run() -> &'static Path {
    trained_run()
}

/// Copies three rendered eval images into `dir` under new names, plus files
/// batch mode must skip.
fn image_dir(dir: &Path) -> Vec<String> {
    let src = captioning_run().join("data/images");
    let names = vec![
        "a-first.png".to_string(),
        "b-second.PNG".to_string(),
        "c-third.png".to_string(),
    ];
    for (i, name) in names.iter().enumerate() {
        std::fs::copy(src.join(format!("eval-{i:05}.png")), dir.join(name)).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    std::fs::create_dir(dir.join("nested.png")).unwrap();
    names
}

/// Runs `rediff generate --model MODEL --images IMAGES --out OUT ARGS...`.
fn generate_batch(model: &Path, images: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    rediff()
        .arg("generate")
        .arg("--model")
        .arg(model)
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn generate_captions_a_directory_into_predictions() {
    let model = captioning_run().join("models/rediff-base");
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let names = image_dir(&images);
    let out = tmp.path().join("out/preds.json");
    let output = generate_batch(
        &model,
        &images,
        &out,
        &["--batch-size", "2", "--steps", "6"],
    );
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("captioned 3 images") && stdout.contains("preds.json"),
        "{stdout}"
    );
    let preds: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(preds.keys().cloned().collect::<Vec<_>>(), names);
    for (name, caption) in &preds {
        assert!(!caption.trim().is_empty(), "{name}: empty caption");
    }
    // The batch size does not change greedy captions.
    let again = tmp.path().join("again.json");
    let output = generate_batch(&model, &images, &again, &["--steps", "6", "--quiet"]);
    assert!(output.status.success(), "{}", texts(&output).1);
    let again: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    assert_eq!(again, preds);
    // And batch mode captions like single-image mode.
    let output = rediff()
        .arg("generate")
        .arg("--model")
        .arg(&model)
        .arg("--image")
        .arg(images.join(&names[1]))
        .args(["--steps", "6"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), preds[&names[1]]);
}

fn assert_fails(args: &[&str], extra: &[&Path], expect: &[&str]) {
    let mut cmd = rediff();
    cmd.args(args);
    for p in extra {
        cmd.arg(p);
    }
    let output = cmd.output().unwrap();
    let (_, stderr) = texts(&output);
    assert!(!output.status.success(), "expected failure: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for e in expect {
        assert!(stderr.contains(e), "`{e}` missing from: {stderr}");
    }
}

#[test]
fn missing_directory_and_bad_images_are_clear_errors() {
    let model = captioning_run().join("models/rediff-base");
    let model = model.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dir");
    let out = tmp.path().join("preds.json");
    assert_fails(
        &[
            "generate",
            "--model",
            model,
            "--out",
            out.to_str().unwrap(),
            "--images",
        ],
        &[&missing],
        &["error:", "--images", "no-such-dir"],
    );
    // A directory without images.
    assert_fails(
        &[
            "generate",
            "--model",
            model,
            "--out",
            out.to_str().unwrap(),
            "--images",
        ],
        &[tmp.path()],
        &["no .png, .jpg or .jpeg files"],
    );
    // A corrupt image names the file, and no predictions are written.
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    image_dir(&images);
    std::fs::write(images.join("broken.jpg"), b"not a jpeg").unwrap();
    assert_fails(
        &[
            "generate",
            "--model",
            model,
            "--out",
            out.to_str().unwrap(),
            "--images",
        ],
        &[&images],
        &["broken.jpg"],
    );
    assert!(!out.exists());
    // --image and --images exclude each other; --images needs --out.
    let one = images.join("a-first.png");
    let one = one.to_str().unwrap();
    assert_fails(
        &["generate", "--model", model, "--image", one, "--images"],
        &[&images],
        &["--image"],
    );
    assert_fails(
        &["generate", "--model", model, "--images"],
        &[&images],
        &["--out"],
    );
    assert_fails(&["generate", "--model", model], &[], &["--image"]);
}

#[test]
fn generate_help_explains_batch_mode() {
    let output = rediff().args(["generate", "--help"]).output().unwrap();
    let (stdout, _) = texts(&output);
    for flag in ["--images", "--out", "--batch-size", "--quiet", "CapMAS"] {
        assert!(stdout.contains(flag), "{flag} missing from help:\n{stdout}");
    }
}

#[test]
fn a_stopped_batch_run_resumes_where_it_stopped() {
    let model = captioning_run().join("models/rediff-base");
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let names = image_dir(&images);
    let out = tmp.path().join("preds.json");
    let args = ["--batch-size", "1", "--steps", "6", "--quiet"];
    let output = generate_batch(&model, &images, &out, &args);
    assert!(output.status.success(), "{}", texts(&output).1);
    let full: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    // As a run killed after its first batch leaves the file.
    let mut partial = full.clone();
    partial.retain(|k, _| k == &names[0]);
    std::fs::write(&out, serde_json::to_string(&partial).unwrap()).unwrap();
    let output = generate_batch(&model, &images, &out, &args);
    assert!(!output.status.success());
    assert!(
        texts(&output).1.contains("--resume"),
        "{}",
        texts(&output).1
    );
    let mut resumed_args = args.to_vec();
    resumed_args.push("--resume");
    let output = generate_batch(&model, &images, &out, &resumed_args);
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("captioned 2 images (1 already in the file)"),
        "{stdout}"
    );
    let resumed: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(resumed, full);
}
