//! Writes a random LLaDA-V checkpoint in the published layout and reports
//! what loading it costs in memory: the weights are memory-mapped and each
//! tensor copied once into its storage (candle's CPU tensors own their
//! memory), so after loading the anonymous resident memory is the weights
//! in the chosen dtype and the mapping is gone.
//!
//! ```text
//! cargo run --release -p rediff-llada-v --example load_memory -- [tiny|medium] [f32|bf16|f16|q8_0|q4k]
//! ```
//! `q8_0` and `q4k` quantize the language model's embedding and linear
//! layers while loading (the rest in f32); "weights in memory" is then the
//! resident growth after loading.
//! `medium` is ~360M parameters (hidden 1024, 8 layers, full vocabulary).

use std::time::Instant;

use candle_core::{DType, Device};
use rediff_api::device::WeightDtype;
use rediff_llada_v::quant::QuantType;
use rediff_llada_v::testing::{cached_checkpoint, process_memory_mib, TinySpec};
use rediff_llada_v::weights::ShardedWeights;
use rediff_llada_v::{LladaV, LladaVOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size = args.first().map_or("tiny", String::as_str);
    let weights: WeightDtype = args
        .get(1)
        .map_or(Ok(WeightDtype::F32), |d| d.parse())
        .map_err(anyhow::Error::msg)?;
    let dtype: DType = weights.into();
    let quant = LladaVOptions::quantization(QuantType::of(weights), None);
    let spec = TinySpec::named(size)?;
    let dir = cached_checkpoint(size, &spec)?;
    let stored = ShardedWeights::open(&dir)?.data_bytes() as f64 / 1048576.0;
    let before = process_memory_mib();
    let t = Instant::now();
    let cfg = rediff_llada_v::network::read_config(&dir)?;
    let net = LladaV::load_quantized(&dir, cfg, dtype, &Device::Cpu, &quant)?;
    let seconds = t.elapsed().as_secs_f64();
    let after = process_memory_mib();
    let elem = dtype.size_in_bytes() as f64;
    let stored_elem = spec.dtype.size_in_bytes() as f64;
    println!(
        "checkpoint: {} ({size}, stored {:?}, {stored:.1} MiB of tensor data)",
        dir.display(),
        spec.dtype
    );
    if QuantType::of(weights).is_none() {
        println!(
            "loaded as {dtype:?} in {seconds:.2} s; weights in memory {:.1} MiB",
            stored / stored_elem * elem
        );
    } else {
        println!(
            "loaded as {weights} (the rest f32) in {seconds:.2} s; weights in memory {:.1} MiB (resident growth)",
            after.0 - before.0
        );
    }
    println!(
        "before load: anon {:.1} MiB, file-backed {:.1} MiB, peak {:.1} MiB",
        before.0, before.1, before.2
    );
    println!(
        "after load:  anon {:.1} MiB, file-backed {:.1} MiB, peak {:.1} MiB",
        after.0, after.1, after.2
    );
    println!(
        "anon growth {:.1} MiB; peak growth {:.1} MiB ({:.2}x the resident weights)",
        after.0 - before.0,
        after.2 - before.2,
        (after.2 - before.2) / (after.0 - before.0)
    );
    drop(net);
    Ok(())
}
