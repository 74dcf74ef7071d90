//! Numerical parity with an independent implementation: the fixtures under
//! `tests/reference/fixtures/llada_v/` were written by
//! `tests/reference/llada_v_parity.py` (Hugging Face `transformers`
//! SiglipVisionModel and LlamaForCausalLM with a bidirectional mask, PyTorch
//! for the projector and the merge). Every output must agree within 1e-4 in f32.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use rediff_llada_v::LladaV;
use serde::Deserialize;

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Inputs {
    image_size: [u32; 2],
    tiles: usize,
    prompt_a: Vec<u32>,
    prompt_b: Vec<u32>,
    response: Vec<u32>,
    text: Vec<u32>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures/llada_v")
}

/// The script's pixel formula: ((7t + 3c + 5y + 11x) mod 255) / 127.5 - 1.
fn pixels(tiles: usize, side: usize) -> Tensor {
    let mut v = Vec::with_capacity(tiles * 3 * side * side);
    for t in 0..tiles {
        for c in 0..3 {
            for y in 0..side {
                for x in 0..side {
                    v.push(((7 * t + 3 * c + 5 * y + 11 * x) % 255) as f32 / 127.5 - 1.0);
                }
            }
        }
    }
    Tensor::from_vec(v, (tiles, 3, side, side), &Device::Cpu).unwrap()
}

fn max_diff(name: &str, ours: &Tensor, expected: &Tensor) -> f32 {
    assert_eq!(ours.dims(), expected.dims(), "{name}: shape");
    let d = rediff_core::ops::max_abs_diff(ours, expected).unwrap();
    eprintln!("{name}: max |diff| = {d:.3e}");
    assert!(d <= TOLERANCE, "{name}: max |diff| {d} > {TOLERANCE}");
    d
}

#[test]
fn vision_projector_merge_and_logits_match_the_reference() {
    let dir = fixtures();
    let inputs: Inputs =
        serde_json::from_str(&std::fs::read_to_string(dir.join("inputs.json")).unwrap()).unwrap();
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let net = LladaV::load(&dir, DType::F32, &Device::Cpu).unwrap();

    let layout = net.layout((inputs.image_size[0], inputs.image_size[1]));
    assert_eq!(layout.num_tiles(), inputs.tiles);
    let px = pixels(inputs.tiles, net.tower().dims().tile);
    let vision = net.tower().forward(&px).unwrap();
    max_diff("vision_features", &vision, &expected["vision_features"]);
    let projected = net.projector().forward(&vision).unwrap();
    max_diff(
        "projector_output",
        &projected,
        &expected["projector_output"],
    );
    let merged = net.features_from_tiles(&px, &layout).unwrap();
    assert_eq!(merged.dim(0).unwrap(), layout.num_features());
    max_diff("merged_features", &merged, &expected["merged_features"]);

    let embed = |ids: &[u32]| {
        net.lm()
            .embed(&Tensor::new(ids, &Device::Cpu).unwrap())
            .unwrap()
    };
    let prefix = Tensor::cat(
        &[embed(&inputs.prompt_a), merged, embed(&inputs.prompt_b)],
        0,
    )
    .unwrap()
    .unsqueeze(0)
    .unwrap();
    let len = prefix.dim(1).unwrap();
    let response = Tensor::new(inputs.response.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = net.forward_prefix(&prefix, &[len], &response).unwrap();
    max_diff("image_logits", &logits, &expected["image_logits"]);

    // Text only: logits at every position.
    let t = inputs.text.len();
    let x = embed(&inputs.text).unsqueeze(0).unwrap();
    let positions = vec![(0..t as u32).collect::<Vec<_>>()];
    let logits = net.lm().forward_embeds(&x, &positions, &[0], t).unwrap();
    max_diff("text_logits", &logits, &expected["text_logits"]);
}
