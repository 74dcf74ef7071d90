//! The run report: `report.json` (machine-readable), `report.md` (table and
//! example captions) and `quality_vs_parallelism.png` (factuality and
//! grammar against tokens per step, one line per model x sampler).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint::write_json;
use crate::error::{Error, Result};
use crate::eval::{EvalRow, Example, StepTiming};
use crate::stage2::Stage2Report;
use crate::train::StageReport;

/// Example captions of one setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleSet {
    /// Model name.
    pub model: String,
    /// Sampler name.
    pub sampler: String,
    /// Tokens per step.
    pub tokens_per_step: usize,
    /// The captions.
    pub examples: Vec<Example>,
}

/// Data the run used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// Training samples with clean answers.
    pub train_clean: usize,
    /// Training samples carrying hallucination pairs.
    pub train_pairs: usize,
    /// Held-out samples scored per setting.
    pub eval: usize,
}

/// Where the time went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Whole run, seconds.
    pub total_seconds: f64,
    /// Data preparation (rendering, loading images), seconds.
    pub data_seconds: f64,
    /// Training wall time per stage, seconds.
    pub training_seconds: BTreeMap<String, f64>,
    /// Optimiser steps per second per stage.
    pub train_steps_per_second: BTreeMap<String, f64>,
    /// Evaluation time, seconds, summed over models (they may run concurrently).
    pub eval_seconds: f64,
    /// Per evaluation setting: forward pass vs the sampler's own work.
    pub sampler_steps: Vec<StepTiming>,
    /// Largest share of a sampler step spent outside the forward pass.
    pub max_sampler_share: f64,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Pipeline file.
    pub pipeline: String,
    /// Seed.
    pub seed: u64,
    /// Response length.
    pub gen_length: usize,
    /// Data summary.
    pub data: DataSummary,
    /// One row per model x sampler x tokens per step.
    pub results: Vec<EvalRow>,
    /// Example captions per setting.
    pub examples: Vec<ExampleSet>,
    /// Training stages (loss curves, synthesizer counts, dropped pairs).
    pub training: Vec<StageReport>,
    /// Timings.
    pub timings: Timings,
    /// Stage II rounds, when the pipeline has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage2: Option<Stage2Report>,
}

/// Report file names.
pub const JSON_FILE: &str = "report.json";
/// Markdown report.
pub const MARKDOWN_FILE: &str = "report.md";
/// The plot.
pub const PLOT_FILE: &str = "quality_vs_parallelism.png";

impl Report {
    /// The result for a setting, if evaluated.
    pub fn result(&self, model: &str, sampler: &str, tokens_per_step: usize) -> Option<&EvalRow> {
        self.results.iter().find(|r| {
            r.model == model && r.sampler == sampler && r.tokens_per_step == tokens_per_step
        })
    }

    /// The results table as Markdown.
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| model | sampler | tokens/step | steps | factuality | coverage | grammar | repetition | revisions/caption | samples |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.results {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {} |",
                r.model,
                r.sampler,
                r.tokens_per_step,
                r.steps,
                r.factuality,
                r.coverage,
                r.grammar,
                r.repetition,
                r.revisions_per_caption,
                r.samples
            );
        }
        s
    }

    /// Writes `report.json`, `report.md` and the plot into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join(JSON_FILE), self)?;
        plot(self, &dir.join(PLOT_FILE))?;
        let md = self.markdown();
        let path = dir.join(MARKDOWN_FILE);
        std::fs::write(&path, md).map_err(|e| Error::io(&path, e))
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# rediff report\n");
        let _ = writeln!(
            s,
            "Pipeline `{}`, seed {}, response length {} tokens. Training data: {} clean captions and {} hallucination-pair samples; {} held-out images scored per setting.\n",
            self.pipeline, self.seed, self.gen_length, self.data.train_clean, self.data.train_pairs, self.data.eval
        );
        let _ = writeln!(s, "![quality vs parallelism]({PLOT_FILE})\n");
        let _ = writeln!(s, "## Results\n");
        let _ = writeln!(
            s,
            "*factuality*: mentioned objects right in every attribute / mentioned objects. *coverage*: scene objects described exactly / scene objects. *grammar*: captions that parse completely. *repetition*: captions that mention one object twice.\n"
        );
        if self.results.is_empty() {
            let _ = writeln!(
                s,
                "No results: the data source has no ground truth to score captions against. Caption the held-out images with `rediff generate --images DIR --out preds.json` and score the predictions with CapMAS or CapArena."
            );
        } else {
            s.push_str(&self.table());
        }
        if let Some(s2) = &self.stage2 {
            s.push_str(&stage2_markdown(s2));
        }
        let _ = writeln!(s, "\n## Training\n");
        let _ = writeln!(s, "| stage | steps | seconds | steps/s | final loss | examples by synthesizer | dropped |\n|---|---:|---:|---:|---:|---|---|");
        for t in &self.training {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.2} | {:.4} | {:?} | {:?} |",
                t.name,
                t.steps,
                t.seconds,
                t.steps_per_second,
                t.final_loss,
                t.synthesized,
                t.dropped
            );
        }
        let _ = writeln!(s, "\n## Timings\n");
        let t = &self.timings;
        let _ = writeln!(
            s,
            "Total {:.1} s: data {:.1} s, training {:.1} s, evaluation {:.1} s. The sampler's own work took at most {:.2}% of a sampling step.\n",
            t.total_seconds,
            t.data_seconds,
            t.training_seconds.values().sum::<f64>(),
            t.eval_seconds,
            100.0 * t.max_sampler_share
        );
        let _ = writeln!(s, "| model | sampler | tokens/step | forward ms/step | sampler ms/step | sampler share |\n|---|---|---:|---:|---:|---:|");
        for st in &t.sampler_steps {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {:.3} | {:.2}% |",
                st.model,
                st.sampler,
                st.tokens_per_step,
                st.forward_ms_per_step,
                st.sampler_ms_per_step,
                100.0 * st.sampler_share
            );
        }
        let _ = writeln!(s, "\n## Example captions\n");
        for set in &self.examples {
            let _ = writeln!(
                s,
                "### {} / {} / {} tokens per step\n",
                set.model, set.sampler, set.tokens_per_step
            );
            for e in &set.examples {
                let mark = if e.score.grammatical {
                    ""
                } else {
                    " *(ungrammatical)*"
                };
                let _ = writeln!(
                    s,
                    "- `{}`: {}{mark} — {}/{} mentions right\n  - reference: {}",
                    e.id, e.caption, e.score.mentioned_correct, e.score.mentioned, e.reference
                );
            }
            s.push('\n');
        }
        s
    }
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// Draws factuality, grammar and repetition against tokens per step (log2
/// axis), one line per model x sampler.
pub fn plot(report: &Report, path: &Path) -> Result<()> {
    register_font();
    let err = |e: &dyn std::fmt::Display| Error::invalid(format!("plot {}: {e}", path.display()));
    let mut series: BTreeMap<(String, String), Vec<&EvalRow>> = BTreeMap::new();
    for r in &report.results {
        series
            .entry((r.model.clone(), r.sampler.clone()))
            .or_default()
            .push(r);
    }
    let max_tps = report
        .results
        .iter()
        .map(|r| r.tokens_per_step)
        .max()
        .unwrap_or(1)
        .max(2);
    let x_max = (max_tps as f64).log2();
    let root = BitMapBackend::new(path, (1800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((1, 3));
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    for (panel, (metric, get)) in panels.iter().zip([
        (
            "factuality",
            (|r: &EvalRow| r.factuality) as fn(&EvalRow) -> f64,
        ),
        ("grammar", |r: &EvalRow| r.grammar),
        ("repetition", |r: &EvalRow| r.repetition),
    ]) {
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{metric} vs tokens per step"), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.2f64..x_max + 0.2, 0f64..1.02f64)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("tokens per step")
            .y_desc(metric)
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&|x| format!("{}", 2f64.powf(x.round())))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, ((model, sampler), rows)) in series.iter().enumerate() {
            let color = palette[i % palette.len()];
            let mut pts: Vec<(f64, f64)> = rows
                .iter()
                .map(|r| ((r.tokens_per_step as f64).log2(), get(r)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let style = ShapeStyle::from(&color).stroke_width(3);
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(|e| err(&e))?
                .label(format!("{model} / {sampler}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            // Quality falls with parallelism, repetition rises: keep the legend off the lines.
            .position(if metric == "repetition" {
                SeriesLabelPosition::UpperLeft
            } else {
                SeriesLabelPosition::LowerLeft
            })
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The Stage II section of `report.md`.
fn stage2_markdown(s2: &Stage2Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## Stage II (expert `{}`)\n", s2.expert);
    let _ = writeln!(
        s,
        "| round | model | drafts | reviewed | right | corrected | uncorrected | failed | pairs proposed | kept | dropped | notes | training samples | + Stage I | drafting s | expert s |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    );
    for r in &s2.rounds {
        let e = &r.expert;
        let dropped = if e.pairs_dropped.is_empty() {
            "none".to_string()
        } else {
            e.pairs_dropped
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            r.round,
            r.model,
            r.drafts,
            e.reviewed,
            e.right,
            e.corrected,
            e.uncorrected,
            e.failed,
            e.pairs_proposed,
            e.pairs_kept,
            dropped,
            e.notes,
            r.samples,
            r.stage1_samples,
            r.drafting_seconds,
            r.expert_seconds
        );
    }
    for r in &s2.rounds {
        if r.expert.failed > 0 {
            let _ = writeln!(
                s,
                "\nRound {} expert failures by kind: {}.",
                r.round,
                r.expert.failure_summary()
            );
        }
        if let Some(why) = &r.failed {
            let _ = writeln!(s, "\n**{why}**");
        } else if r.training.is_none() {
            let _ = writeln!(
                s,
                "\nRound {} trained on nothing (no corrected draft): `{}` is the previous model and has no rows of its own.",
                r.round, r.model
            );
        }
    }
    if let Some(u) = s2
        .rounds
        .iter()
        .filter_map(|r| r.expert.usage)
        .reduce(|mut a, b| {
            a += b;
            a
        })
    {
        let _ = writeln!(
            s,
            "\nExpert token usage: {} prompt, {} completion.",
            u.prompt_tokens, u.completion_tokens
        );
    }
    for r in &s2.rounds {
        if r.examples.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "\n### Round {}: drafts and the expert's corrections\n",
            r.round
        );
        for e in &r.examples {
            let pairs = e
                .pairs
                .iter()
                .map(|(o, t)| format!("`{o}` → `{t}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                s,
                "- `{}` at {} tokens/step\n  - draft: {}\n  - pairs: {}\n  - corrected: {}",
                e.sample, e.tokens_per_step, e.draft, pairs, e.corrected
            );
            for n in &e.notes {
                let _ = writeln!(s, "  - note: {n}");
            }
        }
    }
    if s2.rounds.len() > 1 {
        let _ = writeln!(s, "\n### Every round\n");
        let _ = writeln!(
            s,
            "| round | model | sampler | tokens/step | factuality | coverage | grammar | repetition |\n|---:|---|---|---:|---:|---:|---:|---:|"
        );
        for r in &s2.rounds {
            for row in &r.results {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
                    r.round,
                    r.model,
                    row.sampler,
                    row.tokens_per_step,
                    row.factuality,
                    row.coverage,
                    row.grammar,
                    row.repetition
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, sampler: &str, tps: usize, f: f64) -> EvalRow {
        EvalRow {
            model: model.into(),
            sampler: sampler.into(),
            tokens_per_step: tps,
            steps: 24 / tps,
            factuality: f,
            coverage: f,
            grammar: f,
            repetition: 1.0 - f,
            samples: 10,
            revisions_per_caption: 0.0,
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
            md.contains("| rediff-base | refine | 8 | 3 | 0.800 |"),
            "{md}"
        );
        assert_eq!(
            report.result("baseline", "denoise", 8).unwrap().factuality,
            0.5
        );
    }

    #[test]
    fn stage2_failures_and_empty_rounds_are_spelled_out() {
        use crate::stage2::{ExpertStats, RoundReport, Stage2Report};
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
        let md = stage2_markdown(&s2);
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
}
