//! Times one sampler step (a full forward pass over prompt + image
//! features + response) on a random LLaDA-V checkpoint, reports the
//! achieved matmul throughput and projects the time per step of the
//! published 8B model at the same throughput.
//!
//! ```text
//! cargo run --release -p rediff-llada-v --example step_time -- [tiny|medium] [f32|bf16|f16|q8_0|q4k]
//! ```

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use image::{Rgb, RgbImage};
use rediff_api::device::WeightDtype;
use rediff_api::model::{ModelBackend, Prompt};
use rediff_llada_v::quant::QuantType;
use rediff_llada_v::testing::{cached_checkpoint, TinySpec};
use rediff_llada_v::{LladaVBackend, LladaVOptions};

/// Multiply-adds x 2 of one LM forward over `t` tokens: every linear layer
/// (head included) plus attention scores and values.
fn lm_flops(
    hidden: f64,
    inter: f64,
    layers: f64,
    vocab: f64,
    kv_ratio: f64,
    t: f64,
    tail: f64,
) -> f64 {
    let per_layer = hidden * hidden * (2.0 + 2.0 * kv_ratio) + 3.0 * hidden * inter;
    2.0 * t * per_layer * layers + 4.0 * t * t * hidden * layers + 2.0 * tail * hidden * vocab
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size = args.first().map_or("tiny", String::as_str);
    let weights: WeightDtype = args
        .get(1)
        .map_or(Ok(WeightDtype::F32), |d| d.parse())
        .map_err(anyhow::Error::msg)?;
    let dtype: DType = weights.into();
    let dir = cached_checkpoint(size, &TinySpec::named(size)?)?;
    let model = LladaVBackend::load(
        &dir,
        LladaVOptions {
            dtype,
            quant: LladaVOptions::quantization(QuantType::of(weights), None),
            ..Default::default()
        },
    )?;
    let cfg = model.network().config().clone();
    let prompt = Prompt {
        image: Some(Arc::new(rediff_formats::source_from_rgb(
            RgbImage::from_fn(384, 384, |x, y| Rgb([x as u8, y as u8, 9])),
        ))),
        ids: model.prompt_ids("describe the image .")?,
    };
    let text_tokens = prompt.ids.len() - 1;
    let t0 = Instant::now();
    let ctx = model.encode_prompts(&[prompt])?;
    let encode = t0.elapsed().as_secs_f64();
    let gen = 32;
    let response = Tensor::full(model.special_tokens().mask, (1, gen), &Device::Cpu)?;
    model.forward(&ctx, &response)?; // warm-up
    let runs = 3;
    let t0 = Instant::now();
    for _ in 0..runs {
        model.forward(&ctx, &response)?;
    }
    let step = t0.elapsed().as_secs_f64() / runs as f64;
    let prefix = model.network().layout((384, 384)).num_features() + text_tokens;
    let t = (prefix + gen) as f64;
    let kv = cfg.kv_heads() as f64 / cfg.num_attention_heads as f64;
    let flops = lm_flops(
        cfg.hidden_size as f64,
        cfg.intermediate_size as f64,
        cfg.num_hidden_layers as f64,
        model.vocab_size() as f64,
        kv,
        t,
        gen as f64,
    );
    let rate = flops / step;
    println!("{size} {weights}: image + prompt encoding {encode:.2} s; one step over {t} tokens {step:.3} s ({:.1} GFLOP/s)", rate / 1e9);
    // The published model on a 384x384 image (1485 features), a 60-token
    // prompt and a 128-token response.
    let t8 = (1485 + 60 + 128) as f64;
    let f8 = lm_flops(4096.0, 12288.0, 32.0, 126_464.0, 1.0, t8, 128.0);
    println!(
        "8B projection at this rate: {:.1} TFLOP per step over {t8} tokens -> {:.0} s per step, {:.1} h for 128 steps",
        f8 / 1e12,
        f8 / rate,
        f8 / rate * 128.0 / 3600.0
    );
    Ok(())
}
