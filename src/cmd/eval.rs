//! `rediff eval`.

use std::path::{Path, PathBuf};

use clap::Args;
use rediff_engine::config::EvalConfig;
use rediff_engine::pipeline::{self, EvalOptions, PIPELINE_FILE};
use rediff_engine::PipelineConfig;

/// Arguments of `rediff eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A finished run directory (`rediff run --out DIR`), or a multi-seed
    /// one (`rediff run --seeds`): then every seed-<s>/ run is evaluated and
    /// the report aggregates them across seeds.
    run_dir: PathBuf,

    /// Evaluation file: an `[eval]` table as in a pipeline (samplers,
    /// tokens per step, samples...), plus `[[plugins]]` its policies need
    /// (configs/refiners.toml compares every built-in policy). Default: the
    /// run's own `[eval]`.
    eval: Option<PathBuf>,

    /// Report directory (default: RUN_DIR/eval/<eval file name>, or
    /// RUN_DIR/eval/default).
    #[arg(long)]
    out: Option<PathBuf>,

    /// Models to evaluate, comma-separated (default: those the run's report
    /// lists, else every saved model but `pretrain`).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,

    /// Evaluation settings run in parallel, one compute thread each
    /// (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,

    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,

    /// Load a plugin library before building components; repeatable, after
    /// the run's and the evaluation file's `[[plugins]]`.
    #[arg(long = "plugin", value_name = "PATH")]
    plugins: Vec<PathBuf>,
}

/// The run's configuration with the evaluation file's grid, and the
/// plugins both name.
fn configuration(
    run_dir: &Path,
    eval: Option<&Path>,
) -> anyhow::Result<(PipelineConfig, Vec<PathBuf>)> {
    let mut cfg = PipelineConfig::from_file(&run_dir.join(PIPELINE_FILE))?;
    let mut plugins = cfg.plugins.clone();
    if let Some(path) = eval {
        let (grid, more) = EvalConfig::from_file(path, cfg.gen_length)?;
        cfg.eval = grid;
        plugins.extend(more);
    }
    Ok((cfg, plugins))
}

/// Evaluates the run (or each seed of a multi-seed run) and prints the table.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Settings run side by side, one compute thread each.
    super::set_threads(Some(1));
    let out = args.out.clone().unwrap_or_else(|| {
        let name = args
            .eval
            .as_deref()
            .and_then(|p| p.file_stem())
            .map_or("default".into(), |s| s.to_string_lossy().to_string());
        args.run_dir.join("eval").join(name)
    });
    let seeds = pipeline::seed_dirs(&args.run_dir)?;
    let runs: Vec<(Option<u64>, PathBuf)> = if seeds.is_empty() {
        vec![(None, args.run_dir.clone())]
    } else {
        seeds.into_iter().map(|(s, d)| (Some(s), d)).collect()
    };
    let mut reports = Vec::new();
    let mut compare = Vec::new();
    for (seed, dir) in &runs {
        let (cfg, plugins) = configuration(dir, args.eval.as_deref())?;
        compare.clone_from(&cfg.eval.compare);
        let registry = crate::registry::with_plugins(plugins.iter().chain(&args.plugins))?;
        let opts = EvalOptions {
            run_dir: dir.clone(),
            out_dir: match seed {
                Some(s) => pipeline::seed_dir(&out, *s),
                None => out.clone(),
            },
            models: args.models.clone(),
            threads: jobs,
            progress: !args.quiet,
        };
        reports.push(pipeline::evaluate_run(&cfg, &registry, &opts)?);
    }
    let report = if runs.len() > 1 {
        let mut agg = pipeline::aggregate(&reports)?;
        agg.test_comparisons(&compare);
        agg.write(&out)?;
        agg
    } else {
        reports.remove(0)
    };
    outln!(
        "{}",
        rediff_report::markdown::results_table(&report.metrics, &report.results)
    );
    outln!(
        "wrote {}/report.json, report.md and quality_vs_parallelism.png",
        out.display()
    );
    Ok(())
}
