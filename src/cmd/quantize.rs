//! `rediff quantize`: write a quantized copy of a checkpoint's weights (for
//! a LLaDA-V checkpoint: the GGUF file of its language model, for `--gguf` /
//! `gguf = ...`). The checkpoint's plugin does the work: `config.json`'s
//! `model_type` picks the quantizer it registered, as it picks the loader.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use rediff_api::device::WeightDtype;

/// Arguments of `rediff quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Checkpoint directory (config.json, safetensors); its `model_type`
    /// picks the quantizer (`rediff components` lists them).
    #[arg(long)]
    model: PathBuf,
    /// Block format: q8_0 (8.5 bits per weight) or q4k (4.5 bits per
    /// weight; every quantized row length must be a multiple of 256).
    #[arg(long, value_parser = parse_quant)]
    dtype: WeightDtype,
    /// The file to write (written under a temporary name, then renamed).
    #[arg(long)]
    out: PathBuf,
    /// Load a plugin library first (one that registers a quantizer for
    /// another model type); repeatable. A plugin is native code that runs
    /// with your privileges.
    #[arg(long = "plugin", value_name = "PATH")]
    plugins: Vec<PathBuf>,
}

fn parse_quant(s: &str) -> Result<WeightDtype, String> {
    let d: WeightDtype = s.parse()?;
    match d {
        WeightDtype::Q8_0 | WeightDtype::Q4k => Ok(d),
        _ => Err(format!(
            "`{s}` is not a quantized dtype; expected q8_0 or q4k"
        )),
    }
}

/// Quantizes the checkpoint with the quantizer its model type registered.
pub fn run(args: QuantizeArgs) -> anyhow::Result<()> {
    let registry = crate::registry::with_plugins(&args.plugins)?;
    let t = Instant::now();
    let bytes = registry.quantize(&args.model, args.dtype, &args.out)?;
    println!(
        "wrote {} ({} tensor data: {:.1} MiB) in {:.1} s; use it with --gguf {}",
        args.out.display(),
        args.dtype,
        bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
