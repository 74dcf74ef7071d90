//! `rediff quantize`: write the GGUF file of a LLaDA-V checkpoint's
//! quantized language model, for `--gguf` / `gguf = ...`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use clap::Args;
use rediff_api::device::WeightDtype;

/// Arguments of `rediff quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// LLaDA-V / ReDiff checkpoint directory (config.json, safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Block format: q8_0 (8.5 bits per weight) or q4k (4.5 bits per
    /// weight; every quantized row length must be a multiple of 256).
    #[arg(long, value_parser = parse_quant)]
    dtype: WeightDtype,
    /// The GGUF file to write (written under a temporary name, then renamed).
    #[arg(long)]
    out: PathBuf,
}

fn parse_quant(s: &str) -> Result<WeightDtype, String> {
    let d: WeightDtype = s.parse()?;
    match d.quant() {
        Some(_) => Ok(d),
        None => Err(format!(
            "`{s}` is not a quantized dtype; expected q8_0 or q4k"
        )),
    }
}

/// Quantizes the embedding and every linear layer of the language model.
pub fn run(args: QuantizeArgs) -> anyhow::Result<()> {
    let Some(quant) = args.dtype.quant() else {
        bail!("--dtype must be q8_0 or q4k");
    };
    let t = Instant::now();
    let bytes = rediff_llada_v::quant::write_gguf(&args.model, quant, &args.out)?;
    println!(
        "wrote {} ({} tensor data: {:.1} MiB) in {:.1} s; use it with --gguf {}",
        args.out.display(),
        quant.name(),
        bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
