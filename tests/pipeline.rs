//! `rediff run` end to end on a tiny pipeline: the three report files, the
//! same report from the same seed, exact resumption after an interruption,
//! and `rediff generate` on the trained checkpoints.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{rediff, run_pipeline, texts, trained_run, write, TINY};
use rediff_engine::pipeline::{self, RunOptions};
use rediff_engine::PipelineConfig;
use rediff_report::Report;

fn report(dir: &std::path::Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// Everything in a report that must not depend on timing.
fn deterministic(r: &Report) -> serde_json::Value {
    let losses: Vec<_> = r
        .training
        .iter()
        .map(|t| (&t.name, &t.losses, &t.synthesized, &t.dropped))
        .collect();
    serde_json::json!({
        "results": r.results,
        "examples": r.examples,
        "training": losses,
        "data": r.data,
    })
}

#[test]
fn run_writes_the_three_report_files_with_every_setting() {
    let out = trained_run();
    for f in [
        "report.json",
        "report.md",
        "quality_vs_parallelism.png",
        "pipeline.toml",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let r = report(out);
    let metrics: Vec<(&str, bool)> = r
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.higher_is_better))
        .collect();
    assert_eq!(
        metrics,
        [
            ("factuality", true),
            ("coverage", true),
            ("grammar", true),
            ("repetition", false)
        ]
    );
    // 3 models x 2 samplers x 2 tokens-per-step settings.
    assert_eq!(r.results.len(), 12);
    for model in ["baseline", "rediff-base", "rediff"] {
        for sampler in ["denoise", "refine"] {
            for tps in [1, 8] {
                let row = r.result(model, sampler, tps).unwrap();
                assert_eq!(row.samples, 12);
                assert_eq!(row.steps, 24 / tps);
                // The shapes scorer's four metrics, through the generic path.
                let names: Vec<&str> = row.metrics.iter().map(|(n, _)| n).collect();
                assert_eq!(names, ["factuality", "coverage", "grammar", "repetition"]);
                for (_, v) in row.metrics.iter() {
                    assert!((0.0..=1.0).contains(&v));
                }
            }
        }
    }
    // baseline, Stage I, two Stage II rounds.
    let names: Vec<&str> = r.training.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["baseline", "rediff-base", "rediff-r1", "rediff"]);
    assert_eq!(r.training[0].steps, 300);
    assert_eq!(r.data.train_pairs, 60);
    // Stage I used both synthesizers; the baseline only the masked one.
    assert_eq!(r.training[0].synthesized.len(), 1);
    assert_eq!(r.training[1].synthesized.len(), 2);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| rediff-base | refine | 8 | 3 |"), "{md}");
    assert!(md.contains("| rediff | refine | 8 | 3 |"), "{md}");
    // Stage II: one entry per round with the expert-side statistics.
    let s2 = r.stage2.as_ref().unwrap();
    assert_eq!(s2.expert, "oracle");
    assert_eq!(s2.rounds.len(), 2);
    for (k, round) in s2.rounds.iter().enumerate() {
        let e = &round.expert;
        assert_eq!(round.drafts, 24);
        assert_eq!(e.reviewed + e.failed + round.drafts_without_end, 24);
        assert_eq!(e.right + e.corrected + e.uncorrected, e.reviewed);
        assert_eq!(
            e.pairs_kept + e.pairs_dropped.values().sum::<usize>(),
            e.pairs_proposed
        );
        assert_eq!(round.samples, e.corrected);
        assert_eq!(round.results.len(), 4, "round {k} is evaluated");
    }
    assert_eq!(s2.rounds[0].model, "rediff-r1");
    assert!(md.contains("## Stage II (expert `oracle`)"), "{md}");
    assert!(out.join("models/rediff/config.json").exists());
    assert!(out.join("stage2/round-2/dataset.json").exists());
    assert!(md.contains("quality_vs_parallelism.png"));
}

#[test]
fn same_seed_gives_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write(dir.path(), "tiny.toml", TINY);
    let again = dir.path().join("again");
    run_pipeline(&pipeline, &again, &[]);
    assert!(
        deterministic(&report(trained_run())) == deterministic(&report(&again)),
        "two runs with one seed differ"
    );
    // Another seed gives other data and other numbers.
    let other = dir.path().join("other");
    run_pipeline(&pipeline, &other, &["--seed", "6"]);
    assert_ne!(
        deterministic(&report(trained_run())),
        deterministic(&report(&other))
    );
}

#[test]
fn interrupted_run_resumes_to_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = TINY.replace("steps = 300", "steps = 360");
    text = text.replace("checkpoint_every = 10", "checkpoint_every = 7");
    let cfg = PipelineConfig::parse("tiny.toml", &text).unwrap();
    let registry = common::builtin_registry();
    let options = |out: &str, resume: bool, flag: Arc<AtomicBool>| RunOptions {
        resume,
        interrupt: flag,
        ..RunOptions::new(dir.path().join(out))
    };
    let straight =
        pipeline::run(&cfg, &registry, &options("straight", false, Arc::default())).unwrap();

    // Interrupt once the first resumable checkpoint exists.
    let flag = Arc::new(AtomicBool::new(false));
    let watcher = {
        let flag = flag.clone();
        let state = dir
            .path()
            .join("cut/checkpoints/baseline/latest/trainer_state.json");
        std::thread::spawn(move || {
            for _ in 0..6000 {
                if state.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            flag.store(true, Ordering::SeqCst);
        })
    };
    let first = pipeline::run(&cfg, &registry, &options("cut", false, flag));
    watcher.join().unwrap();
    assert!(
        matches!(first, Err(rediff_api::Error::Interrupted)),
        "the run should have been interrupted: {:?}",
        first.map(|r| r.results.len())
    );
    let resumed = pipeline::run(&cfg, &registry, &options("cut", true, Arc::default())).unwrap();
    assert!(
        deterministic(&straight) == deterministic(&resumed),
        "the resumed run differs from the uninterrupted one"
    );
}

#[test]
fn generate_captions_an_image_and_traces_refinement() {
    let out = trained_run();
    let image = out.join("data/images/eval-00001.png");
    for sampler in ["denoise", "refine"] {
        let output = rediff()
            .arg("generate")
            .arg("--model")
            .arg(out.join("models/rediff-base"))
            .arg("--image")
            .arg(&image)
            .args(["--steps", "6", "--sampler", sampler, "--trace"])
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&output);
        assert!(output.status.success(), "{stderr}");
        let steps: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("block 0 step"))
            .collect();
        assert!(!steps.is_empty() && steps.len() <= 6, "{stdout}");
        assert!(
            steps[0].contains('['),
            "newly decoded tokens are marked: {}",
            steps[0]
        );
        assert!(
            steps[0].contains('_'),
            "masked positions are shown: {}",
            steps[0]
        );
        assert!(stdout.contains("forward passes"));
    }
}

#[test]
fn help_explains_every_flag() {
    let output = rediff().args(["run", "--help"]).output().unwrap();
    let (stdout, _) = texts(&output);
    for flag in [
        "--out",
        "--resume",
        "--retry-all",
        "--accept-changes",
        "--dry-run",
        "--seed",
        "--threads",
        "--quiet",
        "--plugin",
    ] {
        assert!(stdout.contains(flag), "{flag} missing from help");
    }
    let output = rediff().args(["generate", "--help"]).output().unwrap();
    let (stdout, _) = texts(&output);
    for flag in [
        "--model",
        "--image",
        "--steps",
        "--gen-length",
        "--block-length",
        "--sampler",
        "--trace",
        "--policy",
    ] {
        assert!(stdout.contains(flag), "{flag} missing from help");
    }
}

#[test]
fn components_and_check_show_the_assembled_pipeline() {
    let output = rediff().arg("components").output().unwrap();
    let (stdout, _) = texts(&output);
    for name in [
        "tiny-vlm",
        "shapes",
        "linear",
        "masked",
        "random-replace",
        "span-pairs",
        "none",
        "refine",
        "oracle",
    ] {
        assert!(stdout.contains(name), "{name} missing:\n{stdout}");
    }
    assert!(stdout.contains("built-in (rediff-standard)"));
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write(dir.path(), "tiny.toml", TINY);
    let output = rediff().arg("check").arg(&pipeline).output().unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("stage1.synthesizers[1]") && stdout.contains("span-pairs"),
        "{stdout}"
    );
    // The shapes pipelines shipped in configs/ are valid too.
    for config in [
        "configs/quickstart.toml",
        "configs/probe-vision.toml",
        "configs/seeds.toml",
    ] {
        let output = rediff().args(["check", config]).output().unwrap();
        assert!(output.status.success(), "{config}: {}", texts(&output).1);
    }
}

/// configs/seeds.toml is the quickstart repeated over seeds: it may differ
/// only in its seeds, its run directory and the size of its evaluation set,
/// so the study measures the pipeline `rediff run` runs.
#[test]
fn seeds_config_trains_what_the_quickstart_trains() {
    let read = |file: &str| -> toml::Table {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        toml::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let (mut quick, mut study) = (read("configs/quickstart.toml"), read("configs/seeds.toml"));
    let seeds = study.get("seeds").and_then(|v| v.as_array());
    let seeds = seeds.expect("seeds.toml sets `seeds`");
    assert!(seeds.len() >= 5, "a study needs at least five seeds");
    for table in [&mut quick, &mut study] {
        for key in ["seed", "seeds", "out_dir"] {
            table.remove(key);
        }
        for (section, key) in [("data", "eval_samples"), ("eval", "samples")] {
            let section = table.get_mut(section).and_then(|v| v.as_table_mut());
            section.expect("a [data] and an [eval] table").remove(key);
        }
    }
    assert_eq!(
        quick, study,
        "configs/seeds.toml drifted from configs/quickstart.toml"
    );
}

/// The evaluation files shipped in configs/ (for `rediff eval`) parse for
/// the quickstart's response length, and every sampler's policy builds.
#[test]
fn shipped_evaluation_files_parse_and_their_policies_build() {
    let registry = rediff_builtins::registry().unwrap();
    let ctx = rediff_api::registry::BuildContext::new(0);
    for file in [
        "configs/refiners.toml",
        "configs/fast-sampling.toml",
        "configs/remasking.toml",
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let (eval, _) = rediff_engine::config::EvalConfig::from_file(&path, 24)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!eval.samplers.is_empty(), "{file}");
        for s in &eval.samplers {
            if let Err(e) = registry.build_policy(&s.policy, &ctx) {
                panic!("{file}: sampler {}: {e}", s.name);
            }
        }
    }
}
