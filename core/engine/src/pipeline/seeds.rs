//! Repeating a pipeline over seeds, and the report that aggregates them:
//! each row's metrics as the mean over seeds with a 95% Student-t interval,
//! the per-seed values kept beside it.
//!
//! ```text
//! <out>/pipeline.toml            the configuration, with its `seeds`
//! <out>/seed-<s>/                one whole run per seed (its own report)
//! <out>/report.{json,md}, quality_vs_parallelism.png   the aggregate
//! ```

use std::path::{Path, PathBuf};

use rediff_api::error::{Error, Result};
use rediff_api::registry::Registry;
use rediff_nn::checkpoint::read_json;
use rediff_report::stats::mean_interval;
use rediff_report::{EvalRow, Named, Report, SeedValues, JSON_FILE};

use super::{run, RunOptions, PIPELINE_FILE};
use crate::config::PipelineConfig;
use crate::rundir::RunDir;

/// The run directory of `seed` under a multi-seed run directory.
pub fn seed_dir(out: &Path, seed: u64) -> PathBuf {
    RunDir::new(out).seed(seed).root().to_path_buf()
}

/// The configuration of one seed of a multi-seed study: `seed` set and
/// `seeds` emptied, so the seed's own pipeline.toml runs that seed alone.
pub fn seed_config(cfg: &PipelineConfig, seed: u64) -> Result<PipelineConfig> {
    Ok(cfg
        .with_override("seed", &seed.to_string())?
        .with_override("seeds", "[]")?)
}

/// The seed directories of a multi-seed run directory, by seed (empty for a
/// single run).
pub fn seed_dirs(out: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(found);
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(out, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(seed) = name.strip_prefix("seed-").and_then(|s| s.parse().ok()) {
            if entry.path().join(PIPELINE_FILE).is_file() {
                found.push((seed, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Runs the pipeline once per seed (each in `seed-<s>/`, resumable like
/// any run; a finished seed is read back when resuming) and writes the
/// aggregate report into `opts.out_dir`.
pub fn run_seeds(
    cfg: &PipelineConfig,
    seeds: &[u64],
    registry: &Registry,
    opts: &RunOptions,
) -> Result<Report> {
    if seeds.len() < 2 {
        return Err(Error::invalid(
            "a multi-seed study needs at least two seeds (intervals across seeds need a spread)",
        ));
    }
    let out = &opts.out_dir;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let path = out.join(PIPELINE_FILE);
    std::fs::write(&path, &cfg.source.text).map_err(|e| Error::io(&path, e))?;
    let mut reports = Vec::with_capacity(seeds.len());
    for (i, &seed) in seeds.iter().enumerate() {
        let dir = seed_dir(out, seed);
        let finished = dir.join(JSON_FILE);
        if opts.resume && finished.is_file() {
            tracing::info!(seed, "finished earlier; read back");
            reports.push(read_json::<Report>(&finished)?);
            continue;
        }
        tracing::info!(seed, "seed {} of {}", i + 1, seeds.len());
        let one = seed_config(cfg, seed)?;
        let seed_opts = RunOptions {
            out_dir: dir,
            ..opts.clone()
        };
        reports.push(run(&one, registry, &seed_opts)?);
    }
    let mut report = aggregate(&reports)?;
    report.test_comparisons(&cfg.eval.compare);
    report.write(out)?;
    Ok(report)
}

/// The report over several seeds' reports: per row (model x sampler x
/// tokens per step, in the first report's order) the mean of every metric
/// over seeds with its 95% Student-t interval, mean NFE, tokens per forward,
/// revisions and remasks, and every seed's values.
pub fn aggregate(reports: &[Report]) -> Result<Report> {
    let first = reports
        .first()
        .ok_or_else(|| Error::invalid("no seed reports to aggregate"))?;
    let n = reports.len() as f64;
    let mut results = Vec::with_capacity(first.results.len());
    for row in &first.results {
        let rows: Vec<&EvalRow> = reports
            .iter()
            .map(|r| {
                r.result(&row.model, &row.sampler, row.tokens_per_step)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "seed {} has no result for {} / {} at {} tokens per step",
                            r.seed, row.model, row.sampler, row.tokens_per_step
                        ))
                    })
            })
            .collect::<Result<_>>()?;
        let mean = |f: &dyn Fn(&EvalRow) -> f64| rows.iter().map(|r| f(r)).sum::<f64>() / n;
        let mut metrics = Vec::new();
        let mut intervals = Vec::new();
        for (name, _) in row.metrics.iter() {
            let values: Vec<f64> = rows
                .iter()
                .map(|r| r.metric(name).unwrap_or(f64::NAN))
                .collect();
            let (m, lo, hi) = mean_interval(&values);
            metrics.push((name.to_string(), m));
            intervals.push((name.to_string(), [lo, hi]));
        }
        results.push(EvalRow {
            model: row.model.clone(),
            sampler: row.sampler.clone(),
            tokens_per_step: row.tokens_per_step,
            steps: row.steps,
            metrics: Named(metrics),
            samples: row.samples,
            revisions_per_caption: mean(&|r| r.revisions_per_caption),
            intervals: Named(intervals),
            nfe_per_caption: mean(&|r| r.nfe_per_caption),
            tokens_per_forward: mean(&|r| r.tokens_per_forward),
            remasks_per_caption: mean(&|r| r.remasks_per_caption),
            guard_stops: rows.iter().map(|r| r.guard_stops).sum(),
            score_failures: rows.iter().map(|r| r.score_failures).sum(),
            seeds: reports
                .iter()
                .zip(&rows)
                .map(|(rep, r)| SeedValues {
                    seed: rep.seed,
                    metrics: r.metrics.clone(),
                    tokens_per_forward: r.tokens_per_forward,
                })
                .collect(),
        });
    }
    let mut timings = first.timings.clone();
    timings.total_seconds = reports.iter().map(|r| r.timings.total_seconds).sum();
    timings.eval_seconds = reports.iter().map(|r| r.timings.eval_seconds).sum();
    timings.data_seconds = reports.iter().map(|r| r.timings.data_seconds).sum();
    Ok(Report {
        pipeline: first.pipeline.clone(),
        seed: first.seed,
        gen_length: first.gen_length,
        data: first.data.clone(),
        metrics: first.metrics.clone(),
        results,
        examples: first.examples.clone(),
        training: Vec::new(),
        timings,
        stage2: None,
        interval: format!(
            "95% Student-t interval of the mean over {} seeds (t = {:.3})",
            reports.len(),
            rediff_report::stats::t975(reports.len().saturating_sub(1))
        ),
        seeds: reports.iter().map(|r| r.seed).collect(),
        comparisons: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seed: u64, f: f64) -> Report {
        Report {
            seed,
            results: vec![EvalRow {
                model: "baseline".into(),
                sampler: "denoise".into(),
                tokens_per_step: 4,
                steps: 6,
                metrics: Named(vec![("factuality".into(), f)]),
                samples: 10,
                tokens_per_forward: f * 4.0,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn aggregates_means_t_intervals_and_per_seed_values() {
        let agg = aggregate(&[report(1, 0.5), report(2, 0.6), report(3, 0.7)]).unwrap();
        assert_eq!(agg.seeds, vec![1, 2, 3]);
        let row = &agg.results[0];
        assert!((row.metric("factuality").unwrap() - 0.6).abs() < 1e-12);
        // s = 0.1, half-width 4.303 * 0.1 / sqrt(3).
        let [lo, hi] = row.interval("factuality").unwrap();
        let half = 4.303 * 0.1 / 3f64.sqrt();
        assert!((lo - (0.6 - half)).abs() < 1e-9 && (hi - (0.6 + half)).abs() < 1e-9);
        assert_eq!(row.seeds.len(), 3);
        assert_eq!(row.seeds[2].seed, 3);
        assert!((row.tokens_per_forward - 2.4).abs() < 1e-12);
        assert!(agg.interval.contains("3 seeds"));
    }

    #[test]
    fn a_seed_missing_a_row_is_an_error_naming_it() {
        let mut b = report(2, 0.6);
        b.results[0].tokens_per_step = 8;
        let e = aggregate(&[report(1, 0.5), b]).unwrap_err().to_string();
        assert!(
            e.contains("seed 2 has no result for baseline / denoise at 4"),
            "{e}"
        );
    }

    #[test]
    fn seed_directories_are_found_by_their_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        for s in [18, 3] {
            let d = seed_dir(dir.path(), s);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(PIPELINE_FILE), "").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("seed-7")).unwrap();
        let found: Vec<u64> = seed_dirs(dir.path())
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(found, vec![3, 18]);
    }
}
