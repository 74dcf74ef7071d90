//! `rediff run`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use rediff_engine::pipeline::{self, RunOptions};

/// Arguments of `rediff run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pipeline file (TOML). Without it, the embedded copy of
    /// configs/quickstart.toml runs: no download, no GPU.
    pipeline: Option<PathBuf>,

    /// Run directory (default: the pipeline's `out_dir`, else runs/<pipeline name>).
    #[arg(long)]
    out: Option<PathBuf>,

    /// Continue an interrupted run (Ctrl-C, kill, crash) in the same
    /// directory: finished stages are loaded, an unfinished one continues from
    /// its last checkpoint, and Stage II keeps every journaled draft and
    /// expert answer (only expert calls that failed retryably are sent again).
    #[arg(long)]
    resume: bool,

    /// With --resume: also send again the Stage II items whose failure is
    /// not retryable (an unparseable reply: the expert is paid again).
    #[arg(long, requires = "resume")]
    retry_all: bool,

    /// With --resume: continue although the configuration differs from the
    /// one the run was started with (e.g. another Stage II expert on the
    /// same trained Stage I). Finished stages are reused as they are; the
    /// changes are listed and appended to config-changes.log.
    #[arg(long, requires = "resume")]
    accept_changes: bool,

    /// Override the pipeline's seed (recorded in the run directory's
    /// pipeline.toml; --resume refuses a different one). On a pipeline
    /// with `seeds` (configs/seeds.toml), runs that one seed alone in
    /// OUT/seed-<s>/ (OUT: --out, else the pipeline's `out_dir`), where the
    /// study reads it back when it is resumed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,

    /// Repeat the whole pipeline over these seeds (comma-separated, at
    /// least two; overrides the pipeline's `seeds`): each runs in
    /// OUT/seed-<s>/, and OUT/report.* gives every metric's mean over seeds
    /// with a 95% Student-t interval and the per-seed values.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    seeds: Option<Vec<u64>>,

    /// Threads per tensor op (default: the pipeline's `threads`; else 1 when
    /// stages run concurrently or batches are split over data-parallel
    /// shards, which then use the cores; else all cores).
    #[arg(long)]
    threads: Option<usize>,

    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,

    /// Print the request the Stage II expert would be sent for one item
    /// (credentials redacted) and exit: nothing is trained, sent or written.
    #[arg(long)]
    dry_run: bool,

    /// Draft Stage II with N processes on one run directory (one per GPU:
    /// give each its own with CUDA_VISIBLE_DEVICES). This process drafts
    /// and sends to the expert slice I (0-based) of every round's drafts.
    /// Shard 0 does everything else (data, Stage I, training each round on
    /// every shard's drafts, evaluation, report); the others wait for its
    /// models. Same seed, same round datasets as one process. Resume each
    /// shard with the same --shard and --resume.
    #[arg(long, value_name = "I/N", conflicts_with_all = ["seeds", "dry_run"])]
    shard: Option<pipeline::Shard>,

    /// Load a plugin library (a `cdylib` built with rediff_api::export_plugin!)
    /// before building components; repeatable, after the pipeline's
    /// `[[plugins]]`. A plugin is native code that runs with your privileges.
    #[arg(long = "plugin", value_name = "PATH")]
    plugins: Vec<PathBuf>,
}

/// Runs the pipeline and prints the results table.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut cfg = super::load_pipeline(args.pipeline.as_deref())?;
    // --seed on a multi-seed pipeline: one seed of its study.
    let study_seed = args.seed.filter(|_| !cfg.seeds.is_empty());
    if let Some(seed) = args.seed {
        // Written into the configuration text, so the run directory's
        // pipeline.toml is the configuration this run used.
        cfg = match study_seed {
            Some(_) => pipeline::seed_config(&cfg, seed)?,
            None => cfg.with_override("seed", &seed.to_string())?,
        };
    }
    // Concurrent stages and data-parallel shards each get one compute
    // thread unless told otherwise.
    let default_threads = (cfg.train.concurrent_stages || cfg.train.data_parallel > 1).then_some(1);
    super::set_threads(args.threads.or(cfg.threads).or(default_threads));
    let given_out = args
        .out
        .clone()
        .or_else(|| cfg.out_dir.clone())
        .unwrap_or_else(|| {
            let stem = args
                .pipeline
                .as_deref()
                .and_then(|p| p.file_stem())
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "quickstart".into());
            PathBuf::from("runs").join(stem)
        });
    // One seed of a study runs where the study would run it.
    let out = match study_seed {
        Some(seed) => pipeline::seed_dir(&given_out, seed),
        None => given_out.clone(),
    };
    let registry = crate::registry::with_plugins(cfg.plugins.iter().chain(&args.plugins))?;
    if args.dry_run {
        // The data is prepared in a scratch directory: a dry run writes nothing.
        let scratch = tempfile::tempdir().context("creating a scratch directory")?;
        outln!(
            "{}",
            pipeline::dry_run_expert(&cfg, &registry, scratch.path())?
        );
        return Ok(());
    }
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                // Second Ctrl-C: leave at once.
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: saving a checkpoint (Ctrl-C again to quit at once)");
        })
        .context("installing the Ctrl-C handler")?;
    }
    let opts = RunOptions {
        out_dir: out.clone(),
        resume: args.resume,
        retry_all: args.retry_all,
        accept_changes: args.accept_changes,
        progress: !args.quiet,
        interrupt,
        shard: args.shard.unwrap_or_default(),
    };
    if !opts.shard.is_lead() {
        let slices = match pipeline::follow(&cfg, &registry, &opts) {
            Err(rediff_api::Error::Interrupted) => {
                anyhow::bail!("interrupted; continue with the same command and --resume")
            }
            other => other?,
        };
        for s in &slices {
            outln!(
                "round {}: shard {} drafted {} and journaled {} expert reviews in {:.0} s",
                s.round,
                opts.shard,
                s.drafts,
                s.reviews,
                s.seconds
            );
        }
        outln!(
            "shard {} is done; shard 0 writes the report in {}",
            opts.shard,
            out.display()
        );
        return Ok(());
    }
    let seeds = args.seeds.clone().unwrap_or_else(|| cfg.seeds.clone());
    let outcome = if seeds.is_empty() {
        pipeline::run(&cfg, &registry, &opts)
    } else {
        pipeline::run_seeds(&cfg, &seeds, &registry, &opts)
    };
    let report = match outcome {
        Err(rediff_api::Error::Interrupted) => {
            anyhow::bail!(
                "interrupted; continue with: {}",
                resume_command(&args, &given_out)
            )
        }
        other => other?,
    };
    outln!(
        "{}",
        rediff_report::markdown::results_table(&report.metrics, &report.results)
    );
    if let Some(stage2) = &report.stage2 {
        outln!("{}", stage2.summary());
    }
    outln!(
        "wrote {}/report.json, report.md and quality_vs_parallelism.png in {:.0} s",
        out.display(),
        report.timings.total_seconds
    );
    Ok(())
}

/// The command that continues an interrupted run: the same pipeline, run
/// directory and seed overrides (without them --resume would refuse the
/// run, or run a different one), plus --resume.
fn resume_command(args: &RunArgs, out: &std::path::Path) -> String {
    let mut cmd = String::from("rediff run ");
    if let Some(p) = &args.pipeline {
        cmd.push_str(&format!("{} ", p.display()));
    }
    if let Some(seed) = args.seed {
        cmd.push_str(&format!("--seed {seed} "));
    }
    if let Some(seeds) = &args.seeds {
        let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
        cmd.push_str(&format!("--seeds {} ", list.join(",")));
    }
    cmd.push_str(&format!("--out {} --resume", out.display()));
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn resume(line: &[&str], out: &str) -> String {
        let cli = Cli::try_parse_from(std::iter::once("rediff").chain(line.iter().copied()));
        resume_command(&cli.unwrap().run, std::path::Path::new(out))
    }

    #[test]
    fn the_resume_command_keeps_the_seed_overrides() {
        assert_eq!(
            resume(&[], "runs/quickstart"),
            "rediff run --out runs/quickstart --resume"
        );
        assert_eq!(
            resume(&["configs/seeds.toml", "--seed", "603"], "runs/seeds"),
            "rediff run configs/seeds.toml --seed 603 --out runs/seeds --resume"
        );
        assert_eq!(
            resume(&["--seeds", "1,2", "--quiet"], "runs/s"),
            "rediff run --seeds 1,2 --out runs/s --resume"
        );
    }
}
