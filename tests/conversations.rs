//! A pipeline on files in the reference formats: LLaVA conversations (the
//! Stage II dataset a run exported, plus clean captions) and ViCrit pairs,
//! read by the `conversations` data source. Without ground truth the models
//! are trained and saved, and the report says why it has no results.

mod common;

use common::{run_pipeline, trained_run, write};
use rediff_report::Report;

#[test]
fn a_pipeline_trains_on_reference_format_files() {
    let run = trained_run();
    let dir = tempfile::tempdir().unwrap();
    let clean = serde_json::json!([
        {"id": 1, "image": "data/images/train-00001.png", "conversations": [
            {"from": "human", "value": "<image>\ndescribe the image ."},
            {"from": "gpt", "value": "one object : a big red circle on the left ."}]},
        {"id": 2, "image": "data/images/train-00002.png", "conversations": [
            {"from": "human", "value": "<image>\ndescribe the image ."},
            {"from": "gpt", "value": "one object : a small blue square at the right ."}]}
    ]);
    let vicrit = [
        serde_json::json!({"image": "data/images/train-00003.png", "problem": "describe the image .",
            "original_caption": "one object : a big red circle on the left .",
            "changed_caption": "one object : a big green circle on the left .",
            "solution_original": "red", "solution_target": "green"}),
        serde_json::json!({"image": "data/images/train-00004.png", "problem": "describe the image .",
            "original_caption": "one object : a small blue square at the right .",
            "changed_caption": "one object : a small blue triangle at the right .",
            "solution_original": "square", "solution_target": "triangle"}),
    ];
    write(dir.path(), "clean.json", &clean.to_string());
    write(
        dir.path(),
        "vicrit.jsonl",
        &vicrit.iter().map(|v| format!("{v}\n")).collect::<String>(),
    );
    let exported = run.join("stage2/round-1/dataset.json");
    let pipeline = format!(
        r#"
seed = 3
gen_length = 24

[data]
kind = "conversations"
train = ["clean.json", "vicrit.jsonl", "{exported}"]
image_root = "{root}"
tokenizer = "{tokenizer}"

[model]
kind = "tiny-vlm"
hidden_size = 32
num_layers = 1
num_heads = 2
intermediate_size = 48

[schedule]
kind = "linear"

[train]
batch_size = 4
warmup_steps = 2

[stage1]
steps = 12
synthesizers = [{{ kind = "random-replace" }}, {{ kind = "span-pairs" }}]

[eval]
samples = 4
tokens_per_step = [1]
samplers = [{{ name = "refine", policy = {{ kind = "refine" }} }}]
"#,
        exported = exported.display(),
        root = run.display(),
        tokenizer = run.join("data/tokenizer.json").display(),
    );
    // The two relative paths resolve against the pipeline file's directory.
    let path = write(dir.path(), "files.toml", &pipeline);
    let out = dir.path().join("out");
    run_pipeline(&path, &out, &[]);
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert!(report.results.is_empty());
    let corrected = rediff_formats::reference::read_conversations(&exported)
        .unwrap()
        .len();
    assert!(corrected > 0);
    assert_eq!(report.data.train_clean, 2);
    assert_eq!(report.data.train_pairs, 2 + corrected);
    // Both synthesizers made examples: clean captions and pair samples.
    assert_eq!(
        report.training[0].synthesized.len(),
        2,
        "{:?}",
        report.training[0]
    );
    assert!(out.join("models/rediff-base/config.json").exists());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("no ground truth"), "{md}");
}
