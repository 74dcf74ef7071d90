//! `rediff check`.

use std::path::PathBuf;

use clap::Args;
use rediff_engine::pipeline::assemble;

/// Arguments of `rediff check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Pipeline file to validate (TOML).
    pipeline: PathBuf,

    /// Load a plugin library (a `cdylib` built with rediff_api::export_plugin!)
    /// before building components; repeatable, after the pipeline's
    /// `[[plugins]]`. A plugin is native code that runs with your privileges.
    #[arg(long = "plugin", value_name = "PATH")]
    plugins: Vec<PathBuf>,
}

/// Parses the pipeline, builds every component and prints the result.
pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let cfg = super::load_pipeline(Some(&args.pipeline))?;
    let registry = crate::registry::with_plugins(cfg.plugins.iter().chain(&args.plugins))?;
    assemble(&cfg, &registry)?;
    outln!("{}: ok", cfg.source.name);
    outln!("seed = {}", cfg.seed);
    outln!("gen_length = {}", cfg.gen_length);
    if let Some(dir) = &cfg.out_dir {
        outln!("out_dir = {}", dir.display());
    }
    for plugin in cfg.plugins.iter().chain(&args.plugins) {
        outln!("plugin     {}", plugin.display());
    }
    for (path, kind, spec) in cfg.components() {
        outln!("{kind:<11} {path:<24} {}", spec.to_toml_value());
    }
    outln!("train      {:?}", cfg.train);
    // A stage's rate, or the `[train]` rate it falls back to.
    let lr = |own: Option<f64>| match own {
        Some(lr) => format!("{lr:e}"),
        None => format!("{:e} (from [train])", cfg.train.lr),
    };
    for (name, stage) in [("baseline", &cfg.baseline), ("stage1", &cfg.stage1)] {
        match stage {
            Some(s) => outln!(
                "{name:<10} {} steps, lr {}",
                s.settings.steps,
                lr(s.settings.lr)
            ),
            None => outln!("{name:<10} (off)"),
        }
    }
    match &cfg.stage2 {
        Some(s) => outln!(
            "stage2     {} round(s) of {} drafts at tokens per step {:?}, {} steps, lr {}, Stage I share {}, expert concurrency {}, min_reviewed {}",
            s.rounds,
            s.drafts,
            s.tokens_per_step,
            s.settings.steps,
            lr(s.settings.lr),
            s.stage1_share,
            s.concurrency,
            s.min_reviewed
        ),
        None => outln!("stage2     (off)"),
    }
    let e = &cfg.eval;
    outln!(
        "eval       {} samples, tokens per step {:?}, block length {}, temperature {}",
        e.samples,
        e.tokens_per_step,
        e.block_length,
        e.temperature
    );
    Ok(())
}
