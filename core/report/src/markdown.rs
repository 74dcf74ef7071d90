//! `report.md`: Markdown tables over whatever metrics the scorer names.

use std::fmt::Write as _;

use rediff_api::MetricInfo;

use crate::results::EvalRow;
use crate::stage2::Stage2Report;
use crate::{Report, PLOT_FILE};

/// Metric columns: the declared metrics, or (for a report without
/// declarations) the names the first row carries.
fn metric_names<'a>(
    metrics: &[MetricInfo],
    mut rows: impl Iterator<Item = &'a EvalRow>,
) -> Vec<String> {
    if !metrics.is_empty() {
        return metrics.iter().map(|m| m.name.clone()).collect();
    }
    rows.next()
        .map(|r| r.metrics.iter().map(|(n, _)| n.to_string()).collect())
        .unwrap_or_default()
}

/// ` 0.912 | 0.850 |` for `names` (an empty cell for a metric the row lacks).
fn metric_cells(names: &[String], row: &EvalRow) -> String {
    names
        .iter()
        .map(|n| match row.metric(n) {
            Some(v) => format!(" {v:.3} |"),
            None => " |".to_string(),
        })
        .collect()
}

/// The results table: one row per model x sampler x tokens per step, one
/// column per metric.
pub fn results_table(metrics: &[MetricInfo], rows: &[EvalRow]) -> String {
    let names = metric_names(metrics, rows.iter());
    let mut s = format!(
        "| model | sampler | tokens/step | steps |{} revisions/caption | samples |\n|---|---|---:|---:|{}---:|---:|\n",
        names.iter().map(|n| format!(" {n} |")).collect::<String>(),
        "---:|".repeat(names.len())
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |{} {:.2} | {} |",
            r.model,
            r.sampler,
            r.tokens_per_step,
            r.steps,
            metric_cells(&names, r),
            r.revisions_per_caption,
            r.samples
        );
    }
    s
}

/// `report.md`: the results table, Stage II, training, timings and example captions.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# rediff report\n");
    let _ = writeln!(
        s,
        "Pipeline `{}`, seed {}, response length {} tokens. Training data: {} clean captions and {} hallucination-pair samples; {} held-out images scored per setting.\n",
        r.pipeline, r.seed, r.gen_length, r.data.train_clean, r.data.train_pairs, r.data.eval
    );
    let _ = writeln!(s, "![quality vs parallelism]({PLOT_FILE})\n");
    let _ = writeln!(s, "## Results\n");
    if !r.metrics.is_empty() {
        let legend: Vec<String> = r
            .metrics
            .iter()
            .map(|m| format!("*{}*: {}.", m.name, m.description))
            .collect();
        let _ = writeln!(s, "{}\n", legend.join(" "));
    }
    if r.results.is_empty() {
        let _ = writeln!(
            s,
            "No results: the data source has no ground truth to score captions against. Caption the held-out images with `rediff generate --images DIR --out preds.json` and score the predictions with CapMAS or CapArena."
        );
    } else {
        s.push_str(&results_table(&r.metrics, &r.results));
    }
    if let Some(s2) = &r.stage2 {
        s.push_str(&stage2_section(s2, &r.metrics));
    }
    let _ = writeln!(s, "\n## Training\n");
    let _ = writeln!(s, "| stage | steps | seconds | steps/s | final loss | examples by synthesizer | dropped |\n|---|---:|---:|---:|---:|---|---|");
    for t in &r.training {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.2} | {:.4} | {:?} | {:?} |",
            t.name, t.steps, t.seconds, t.steps_per_second, t.final_loss, t.synthesized, t.dropped
        );
    }
    let _ = writeln!(s, "\n## Timings\n");
    let t = &r.timings;
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
    for set in &r.examples {
        let _ = writeln!(
            s,
            "### {} / {} / {} tokens per step\n",
            set.model, set.sampler, set.tokens_per_step
        );
        for e in &set.examples {
            let _ = writeln!(
                s,
                "- `{}`: {}{}\n  - reference: {}",
                e.id, e.caption, e.note, e.reference
            );
        }
        s.push('\n');
    }
    s
}

/// The Stage II section of `report.md`.
pub fn stage2_section(s2: &Stage2Report, metrics: &[MetricInfo]) -> String {
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
        let names = metric_names(metrics, s2.rounds.iter().flat_map(|r| &r.results));
        let _ = writeln!(
            s,
            "| round | model | sampler | tokens/step |{}\n|---:|---|---|---:|{}",
            names.iter().map(|n| format!(" {n} |")).collect::<String>(),
            "---:|".repeat(names.len())
        );
        for r in &s2.rounds {
            for row in &r.results {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |{}",
                    r.round,
                    r.model,
                    row.sampler,
                    row.tokens_per_step,
                    metric_cells(&names, row)
                );
            }
        }
    }
    s
}
