#!/usr/bin/env python3
"""Writes the LLaDA-V parity fixtures for `plugins/llada-v/tests/parity.rs`.

An independent implementation of the LLaDA-V forward pass from the Hugging
Face `transformers` classes (SiglipVisionModel, LlamaForCausalLM with an
all-zero 4-D attention mask, i.e. bidirectional) plus PyTorch for the
projector and the anyres merge. It builds a tiny random model, saves it in
the published checkpoint layout, and saves the expected outputs for fixed
inputs:

- vision_features   [tiles, 729, vh]  tower output (last saved layer, no post-LN)
- projector_output  [tiles, 729, d]   mlp2x_gelu projector
- merged_features   [F, d]            anyres_max_1 merge (unpad, bilinear shrink, newlines, base first)
- image_logits      [1, L, vocab]     LM logits at the response positions of
                                      [prompt ids | image features | prompt ids | response ids]
- text_logits       [1, T, vocab]     LM logits at every position of a text-only sequence

Run by hand (not in CI), from the repository root:

    pip install torch transformers safetensors
    python3 tests/reference/llada_v_parity.py

It overwrites tests/reference/fixtures/llada_v/. Pixels, ids and the image
size are defined by formulas both sides compute exactly (see `pixels`).
"""

import json
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, SiglipVisionConfig, SiglipVisionModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "llada_v")

D, HEADS, KV_HEADS, INTER, LAYERS, VOCAB = 32, 4, 2, 64, 2, 256
VH, V_HEADS, V_INTER, V_LAYERS_CONFIG = 24, 2, 48, 3  # saved: V_LAYERS_CONFIG - 1
TILE, PATCH = 384, 14
IMAGE_SIZE = (500, 260)  # (width, height)
PINPOINTS = "(1x1),...,(2x2)"
MAX_TILES = 1  # anyres_max_1, so the merge exercises the bilinear shrink
PROMPT_A = [7, 3, 250, 11, 2]
PROMPT_B = [5, 9, 1]
RESPONSE = [200, 200, 17, 200, 4, 200, 200, 33]
TEXT = [(i * 37 + 11) % VOCAB for i in range(24)]


def pixels(n_tiles):
    """Tile t, channel c, row y, column x: ((7t + 3c + 5y + 11x) mod 255) / 127.5 - 1."""
    t = torch.arange(n_tiles).view(-1, 1, 1, 1)
    c = torch.arange(3).view(1, -1, 1, 1)
    y = torch.arange(TILE).view(1, 1, -1, 1)
    x = torch.arange(TILE).view(1, 1, 1, -1)
    v = (7 * t + 3 * c + 5 * y + 11 * x) % 255
    return v.to(torch.float32) / 127.5 - 1.0


def reinit(module, gen):
    """N(0, 0.5/sqrt(fan_in)) weights, N(0, 0.1) biases, 1 + N(0, 0.1) norm gains."""
    for name, p in module.named_parameters():
        with torch.no_grad():
            if p.dim() == 1 and ("norm" in name):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel()
                p.copy_(0.5 / math.sqrt(fan_in) * torch.randn(p.shape, generator=gen))


def select_best_resolution(size, candidates):
    ow, oh = size
    best, best_eff, best_waste = None, 0, float("inf")
    for w, h in candidates:
        s = min(w / ow, h / oh)
        eff = min(int(ow * s) * int(oh * s), ow * oh)
        waste = w * h - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (w, h), eff, waste
    return best


def merge(features, newline, size):
    """The anyres_max_N spatial_unpad merge, written from its description."""
    unit = TILE // PATCH
    cands = [(i * TILE, j * TILE) for i in range(1, 3) for j in range(1, 3)]
    w, h = select_best_resolution(size, cands)
    cols, rows = w // TILE, h // TILE
    base, grid = features[0], features[1:]
    m = grid.view(rows, cols, unit, unit, -1).permute(4, 0, 2, 1, 3).reshape(-1, rows * unit, cols * unit)
    H, W = m.shape[1:]
    ow, oh = size
    if ow / oh > W / H:
        nh = int(oh * (W / ow))
        pad = (H - nh) // 2
        m = m[:, pad : H - pad, :]
    else:
        nw = int(ow * (H / oh))
        pad = (W - nw) // 2
        m = m[:, :, pad : W - pad]
    c, hh, ww = m.shape
    times = math.sqrt(hh * ww / (MAX_TILES * unit * unit))
    if times > 1.1:
        m = F.interpolate(m[None], [int(hh // times), int(ww // times)], mode="bilinear")[0]
    m = torch.cat([m, newline[:, None, None].expand(c, m.shape[1], 1)], dim=-1)
    return torch.cat([base, m.flatten(1, 2).transpose(0, 1)], dim=0)


def bidirectional_logits(lm, embeds):
    t = embeds.shape[1]
    mask = torch.zeros(1, 1, t, t)
    out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=torch.arange(t)[None])
    return out.logits


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    vcfg = SiglipVisionConfig(
        hidden_size=VH, intermediate_size=V_INTER, num_hidden_layers=V_LAYERS_CONFIG,
        num_attention_heads=V_HEADS, image_size=TILE, patch_size=PATCH, layer_norm_eps=1e-6,
        hidden_act="gelu_pytorch_tanh", attn_implementation="eager",
    )
    tower = SiglipVisionModel(vcfg).eval()
    # What the reference does at load time: drop the last layer and the head.
    # (transformers 5 flattened `vision_model` into the model itself.)
    vm = getattr(tower, "vision_model", tower)
    del vm.encoder.layers[-1:]
    vm.head = torch.nn.Identity()
    reinit(tower, gen)
    projector = torch.nn.Sequential(torch.nn.Linear(VH, D), torch.nn.GELU(), torch.nn.Linear(D, D)).eval()
    reinit(projector, gen)
    newline = 0.5 * torch.randn(D, generator=gen)
    lcfg = LlamaConfig(
        hidden_size=D, intermediate_size=INTER, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS, vocab_size=VOCAB, rms_norm_eps=1e-5, rope_theta=500000.0,
        max_position_embeddings=16384, tie_word_embeddings=False, attention_bias=False,
        attn_implementation="eager",
    )
    lm = LlamaForCausalLM(lcfg).eval()
    reinit(lm, gen)

    cands = [(i * TILE, j * TILE) for i in range(1, 3) for j in range(1, 3)]
    w, h = select_best_resolution(IMAGE_SIZE, cands)
    n_tiles = 1 + (w // TILE) * (h // TILE)
    with torch.no_grad():
        px = pixels(n_tiles)
        vision = tower(pixel_values=px, output_hidden_states=True).hidden_states[-1]
        projected = projector(vision)
        merged = merge(projected, newline, IMAGE_SIZE)
        emb = lm.model.embed_tokens
        seq = torch.cat([
            emb(torch.tensor(PROMPT_A)), merged, emb(torch.tensor(PROMPT_B)), emb(torch.tensor(RESPONSE)),
        ])[None]
        image_logits = bidirectional_logits(lm, seq)[:, -len(RESPONSE):]
        text_embeds = emb(torch.tensor(TEXT))[None]
        text_logits = bidirectional_logits(lm, text_embeds)
        # The mask really is bidirectional: changing the last token moves the first position.
        changed = emb(torch.tensor(TEXT[:-1] + [(TEXT[-1] + 1) % VOCAB]))[None]
        assert not torch.allclose(bidirectional_logits(lm, changed)[0, 0], text_logits[0, 0]), "causal mask used"

    os.makedirs(OUT, exist_ok=True)
    weights = {}
    for k, v in lm.state_dict().items():
        weights[k] = v
    for k, v in tower.state_dict().items():
        k = k if k.startswith("vision_model.") else "vision_model." + k
        if k.startswith("vision_model.head") or k.endswith("position_ids"):
            continue
        weights["model.vision_tower.vision_tower." + k] = v
    for k, v in projector.state_dict().items():
        weights["model.mm_projector." + k] = v
    weights["model.image_newline"] = newline
    save_file({k: v.contiguous() for k, v in weights.items()}, os.path.join(OUT, "model.safetensors"))
    config = {
        "architectures": ["LlavaLLaDAModelLM"], "model_type": "llava_llada",
        "hidden_size": D, "intermediate_size": INTER, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "vocab_size": VOCAB, "tie_word_embeddings": False,
        "mm_hidden_size": VH, "mm_projector_type": "mlp2x_gelu", "mm_patch_merge_type": "spatial_unpad",
        "image_aspect_ratio": f"anyres_max_{MAX_TILES}", "image_grid_pinpoints": PINPOINTS,
        "mm_vision_select_layer": -2, "vision_config": {"num_attention_heads": V_HEADS, "layer_norm_eps": 1e-6},
    }
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_file({
        "vision_features": vision.contiguous(), "projector_output": projected.contiguous(),
        "merged_features": merged.contiguous(), "image_logits": image_logits.contiguous(),
        "text_logits": text_logits.contiguous(),
    }, os.path.join(OUT, "expected.safetensors"))
    inputs = {
        "image_size": list(IMAGE_SIZE), "tiles": n_tiles, "prompt_a": PROMPT_A, "prompt_b": PROMPT_B,
        "response": RESPONSE, "text": TEXT,
        "generated_with": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    with open(os.path.join(OUT, "inputs.json"), "w") as f:
        json.dump(inputs, f, indent=2)
    print(f"wrote {OUT}: {n_tiles} tiles, {merged.shape[0]} image features, torch {torch.__version__}")


if __name__ == "__main__":
    main()
