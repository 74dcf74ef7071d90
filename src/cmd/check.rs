//! `rediff check`.

use std::path::PathBuf;

use clap::Args;
use rediff_core::pipeline::assemble;

/// Arguments of `rediff check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Pipeline file to validate (TOML).
    pipeline: PathBuf,

    /// Load a plugin library (a `cdylib` built with rediff_core::export_plugin!)
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
    println!("{}: ok", cfg.source.name);
    println!("seed = {}", cfg.seed);
    println!("gen_length = {}", cfg.gen_length);
    if let Some(dir) = &cfg.out_dir {
        println!("out_dir = {}", dir.display());
    }
    for plugin in cfg.plugins.iter().chain(&args.plugins) {
        println!("plugin     {}", plugin.display());
    }
    for (path, kind, spec) in cfg.components() {
        println!("{kind:<11} {path:<24} {}", spec.to_toml_value());
    }
    println!("train      {:?}", cfg.train);
    for (name, stage) in [("baseline", &cfg.baseline), ("stage1", &cfg.stage1)] {
        match stage {
            Some(s) => println!(
                "{name:<10} {} steps, lr {:?}",
                s.settings.steps, s.settings.lr
            ),
            None => println!("{name:<10} (off)"),
        }
    }
    match &cfg.stage2 {
        Some(s) => println!(
            "stage2     {} round(s) of {} drafts at tokens per step {:?}, {} steps, lr {:?}, Stage I share {}, expert concurrency {}",
            s.rounds,
            s.drafts,
            s.tokens_per_step,
            s.settings.steps,
            s.settings.lr,
            s.stage1_share,
            s.concurrency
        ),
        None => println!("stage2     (off)"),
    }
    let e = &cfg.eval;
    println!(
        "eval       {} samples, tokens per step {:?}, block length {}, temperature {}",
        e.samples, e.tokens_per_step, e.block_length, e.temperature
    );
    Ok(())
}
