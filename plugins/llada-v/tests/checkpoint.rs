//! The tiny random checkpoint in the published layout: it loads, every
//! stored tensor is used and every expected one present, and damage is
//! reported naming the tensor or file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use image::{Rgb, RgbImage};
use rediff_api::model::{ModelBackend, Prompt};
use rediff_llada_v::prompt::IMAGE_PLACEHOLDER;
use rediff_llada_v::testing::{published_tensor_shapes, write_random_checkpoint, TinySpec};
use rediff_llada_v::weights::INDEX_FILE;
use rediff_llada_v::{LladaVBackend, LladaVOptions};

fn tiny(dir: &Path) -> TinySpec {
    let spec = TinySpec::default();
    write_random_checkpoint(dir, &spec, 7).unwrap();
    spec
}

fn load(dir: &Path) -> rediff_api::Result<LladaVBackend> {
    LladaVBackend::load(dir, LladaVOptions::default())
}

/// Rewrites shard `file` of `dir` through `edit`.
fn edit_shard(dir: &Path, file: &str, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let path = dir.join(file);
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

fn shard_of(dir: &Path, name: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(INDEX_FILE)).unwrap()).unwrap();
    index["weight_map"][name].as_str().unwrap().to_string()
}

fn set_index(dir: &Path, name: &str, file: Option<&str>) {
    let path = dir.join(INDEX_FILE);
    let mut index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let map = index["weight_map"].as_object_mut().unwrap();
    match file {
        Some(f) => map.insert(name.to_string(), f.into()),
        None => map.remove(name),
    };
    std::fs::write(&path, index.to_string()).unwrap();
}

#[test]
fn loads_every_tensor_and_runs_a_forward_pass() {
    let dir = tempfile::tempdir().unwrap();
    let spec = tiny(dir.path());
    let model = load(dir.path()).unwrap();
    assert_eq!(model.vocab_size(), spec.vocab);
    let s = model.special_tokens();
    assert_eq!((s.mask, s.eot), (126_336, 126_348));
    assert_eq!(s.suppressed, vec![126_081, 126_080, 126_346, 126_347]);
    assert_eq!(model.network().tower().dims().layers, spec.vision_layers);
    assert_eq!(model.network().tower().dims().tile, 384);

    let ids = model.prompt_ids("describe the image .").unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == IMAGE_PLACEHOLDER).count(), 1);
    // Two images of different sizes: different prefix lengths, left-padded.
    let prompts: Vec<Prompt> = [(384, 384), (500, 260)]
        .iter()
        .map(|&(w, h)| Prompt {
            image: Some(Arc::new(rediff_formats::source_from_rgb(
                RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 128])),
            ))),
            ids: ids.clone(),
        })
        .collect();
    let ctx = model.encode_prompts(&prompts).unwrap();
    let response = Tensor::full(126_336u32, (2, 8), &Device::Cpu).unwrap();
    let logits = model.forward(&ctx, &response).unwrap();
    assert_eq!(logits.dims(), &[2, 8, spec.vocab]);
    // Padding must not change a row's logits: row 1 alone equals row 1 batched.
    let alone = model.encode_prompts(&prompts[1..]).unwrap();
    let single = model
        .forward(&alone, &response.narrow(0, 0, 1).unwrap())
        .unwrap();
    let diff =
        rediff_nn::ops::max_abs_diff(&logits.get(1).unwrap(), &single.get(0).unwrap()).unwrap();
    assert!(diff < 1e-4, "padded row differs by {diff}");
    let expected = model.network().layout((500, 260)).num_features();
    let short = model.network().layout((384, 384)).num_features();
    assert_ne!(expected, short);
}

#[test]
fn a_single_file_checkpoint_loads_in_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec {
        shards: 1,
        ..TinySpec::default()
    };
    write_random_checkpoint(dir.path(), &spec, 3).unwrap();
    let opts = LladaVOptions {
        dtype: DType::BF16,
        ..Default::default()
    };
    let model = LladaVBackend::load(dir.path(), opts).unwrap();
    let prompt = Prompt {
        image: Some(Arc::new(rediff_formats::source_from_rgb(
            RgbImage::from_pixel(300, 300, Rgb([9, 99, 199])),
        ))),
        ids: model.prompt_ids("describe the image .").unwrap(),
    };
    let ctx = model.encode_prompts(&[prompt]).unwrap();
    let logits = model
        .forward(
            &ctx,
            &Tensor::full(126_336u32, (1, 4), &Device::Cpu).unwrap(),
        )
        .unwrap();
    assert_eq!(logits.dtype(), DType::F32);
}

#[test]
fn the_published_tensor_list_is_exactly_what_loads() {
    let spec = TinySpec::default();
    let names: Vec<String> = published_tensor_shapes(&spec)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    // 2 LM layers x 9 + embed, norm, head; projector 4 + newline; tower 3 + 2 x 16 + post-LN 2.
    assert_eq!(names.len(), 2 * 9 + 3 + 5 + 3 + 2 * 16 + 2);
}

#[test]
fn a_renamed_tensor_is_named_twice_missing_and_unused() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    let name = "model.layers.1.mlp.up_proj.weight";
    let file = shard_of(dir.path(), name);
    edit_shard(dir.path(), &file, |t| {
        let v = t.remove(name).unwrap();
        t.insert("model.layers.1.mlp.upper_proj.weight".into(), v);
    });
    set_index(dir.path(), name, None);
    set_index(
        dir.path(),
        "model.layers.1.mlp.upper_proj.weight",
        Some(&file),
    );
    let err = load(dir.path()).err().unwrap().to_string();
    assert!(err.contains(name) && err.contains("missing"), "{err}");
}

#[test]
fn an_extra_tensor_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    let file = shard_of(dir.path(), "lm_head.weight");
    edit_shard(dir.path(), &file, |t| {
        t.insert(
            "model.layers.9.mlp.up_proj.weight".into(),
            Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
        );
    });
    set_index(dir.path(), "model.layers.9.mlp.up_proj.weight", Some(&file));
    let err = load(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains("model.layers.9.mlp.up_proj.weight") && err.contains("not used"),
        "{err}"
    );
    assert!(err.contains(&file), "{err}");
}

#[test]
fn a_wrong_shape_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    let name = "model.mm_projector.2.weight";
    let file = shard_of(dir.path(), name);
    edit_shard(dir.path(), &file, |t| {
        t.insert(
            name.into(),
            Tensor::zeros((32, 31), DType::BF16, &Device::Cpu).unwrap(),
        );
    });
    let err = load(dir.path()).err().unwrap().to_string();
    assert!(err.contains(name) && err.contains("shape"), "{err}");
}

#[test]
fn a_missing_or_truncated_shard_is_named() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    let file = shard_of(dir.path(), "lm_head.weight");
    let path = dir.path().join(&file);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let err = load(dir.path()).err().unwrap().to_string();
    assert!(err.contains(&file) && err.contains("truncated"), "{err}");
    std::fs::remove_file(&path).unwrap();
    let err = load(dir.path()).err().unwrap().to_string();
    assert!(err.contains(&file) && err.contains("missing"), "{err}");
}

#[test]
fn an_index_pointing_at_the_wrong_shard_is_named() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    let a = shard_of(dir.path(), "lm_head.weight");
    let b = shard_of(
        dir.path(),
        "model.vision_tower.vision_tower.vision_model.post_layernorm.bias",
    );
    assert_ne!(a, b);
    set_index(dir.path(), "lm_head.weight", Some(&b));
    let err = load(dir.path()).err().unwrap().to_string();
    assert!(err.contains("lm_head.weight") && err.contains(&a), "{err}");
}

#[test]
fn a_config_without_vision_fields_or_with_a_bad_mask_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    tiny(dir.path());
    let path = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["mask_token_id"] = 5.into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let err = load(dir.path()).err().unwrap().to_string();
    assert!(err.contains("mask_token_id 5"), "{err}");
    cfg.as_object_mut().unwrap().remove("mm_hidden_size");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let err = load(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains("config.json") && err.contains("mm_hidden_size"),
        "{err}"
    );
}
