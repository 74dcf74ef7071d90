//! Round trips and rendering of the report.

use super::*;

fn row(model: &str, sampler: &str, tps: usize, f: f64) -> EvalRow {
    EvalRow {
        model: model.into(),
        sampler: sampler.into(),
        tokens_per_step: tps,
        steps: 24 / tps,
        metrics: Named(vec![
            ("factuality".into(), f),
            ("coverage".into(), f),
            ("grammar".into(), f),
            ("repetition".into(), 1.0 - f),
        ]),
        samples: 10,
        revisions_per_caption: 0.0,
        intervals: Named(vec![("factuality".into(), [f - 0.05, f + 0.05])]),
        nfe_per_caption: 24.0 / tps as f64,
        tokens_per_forward: tps as f64,
        ..Default::default()
    }
}

#[test]
fn writes_the_three_files() {
    let dir = tempfile::tempdir().unwrap();
    let report = Report {
        pipeline: "p.toml".into(),
        results: vec![
            row("baseline", "denoise", 1, 0.9),
            row("baseline", "denoise", 8, 0.5),
            row("rediff-base", "refine", 1, 0.92),
            row("rediff-base", "refine", 8, 0.8),
        ],
        ..Default::default()
    };
    report.write(dir.path()).unwrap();
    let back: Report =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(JSON_FILE)).unwrap())
            .unwrap();
    assert_eq!(back, report);
    let png = std::fs::read(dir.path().join(PLOT_FILE)).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let md = std::fs::read_to_string(dir.path().join(MARKDOWN_FILE)).unwrap();
    assert!(
        md.contains("| rediff-base | refine | 8 | 3 | 0.800 [0.750, 0.850] | 0.800 |"),
        "{md}"
    );
    assert_eq!(
        report
            .result("baseline", "denoise", 8)
            .unwrap()
            .metric("factuality")
            .unwrap(),
        0.5
    );
}

#[test]
fn stage2_failures_and_empty_rounds_are_spelled_out() {
    let expert = ExpertStats {
        failed: 5,
        failures: [("unparseable".to_string(), 4), ("http-500".to_string(), 1)].into(),
        failure_examples: [(
            "unparseable".to_string(),
            "unparseable reply: hm".to_string(),
        )]
        .into(),
        ..Default::default()
    };
    let s2 = Stage2Report {
        expert: "openai".into(),
        rounds: vec![
            RoundReport {
                round: 1,
                model: "rediff-r1".into(),
                ..Default::default()
            },
            RoundReport {
                round: 2,
                model: "rediff".into(),
                expert,
                failed: Some("Stage II round 2 failed: 0 of the 5 drafts".into()),
                ..Default::default()
            },
        ],
    };
    let md = markdown::stage2_section(&s2, &[]);
    assert!(md.contains("Round 1 trained on nothing"), "{md}");
    assert!(
        md.contains("Round 2 expert failures by kind: unparseable 4 (\"unparseable reply: hm\"), http-500 1."),
        "{md}"
    );
    assert!(md.contains("**Stage II round 2 failed"), "{md}");
    assert_eq!(
        s2.failure(),
        Some("Stage II round 2 failed: 0 of the 5 drafts")
    );
    let summary = s2.summary();
    assert!(
        summary.contains("round 1 (rediff-r1)") && summary.contains("trained on nothing"),
        "{summary}"
    );
    assert!(
        summary.contains("5 failed: unparseable 4") && summary.contains("FAILED"),
        "{summary}"
    );
}

#[test]
fn matched_table_picks_the_nearest_speed_per_policy() {
    let mut a = row("m", "threshold@0.9", 1, 0.7);
    a.tokens_per_forward = 2.2;
    let mut b = row("m", "threshold@0.5", 1, 0.6);
    b.tokens_per_forward = 7.0;
    let mut c = row("m", "denoise", 4, 0.5);
    c.tokens_per_forward = 3.5;
    let table = markdown::matched_table(&[], &[a, b, c], 1);
    let line = |p: &str| table.lines().find(|l| l.contains(p)).unwrap().to_string();
    // ~2 -> 2.2, ~8 -> 7.0; nothing near 1 or 4 (4 / 2.2 > 1.5, 7.0 / 4 > 1.5).
    assert_eq!(
        line("| threshold |"),
        "| m | threshold | factuality | | 0.700 [0.65, 0.75] @2.2 | | 0.600 [0.55, 0.65] @7.0 |"
    );
    assert!(
        line("| denoise |").contains("| 0.500 [0.45, 0.55] @3.5 | |"),
        "{table}"
    );
}

#[test]
fn a_report_without_results_still_writes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    Report::default().write(dir.path()).unwrap();
    assert!(dir.path().join(PLOT_FILE).exists());
}
