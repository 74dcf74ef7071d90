//! `rediff`: refine discrete-diffusion vision-language models.
//!
//! The binary only parses arguments and reports errors; everything else is
//! in the `core/` crates (`rediff-engine` runs pipelines) and the plugin
//! group `rediff-builtins`.

/// `println!` that never panics: when stdout is closed (`rediff ... | head`)
/// the rest of the output is dropped and the command finishes normally.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod cmd;
mod registry;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// candle allocates and frees many mid-sized tensors per step; glibc's
/// malloc returns them to the kernel each time (measured: a third of
/// training time in page faults). mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Refining discrete-diffusion vision-language models (ReDiff, Ji et al. 2025).
///
/// Train a masked-diffusion VLM to revise its own output, then compare plain
/// denoising with refinement as more tokens are decoded per step.
#[derive(Debug, Parser)]
#[command(name = "rediff", version, about, long_about = None)]
struct Cli {
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace);
    /// RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "warn")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run a pipeline: data, baseline and Stage I training, evaluation, report.
    Run(cmd::run::RunArgs),
    /// Evaluate the models a finished run saved with another sampler grid, without retraining.
    Eval(cmd::eval::EvalArgs),
    /// Validate a pipeline file and print the assembled pipeline.
    Check(cmd::check::CheckArgs),
    /// Caption an image, or a directory of images into a predictions file, with a trained checkpoint.
    Generate(cmd::generate::GenerateArgs),
    /// Score a predictions file against references with an LLM judge: CLAIR, factuality, coverage, CAPTURE, with 95% intervals.
    Score(cmd::score::ScoreArgs),
    /// List every registered component by kind, with its origin.
    Components(cmd::components::ComponentsArgs),
    /// Write a quantized copy of a checkpoint (LLaDA-V: its language model as GGUF, q8_0 or q4k, for --gguf).
    Quantize(cmd::quantize::QuantizeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Score(args) => cmd::score::run(args),
        Command::Components(args) => cmd::components::run(args),
        Command::Quantize(args) => cmd::quantize::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, no backtrace: the message names the file and place.
            let msg = format!("{err:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
