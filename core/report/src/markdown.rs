//! `report.md`: Markdown tables over whatever metrics the scorer names.

use std::fmt::Write as _;

use rediff_api::MetricInfo;

use crate::compare::ComparisonRow;
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

/// ` 0.912 [0.890, 0.931] | 0.850 |` for `names`: each value with its 95%
/// interval when the row has one (an empty cell for a metric it lacks).
fn metric_cells(names: &[String], row: &EvalRow) -> String {
    names
        .iter()
        .map(|n| match (row.metric(n), row.interval(n)) {
            (Some(v), Some([lo, hi])) => format!(" {v:.3} [{lo:.3}, {hi:.3}] |"),
            (Some(v), None) => format!(" {v:.3} |"),
            (None, _) => " |".to_string(),
        })
        .collect()
}

/// The results table: one row per model x sampler x tokens per step, one
/// column per metric.
pub fn results_table(metrics: &[MetricInfo], rows: &[EvalRow]) -> String {
    let names = metric_names(metrics, rows.iter());
    let mut s = format!(
        "| model | sampler | tokens/step | steps |{} NFE/caption | tokens/forward | revisions/caption | remasks/caption | samples |\n|---|---|---:|---:|{}---:|---:|---:|---:|---:|\n",
        names.iter().map(|n| format!(" {n} |")).collect::<String>(),
        "---:|".repeat(names.len())
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |{} {:.2} | {:.2} | {:.2} | {:.2} | {}{}{} |",
            r.model,
            r.sampler,
            r.tokens_per_step,
            r.steps,
            metric_cells(&names, r),
            r.nfe_per_caption,
            r.tokens_per_forward,
            r.revisions_per_caption,
            r.remasks_per_caption,
            r.samples,
            if r.guard_stops > 0 {
                format!(" ({} blocks cut by the step guard)", r.guard_stops)
            } else {
                String::new()
            },
            if r.score_failures > 0 {
                format!(" ({} scorings failed)", r.score_failures)
            } else {
                String::new()
            }
        );
    }
    s
}

/// The tested comparisons: difference, the paired interval (multi-seed
/// reports), whether the arms' intervals are disjoint, and the verdict.
pub fn comparisons_table(rows: &[ComparisonRow], seeds: bool) -> String {
    let mut s = String::from(if seeds {
        "Each arm against its reference at the same tokens per step. *separated*: the two 95% intervals across seeds do not overlap; only then does the verdict say better or worse. *paired*: the 95% interval of the per-seed difference.\n\n"
    } else {
        "Each arm against its reference at the same tokens per step. *separated*: the two 95% bootstrap intervals do not overlap; only then does the verdict say better or worse. One seed: a rerun with another seed can move both arms by more than these intervals.\n\n"
    });
    s.push_str("| arm | against | tokens/step | metric | arm value | reference | difference | paired interval | separated | verdict |\n|---|---|---:|---|---:|---:|---:|---|---|---|\n");
    for c in rows {
        let paired = c
            .paired_interval
            .map_or("".to_string(), |[lo, hi]| format!("[{lo:+.3}, {hi:+.3}]"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:+.3} | {} | {} | **{}** |",
            c.arm,
            c.against,
            c.tokens_per_step,
            c.metric,
            c.value,
            c.reference,
            c.difference,
            paired,
            if c.separated { "yes" } else { "no" },
            c.verdict.word()
        );
    }
    s
}

/// Tokens per forward pass the matched table is read at.
pub const MATCHED_TARGETS: [f64; 4] = [1.0, 2.0, 4.0, 8.0];

/// For each model x sampler family (the sampler name before `@`), the row
/// whose measured tokens per forward pass is nearest each target on a log
/// scale, within a factor of 1.5 (an empty cell otherwise): cells read
/// `factuality [interval] @ tokens per forward` for the first `shown`
/// metrics. Compares policies at matched speed, whatever knob sets it.
pub fn matched_table(metrics: &[MetricInfo], rows: &[EvalRow], shown: usize) -> String {
    let names: Vec<String> = metric_names(metrics, rows.iter())
        .into_iter()
        .take(shown)
        .collect();
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        let key = (r.model.as_str(), crate::plot::sampler_family(&r.sampler));
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut s = String::from("| model | policy | metric |");
    for t in MATCHED_TARGETS {
        let _ = write!(s, " ~{t} tokens/forward |");
    }
    s.push_str("\n|---|---|---|");
    s.push_str(&"---|".repeat(MATCHED_TARGETS.len()));
    s.push('\n');
    for (model, family) in keys {
        let candidates: Vec<&EvalRow> = rows
            .iter()
            .filter(|r| r.model == model && crate::plot::sampler_family(&r.sampler) == family)
            .collect();
        let nearest: Vec<Option<&EvalRow>> = MATCHED_TARGETS
            .iter()
            .map(|&t| {
                candidates
                    .iter()
                    .map(|r| (r, (r.tokens_per_forward.max(1e-9) / t).log2().abs()))
                    .filter(|(_, d)| *d <= 1.5f64.log2())
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(r, _)| *r)
            })
            .collect();
        for name in &names {
            let _ = write!(s, "| {model} | {family} | {name} |");
            for r in &nearest {
                match r.and_then(|r| Some((r, r.metric(name)?))) {
                    Some((r, v)) => match r.interval(name) {
                        Some([lo, hi]) => {
                            let _ = write!(
                                s,
                                " {v:.3} [{lo:.2}, {hi:.2}] @{:.1} |",
                                r.tokens_per_forward
                            );
                        }
                        None => {
                            let _ = write!(s, " {v:.3} @{:.1} |", r.tokens_per_forward);
                        }
                    },
                    None => s.push_str(" |"),
                }
            }
            s.push('\n');
        }
    }
    s
}

/// Per-seed values of every row of a report that aggregates seeds.
pub fn per_seed_table(metrics: &[MetricInfo], rows: &[EvalRow]) -> String {
    let names = metric_names(metrics, rows.iter());
    let mut s = format!(
        "| model | sampler | tokens/step | seed |{} tokens/forward |\n|---|---|---:|---:|{}---:|\n",
        names.iter().map(|n| format!(" {n} |")).collect::<String>(),
        "---:|".repeat(names.len())
    );
    for r in rows {
        for v in &r.seeds {
            let cells: String = names
                .iter()
                .map(|n| {
                    v.metrics
                        .get(n)
                        .map_or(" |".into(), |x| format!(" {x:.3} |"))
                })
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |{} {:.2} |",
                r.model, r.sampler, r.tokens_per_step, v.seed, cells, v.tokens_per_forward
            );
        }
    }
    s
}

/// `report.md`: the results table, Stage II, training, timings and example captions.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# rediff report\n");
    let seeds = if r.seeds.is_empty() {
        format!("seed {}", r.seed)
    } else {
        format!("{} seeds", r.seeds.len())
    };
    let _ = writeln!(
        s,
        "Pipeline `{}`, {seeds}, response length {} tokens. Training data: {} clean captions and {} hallucination-pair samples; {} held-out images scored per setting.\n",
        r.pipeline, r.gen_length, r.data.train_clean, r.data.train_pairs, r.data.eval
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
    if r.seeds.is_empty() {
        let _ = writeln!(s, "Seed {}. Brackets: {}.\n", r.seed, r.interval);
    } else {
        let _ = writeln!(
            s,
            "Means over seeds {:?}. Brackets: {}. Per-seed values follow the table.\n",
            r.seeds, r.interval
        );
    }
    if r.results.is_empty() {
        let _ = writeln!(
            s,
            "No results: the data source has no ground truth to score captions against. Caption the held-out images with `rediff generate --images DIR --out preds.json` and score the predictions with CapMAS or CapArena."
        );
    } else {
        s.push_str(&results_table(&r.metrics, &r.results));
        if r.results.iter().any(|row| row.sampler.contains('@')) {
            let _ = writeln!(
                s,
                "\n### At matched tokens per forward pass\n\nEach policy's setting nearest ~1, 2, 4 and 8 output tokens per forward pass (within a factor of 1.5), so policies that set their speed differently (a budget, a threshold) compare at the same speed. Differences are real where the brackets do not overlap.\n"
            );
            s.push_str(&matched_table(&r.metrics, &r.results, usize::MAX));
        }
        if !r.comparisons.is_empty() {
            let _ = writeln!(s, "\n### Comparisons\n");
            s.push_str(&comparisons_table(&r.comparisons, !r.seeds.is_empty()));
        }
        if !r.seeds.is_empty() {
            let _ = writeln!(s, "\n### Per seed\n");
            s.push_str(&per_seed_table(&r.metrics, &r.results));
        }
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
