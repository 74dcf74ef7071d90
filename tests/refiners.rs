//! Pluggable refiners end to end: `rediff eval` re-evaluates a finished run
//! with every built-in policy (intervals, NFE, tokens per forward), a policy
//! config error is located in the evaluation file, and `rediff run --seeds`
//! aggregates seeds.

mod common;

use common::{rediff, run_pipeline, texts, trained_run, without_stage2, write, TINY};
use rediff_report::Report;

fn report(dir: &std::path::Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

const GRID: &str = r#"
[eval]
samples = 12
tokens_per_step = [1, 4]
batch_size = 12
examples = 1
samplers = [
  { name = "denoise", policy = { kind = "none" } },
  { name = "refine", policy = { kind = "refine" } },
  { name = "threshold", policy = { kind = "threshold", threshold = 0.9 }, tokens_per_step = [1] },
  { name = "threshold-revise", policy = { kind = "threshold", threshold = 0.5, revise = true }, tokens_per_step = [1] },
  { name = "remdm", policy = { kind = "remdm", sampler = "rescale", eta = 0.5 } },
  { name = "remdm-loop", policy = { kind = "remdm", sampler = "loop" } },
  { name = "wino", policy = { kind = "wino", threshold = 0.5, threshold_back = 0.9 }, tokens_per_step = [1] },
  { name = "edit", policy = { kind = "edit" }, tokens_per_step = [1] },
]
"#;

#[test]
fn eval_reevaluates_a_finished_run_with_every_policy() {
    let run = trained_run();
    let dir = tempfile::tempdir().unwrap();
    let grid = write(dir.path(), "grid.toml", GRID);
    let out = dir.path().join("eval");
    let output = rediff()
        .args([
            "eval",
            "--quiet",
            "--models",
            "baseline,rediff-base",
            "--out",
        ])
        .arg(&out)
        .arg(run)
        .arg(&grid)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let r = report(&out);
    // 2 models x (4 samplers x 2 + 4 samplers x 1).
    assert_eq!(r.results.len(), 2 * 12);
    assert!(
        r.interval
            .contains("bootstrap over the 12 evaluation images"),
        "{}",
        r.interval
    );
    for row in &r.results {
        assert_eq!(row.samples, 12);
        assert_eq!(row.guard_stops, 0, "{row:?}");
        assert!(row.nfe_per_caption >= 1.0, "{row:?}");
        assert!(row.tokens_per_forward > 0.0, "{row:?}");
        for (name, v) in row.metrics.iter() {
            let [lo, hi] = row.interval(name).unwrap();
            assert!(lo <= v + 1e-12 && v <= hi + 1e-12, "{name}: {lo} {v} {hi}");
        }
    }
    // Fixed budgets: at 4 tokens per step a caption takes at most 6 passes.
    let denoise = r.result("baseline", "denoise", 4).unwrap();
    assert!(denoise.nfe_per_caption <= 6.0);
    // Re-evaluating the run's own grid reproduces the run's own numbers.
    let same = dir.path().join("same");
    let output = rediff()
        .args(["eval", "--quiet", "--out"])
        .arg(&same)
        .arg(run)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", texts(&output).1);
    let original = report(run);
    let again = report(&same);
    for row in &original.results {
        let other = again
            .result(&row.model, &row.sampler, row.tokens_per_step)
            .unwrap();
        assert_eq!(other.metrics, row.metrics, "{} {}", row.model, row.sampler);
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| baseline | wino | 1 | 24 |"), "{md}");
}

#[test]
fn a_bad_policy_option_in_the_grid_names_file_line_and_choices() {
    let run = trained_run();
    let dir = tempfile::tempdir().unwrap();
    let grid = write(
        dir.path(),
        "grid.toml",
        &GRID.replace("sampler = \"rescale\"", "sampler = \"rescal\""),
    );
    let output = rediff()
        .args(["eval", "--quiet"])
        .arg(run)
        .arg(&grid)
        .output()
        .unwrap();
    let (_, stderr) = texts(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("grid.toml"), "{stderr}");
    assert!(stderr.contains("rescal"), "{stderr}");
    assert!(stderr.contains("rescale"), "{stderr}");
}

#[test]
fn seeds_repeat_the_pipeline_and_aggregate_across_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let text = without_stage2(TINY)
        .replace("steps = 300", "steps = 20")
        .replace("train_samples = 120", "train_samples = 40")
        .replace(
            "samplers = [",
            "compare = [{ arm = \"rediff-base/refine\", against = \"baseline/denoise\" }]\nsamplers = [",
        );
    // A study file (`seeds` and `out_dir` set, as configs/seeds.toml).
    let text = text.replace("seed = 5", "seed = 5\nseeds = [3, 4]\nout_dir = \"run\"");
    let pipeline = write(dir.path(), "seeds.toml", &text);
    let out = dir.path().join("run");
    // --seed runs one seed of the study alone, in the study's seed-<s>/.
    let output = rediff()
        .current_dir(dir.path())
        .args(["run", "seeds.toml", "--seed", "4", "--quiet"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", texts(&output).1);
    assert!(out.join("seed-4/report.json").is_file());
    assert!(!out.join("report.json").exists() && !out.join("seed-3").exists());
    let alone = std::fs::read_to_string(out.join("seed-4/report.json")).unwrap();
    // The study, resumed, reads that seed back and runs the other.
    run_pipeline(&pipeline, &out, &["--seeds", "3,4", "--resume"]);
    let again = std::fs::read_to_string(out.join("seed-4/report.json")).unwrap();
    assert_eq!(alone, again, "a finished seed is read back, not rerun");
    let r = report(&out);
    assert_eq!(r.seeds, vec![3, 4]);
    assert!(r.interval.contains("over 2 seeds"), "{}", r.interval);
    let one = report(&out.join("seed-3"));
    let two = report(&out.join("seed-4"));
    assert_eq!(one.seed, 3);
    for row in &r.results {
        let a = one
            .result(&row.model, &row.sampler, row.tokens_per_step)
            .unwrap();
        let b = two
            .result(&row.model, &row.sampler, row.tokens_per_step)
            .unwrap();
        for (name, v) in row.metrics.iter() {
            let mean = (a.metric(name).unwrap() + b.metric(name).unwrap()) / 2.0;
            assert!((v - mean).abs() < 1e-12, "{name}");
        }
        assert_eq!(row.seeds.len(), 2);
    }
    // Each seed's own pipeline.toml runs that seed alone.
    let seed_cfg = std::fs::read_to_string(out.join("seed-4/pipeline.toml")).unwrap();
    let cfg = rediff_engine::PipelineConfig::parse("seed-4", &seed_cfg).unwrap();
    assert_eq!((cfg.seed, cfg.seeds.len()), (4, 0));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("### Per seed"), "{md}");
    // The header names the study, not the first seed.
    assert!(md.contains(", 2 seeds, response length"), "{md}");
    assert!(!md.contains("seed 3,"), "{md}");
    // The comparison is tested at both budgets on every metric, paired by seed.
    assert!(md.contains("### Comparisons"), "{md}");
    let metrics = r.metrics.len();
    assert_eq!(r.comparisons.len(), 2 * metrics);
    for c in &r.comparisons {
        assert_eq!(
            (c.arm.as_str(), c.against.as_str()),
            ("rediff-base/refine", "baseline/denoise")
        );
        let a = r
            .result("rediff-base", "refine", c.tokens_per_step)
            .unwrap();
        let b = r.result("baseline", "denoise", c.tokens_per_step).unwrap();
        let diff = a.metric(&c.metric).unwrap() - b.metric(&c.metric).unwrap();
        assert!((c.difference - diff).abs() < 1e-12);
        let [lo, hi] = c.paired_interval.unwrap();
        assert!(lo <= c.difference + 1e-12 && c.difference <= hi + 1e-12);
    }
}
