#!/usr/bin/env python3
"""Records what the *official* ReDiff code computes, for `plugins/llada-v/tests/official.rs`.

The reference is the official implementation itself (github.com/jiyt17/ReDiff, the `llava`
package under `train/`), imported unmodified from a checkout. This script only orchestrates
it the way the official `eval/inference.py` does:

1. builds a tiny random LLaDA-V model with the official classes (`LlavaLLaDAConfig`,
   `LlavaLLaDAModelLM`, `SigLipVisionModel` for the tower the model loads by path), a
   byte-level BPE tokenizer whose special tokens sit at LLaDA's ids (the official sampler
   hard-codes them), and saves both the official way (`save_pretrained`);
2. loads the checkpoint back with `LlavaLLaDAModelLM.from_pretrained` and
   `AutoTokenizer.from_pretrained(use_fast=False)` as `load_pretrained_model` does (in float32:
   the official loader only offers float16 / bfloat16, and this reference runs on a CPU);
3. for PNG files and questions records: prompt ids (`conv_templates["llava_llada"]` +
   `tokenizer_image_token`), pixel tiles (`process_images`), tower output, projector output,
   the prompt embeddings with the merged image features (`prepare_inputs_labels_for_multimodal`),
   first-step logits, and `model.generate` token ids (`revise` false / true, 1 and 4 tokens per
   step, semi-autoregressive blocks, `revise_topk`, a fractional `revise_start`, a text-only
   prompt and an early `<|eot_id|>`);
4. records PIL's own output for resize cases (`Image.resize`, default filter) on images of
   several modes, and `torch.topk`'s choice among tied `-inf` entries (the official sampler
   relies on it when fewer candidates than its budget remain).

Differences from `eval/inference.py`, all forced by running on a CPU in float32: tiles stay
float32 (the script casts them to float16 for the GPU) and weights load in float32.

Regenerate (about 10 minutes on 2 cores, ~12 GB of RAM for the large image):

    bash tests/reference/setup_official.sh        # venv + official checkout under target/reference
    target/reference/venv/bin/python tests/reference/official_parity.py \
        --official target/reference/ReDiff

It rewrites tests/reference/fixtures/official/.
"""

import argparse
import copy
import json
import math
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "fixtures", "official")

# LLaDA's special token ids (the official sampler hard-codes the suppressed ones and the mask).
SPECIAL = {
    "<|startoftext|>": 126080,
    "<|endoftext|>": 126081,
    "<|mdm_mask|>": 126336,
    "<|start_header_id|>": 126346,
    "<|end_header_id|>": 126347,
    "<|eot_id|>": 126348,
}
VOCAB = 126464
# LLaDA-8B-Instruct's chat template (Llama-3 style; only the content is trimmed).
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CORPUS = [
    "describe the image in detail .",
    "Please describe the image in detail.",
    "a big red circle on the left and a small blue square at the center .",
    "You are a helpful language and vision assistant. You are able to understand the visual "
    "content that the user provides, and assist the user with a variety of tasks using natural language.",
    "system user assistant what is in the picture ? how many objects are there ?",
    "The image shows a cat sitting on a wooden table next to a window with green plants.",
]

# Tiny sizes; the tower's geometry (384 px tiles, 14 px patches, 729 features) is fixed by the
# official code whatever its config says.
LM = dict(hidden=16, inter=40, layers=2, heads=4, kv_heads=2)
TOWER = dict(hidden=16, inter=24, layers_config=3, heads=2)  # saved: layers_config - 1


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", default=os.environ.get("REDIFF_OFFICIAL"),
                   help="checkout of github.com/jiyt17/ReDiff (or set REDIFF_OFFICIAL)")
    p.add_argument("--out", default=DEFAULT_OUT, help="fixture directory to (re)write")
    p.add_argument("--seed", type=int, default=20251122)
    a = p.parse_args()
    if not a.official or not os.path.isdir(os.path.join(a.official, "train", "llava")):
        p.error("--official must point at a ReDiff checkout (with train/llava)")
    return a


# ---------------------------------------------------------------- inputs


def make_images(out, rng):
    """Deterministic synthetic PNGs: smooth gradients, shapes and a little noise."""
    from PIL import Image, ImageDraw

    def scene(w, h, mode):
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        base = np.stack([
            128 + 100 * np.sin(x / (7 + w / 50)) * np.cos(y / 11),
            255 * x / max(w - 1, 1),
            255 * y / max(h - 1, 1),
        ], axis=-1)
        if w * h < 10_000:  # noise only on the smallest image: the fixture stays compressible
            base += rng.normal(0, 12, size=base.shape)
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
        d = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, w - 4)), int(rng.integers(0, h - 4))
            x1 = min(w - 1, x0 + int(rng.integers(4, max(5, w // 3))))
            y1 = min(h - 1, y0 + int(rng.integers(4, max(5, h // 3))))
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=color)
        if mode == "RGBA":
            alpha = np.clip(255 * (0.2 + 0.9 * x / max(w - 1, 1)) - 40 * (y < h / 4), 0, 255)
            alpha[: h // 6, : w // 6] = 0  # fully transparent corner
            img = img.convert("RGBA")
            img.putalpha(Image.fromarray(alpha.astype(np.uint8), "L"))
        elif mode == "LA":
            img = img.convert("LA")
            a = np.array(img)
            a[..., 1] = np.clip(255 * (1.1 - y / max(h - 1, 1)), 0, 255).astype(np.uint8)
            img = Image.fromarray(a, "LA")
        elif mode == "P":
            img = img.quantize(colors=37)
            img.info["transparency"] = 5
        elif mode != "RGB":
            img = img.convert(mode)
        return img

    specs = {
        # name: (width, height, mode)
        "small": (300, 260, "RGB"),      # single-tile size: 1x1 grid, 2 tiles
        "large": (1100, 700, "RGB"),     # 3x2 grid, unpadding and the anyres_max_4 shrink
        "rgba": (260, 410, "RGBA"),      # alpha composited on white (base tile) / dropped (grid)
        "gray": (333, 222, "L"),
        "gray_alpha": (200, 150, "LA"),
        "palette": (180, 240, "P"),      # resized with NEAREST, as PIL does for mode P
        "tiny": (37, 23, "RGB"),         # upscaled
        "bitonal": (64, 48, "1"),
    }
    paths = {}
    for name, (w, h, mode) in specs.items():
        path = os.path.join(out, f"{name}.png")
        img = scene(w, h, mode)
        if mode == "P":
            img.save(path, transparency=5)
        else:
            img.save(path)
        paths[name] = path
    return paths


def build_tokenizer(ckpt):
    """Byte-level BPE over a small corpus, reserved fillers up to LLaDA's vocabulary size,
    LLaDA's special tokens at their ids (as added special tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tk.train_from_iterator(CORPUS * 4, trainer)
    spec = json.loads(tk.to_str())
    vocab = spec["model"]["vocab"]
    live = len(vocab)
    by_id = {i: t for t, i in vocab.items()}
    for i in range(VOCAB):
        if i not in by_id:
            by_id[i] = f"<|reserved_token_{i}|>"
    for t, i in SPECIAL.items():
        by_id[i] = t
    spec["model"]["vocab"] = {t: i for i, t in sorted(by_id.items())}
    spec["added_tokens"] = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for t, i in sorted(SPECIAL.items(), key=lambda kv: kv[1])
    ]
    path = os.path.join(ckpt, "tokenizer.json")
    with open(path, "w") as f:
        json.dump(spec, f, ensure_ascii=False)
    fast = PreTrainedTokenizerFast(tokenizer_file=path, bos_token="<|startoftext|>",
                                   eos_token="<|eot_id|>", pad_token="<|endoftext|>",
                                   mask_token="<|mdm_mask|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(ckpt)
    assert len(fast) == VOCAB, len(fast)
    return live


def reinit(model, gen, live_rows):
    """Seeded weights, rounded to bfloat16 so every value is exact in the formats the official
    loader offers: N(0, 0.5/sqrt(fan_in)) matrices, N(0, 0.1) biases, 1 + N(0, 0.1) norm gains.
    Embedding and head rows outside `live_rows` are zero (the fixture stays small)."""
    import torch

    def bf(t):
        return t.to(torch.bfloat16).to(torch.float32)

    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or name.endswith("layernorm.weight")):
                p.copy_(bf(1 + 0.1 * torch.randn(p.shape, generator=gen)))
            elif name.endswith("image_newline"):
                p.copy_(bf(torch.randn(p.shape, generator=gen) / math.sqrt(p.numel())))
            elif p.dim() == 1:
                p.copy_(bf(0.1 * torch.randn(p.shape, generator=gen)))
            else:
                fan_in = p[0].numel()
                w = 0.5 / math.sqrt(fan_in) * torch.randn(p.shape, generator=gen)
                if name == "lm_head.weight":
                    w = w * 4  # sharp predictions
                if any(k in name for k in ("q_proj", "k_proj", "o_proj", "down_proj")):
                    w = w * 6  # sharp attention: states that differ from position to position
                if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
                    keep = torch.zeros(p.shape[0], dtype=torch.bool)
                    keep[live_rows] = True
                    w[~keep] = 0
                    if name.endswith("embed_tokens.weight"):
                        w = w / 0.5 * math.sqrt(fan_in) * 0.1  # small next to the layers' outputs
                p.copy_(bf(w))


# ---------------------------------------------------------------- records


def u8_tiles(tiles):
    """Inverts (v / 255 - 0.5) / 0.5 exactly: the tiles as the 8-bit pixels they came from."""
    v = np.rint((tiles.numpy().astype(np.float64) * 0.5 + 0.5) * 255)
    assert np.abs(v - np.clip(v, 0, 255)).max() == 0
    back = ((v / 255.0).astype(np.float32) - np.float32(0.5)) / np.float32(0.5)
    assert np.abs(back - tiles.numpy()).max() < 1e-6
    return v.astype(np.uint8)


def main():
    args = parse()
    sys.path.insert(0, os.path.join(os.path.abspath(args.official), "train"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import PIL
    import tokenizers
    import torch
    import transformers
    from PIL import Image
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from llava.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
    from llava.conversation import conv_templates
    from llava.mm_utils import process_images, tokenizer_image_token
    from llava.model.language_model.llava_llada import LlavaLLaDAConfig, LlavaLLaDAModelLM
    from llava.model.multimodal_encoder.siglip_encoder import SigLipVisionConfig, SigLipVisionModel

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rng = np.random.default_rng(args.seed)
    out = os.path.abspath(args.out)
    if os.path.isdir(out):
        shutil.rmtree(out)
    ckpt = os.path.join(out, "checkpoint")
    os.makedirs(ckpt)
    images = make_images(out, rng)

    # -- the tower the model loads by path ("siglip" in the name picks SigLipVisionTower)
    os.chdir(ckpt)  # mm_vision_tower is resolved against the working directory
    tower_cfg = SigLipVisionConfig(hidden_size=TOWER["hidden"], intermediate_size=TOWER["inter"],
                                   num_hidden_layers=TOWER["layers_config"],
                                   num_attention_heads=TOWER["heads"])
    SigLipVisionModel(tower_cfg).save_pretrained("siglip-tiny")

    live = build_tokenizer(ckpt)
    live_rows = list(range(live)) + sorted(SPECIAL.values())

    cfg = LlavaLLaDAConfig(
        vocab_size=VOCAB, hidden_size=LM["hidden"], intermediate_size=LM["inter"],
        num_hidden_layers=LM["layers"], num_attention_heads=LM["heads"],
        num_key_value_heads=LM["kv_heads"], rms_norm_eps=1e-5, rope_theta=500000.0,
        max_position_embeddings=8192, tie_word_embeddings=False, hidden_act="silu",
        bos_token_id=SPECIAL["<|startoftext|>"], eos_token_id=SPECIAL["<|eot_id|>"],
        pad_token_id=SPECIAL["<|endoftext|>"],
        mm_vision_tower="siglip-tiny", mm_hidden_size=TOWER["hidden"],
        mm_projector_type="mlp2x_gelu", mm_patch_merge_type="spatial_unpad",
        image_aspect_ratio="anyres_max_4", image_grid_pinpoints="(1x1),...,(6x6)",
        mm_vision_select_layer=-2, mm_vision_select_feature="patch",
        mm_use_im_patch_token=False, mm_use_im_start_end=False, mm_newline_position="one_token",
        use_mm_proj=True, tokenizer_padding_side="right",
    )
    model = LlavaLLaDAModelLM(cfg)
    gen = torch.Generator().manual_seed(args.seed)
    reinit(model, gen, live_rows)
    eot = SPECIAL["<|eot_id|>"]

    tokenizer = None
    image_processor = None

    def load():
        """As load_pretrained_model does for llava_llada, in float32 on the CPU."""
        nonlocal tokenizer, image_processor
        tokenizer = AutoTokenizer.from_pretrained(ckpt, use_fast=False)
        llada_cfg = LlavaLLaDAConfig.from_pretrained(ckpt)
        m = LlavaLLaDAModelLM.from_pretrained(ckpt, low_cpu_mem_usage=True, attn_implementation="sdpa",
                                              config=llada_cfg, torch_dtype=torch.float32)
        if getattr(m.config, "mm_use_im_patch_token", True):
            raise SystemExit("mm_use_im_patch_token must be false (the loader would add a token)")
        before = m.get_input_embeddings().weight.shape
        m.resize_token_embeddings(len(tokenizer))
        assert m.get_input_embeddings().weight.shape == before
        tower = m.get_vision_tower()
        if not tower.is_loaded:
            tower.load_model()
        image_processor = tower.image_processor
        return m.eval()

    def prompt_ids(question, with_image):
        conv = copy.deepcopy(conv_templates["llava_llada"])
        conv.tokenizer = tokenizer
        text = (DEFAULT_IMAGE_TOKEN + "\n" + question) if with_image else question
        conv.append_message(conv.roles[0], text)
        conv.append_message(conv.roles[1], None)
        prompt = conv.get_prompt()
        return prompt, tokenizer_image_token(prompt, tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt").unsqueeze(0)

    def generate(m, image_name, question, **kw):
        with_image = image_name is not None
        _, ids = prompt_ids(question, with_image)
        if with_image:
            img = Image.open(images[image_name])
            tiles = process_images([img], image_processor, m.config)
            tiles = [t.to(dtype=torch.float32) for t in tiles]
            res = m.generate(ids, images=tiles, image_sizes=[img.size], modalities=["image"],
                             tokenizer=tokenizer, stopping_criteria=["<|eot_id|>"], **kw)
        else:
            res = m.generate(ids, images=None, tokenizer=tokenizer, stopping_criteria=["<|eot_id|>"], **kw)
        return res[0].tolist()

    # -- an early <|eot_id|>: point the end-of-turn head row along the direction that separates
    #    late from early response positions and grow it until a plain 4-step caption of the small
    #    image stops before its end (so the stop rule is exercised), then save.
    tokenizer = AutoTokenizer.from_pretrained(ckpt, use_fast=False)
    image_processor = model.get_vision_tower().image_processor
    model.eval()
    L = 16
    mask_id = SPECIAL["<|mdm_mask|>"]
    with torch.no_grad():
        img = Image.open(images["small"])
        _, ids = prompt_ids("describe the image", True)
        tiles = process_images([img], image_processor, model.config)[0].to(torch.float32)
        (_, _, _, _, embeds, _) = model.prepare_inputs_labels_for_multimodal(
            ids, None, None, None, None, [tiles], ["image"], image_sizes=[img.size])
        mask_embed = model.get_model().embed_tokens(torch.tensor([mask_id]))
        x = torch.cat([embeds, mask_embed.expand(L, -1).unsqueeze(0)], dim=1)
        h = model.model(inputs_embeds=x)[0][0, -L:]
        first = model.lm_head(h).argmax(-1).tolist()
        print("first-step argmax of the small image:", first, flush=True)
        u = h[3 * L // 4:].mean(0) - h[: 3 * L // 4].mean(0)
        u = u / u.norm()

    def caption_length(scale):
        with torch.no_grad():
            model.lm_head.weight[eot] = (scale * u).to(torch.bfloat16).to(torch.float32)
        n = len(generate(model, "small", "describe the image", steps=4, gen_length=16, block_length=16))
        print(f"eot scale {scale:.3f}: {n} tokens", flush=True)
        return n

    lo = hi = None  # the largest scale known to run to the end, the smallest known to stop early
    for scale in [0.25 * i for i in range(1, 121)]:
        if caption_length(scale) < 16:
            lo, hi = scale - 0.25, scale
            break
    if hi is None:
        raise SystemExit("no scale of the end-of-turn row gave an early stop")
    scale = hi
    for _ in range(14):  # bisect towards a stop in the middle of the caption
        mid = (lo + hi) / 2
        n = caption_length(mid)
        if n == 16:
            lo = mid
        else:
            hi = scale = mid
            if n >= 3:
                break
    caption_length(scale)
    model.save_pretrained(ckpt, safe_serialization=True)
    m = load()

    tensors = {}
    record = {
        "generated_with": {
            "official_commit": os.popen(f"git -C {args.official} rev-parse HEAD").read().strip(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "pillow": PIL.__version__,
            "numpy": np.__version__, "seed": args.seed, "eot_head_scale": scale,
        },
        "checkpoint": "checkpoint",
        "live_ids": live_rows,
        "images": {},
        "generate": [],
        "resize": [],
        "process": [],
        "topk": [],
    }
    tensors["live_ids"] = torch.tensor(live_rows, dtype=torch.int64)

    # -- forward-path intermediates on each image the captions use
    for name in ["small", "large", "rgba"]:
        img = Image.open(images[name])
        prompt, ids = prompt_ids("describe the image", True)
        tiles = process_images([img], image_processor, m.config)
        tiles = tiles[0].to(torch.float32)
        with torch.no_grad():
            tower = m.get_vision_tower()(tiles)
            proj = m.get_model().mm_projector(tower)
            (_, _, _, _, embeds, _) = m.prepare_inputs_labels_for_multimodal(
                ids, None, None, None, None, [tiles], ["image"], image_sizes=[img.size])
            mask_embed = m.get_model().embed_tokens(torch.tensor([mask_id]))
            x = torch.cat([embeds, mask_embed.expand(L, -1).unsqueeze(0)], dim=1)
            logits = m.lm_head(m.model(inputs_embeds=x)[0]).float()[0, -L:]
        dead = torch.ones(VOCAB, dtype=torch.bool)
        dead[live_rows] = False
        assert logits[:, dead].abs().max() == 0
        tensors[f"{name}.tiles_u8"] = torch.from_numpy(u8_tiles(tiles))
        tensors[f"{name}.tower"] = tower.contiguous()
        tensors[f"{name}.projector"] = proj.contiguous()
        tensors[f"{name}.embeds"] = embeds[0].contiguous()
        tensors[f"{name}.logits"] = logits[:, live_rows].contiguous()
        record["images"][name] = {
            "file": os.path.basename(images[name]), "size": list(img.size), "mode": img.mode,
            "prompt": prompt, "prompt_ids": ids[0].tolist(), "question": "describe the image",
            "tiles": int(tiles.shape[0]), "prompt_length": int(embeds.shape[1]),
        }
        print(f"{name}: {tiles.shape[0]} tiles, prompt {embeds.shape[1]}", flush=True)

    # -- captions: the settings of the issue
    settings = []
    for image_name in ["small", "large"]:
        for revise in [False, True]:
            for steps in [16, 4]:
                settings.append(dict(image=image_name, question="describe the image", gen_length=16,
                                     block_length=16, steps=steps, revise=revise))
    for revise in [False, True]:
        settings.append(dict(image="small", question="describe the image", gen_length=32,
                             block_length=8, steps=8, revise=revise))   # semi-AR, 2 tokens/step
        settings.append(dict(image="small", question="describe the image", gen_length=32,
                             block_length=16, steps=32, revise=revise))  # semi-AR, 1 token/step
        settings.append(dict(image="rgba", question="What is in the picture?", gen_length=16,
                             block_length=16, steps=4, revise=revise))
        settings.append(dict(image=None, question="describe the image in detail .", gen_length=16,
                             block_length=16, steps=4, revise=revise))   # text only
    settings.append(dict(image="small", question="describe the image", gen_length=16, block_length=16,
                         steps=8, revise=True, revise_topk=0.5))
    settings.append(dict(image="small", question="describe the image", gen_length=16, block_length=16,
                         steps=8, revise=True, revise_start=0.6))
    settings.append(dict(image="small", question="describe the image", gen_length=16, block_length=16,
                         steps=16, revise=True, revise_topk=0.3, revise_start=0.5))
    for s in settings:
        kw = {k: v for k, v in s.items() if k not in ("image", "question")}
        tokens = generate(m, s["image"], s["question"], **kw)
        s["tokens"] = tokens
        s["stopped_early"] = len(tokens) < s["gen_length"]
        record["generate"].append(s)
        print(s, flush=True)
    assert any(s["stopped_early"] for s in record["generate"]), "no case stops at an early <|eot_id|>"

    # -- PIL's resize (default filter) on images of several modes, and process_images on them
    cases = [
        ("tiny", (384, 384)), ("tiny", (64, 41)), ("small", (123, 77)), ("small", (301, 517)),
        ("rgba", (384, 384)), ("rgba", (97, 150)), ("gray", (111, 290)), ("gray_alpha", (384, 384)),
        ("palette", (384, 384)), ("palette", (90, 55)), ("bitonal", (50, 70)), ("large", (384, 384)),
    ]
    for i, (name, size) in enumerate(cases):
        img = Image.open(images[name])
        r = img.resize(size)
        arr = np.asarray(r.convert("RGBA" if r.mode in ("LA", "RGBA") else "RGB"))
        tensors[f"resize.{i}"] = torch.from_numpy(np.ascontiguousarray(arr.astype(np.uint8)))
        record["resize"].append({"image": name, "mode": img.mode, "size": list(size), "out_mode": r.mode,
                                 "key": f"resize.{i}"})
    for name in ["gray", "gray_alpha", "palette", "tiny", "bitonal"]:
        img = Image.open(images[name])
        tiles = process_images([img], image_processor, m.config)[0]
        tensors[f"process.{name}"] = torch.from_numpy(u8_tiles(tiles))
        record["process"].append({"image": name, "mode": img.mode, "size": list(img.size),
                                  "key": f"process.{name}"})

    # -- torch.topk among tied -inf entries (both of its CPU code paths)
    g = np.random.default_rng(7)
    for n, k, finite in [(40, 5, 2), (40, 9, 0), (300, 4, 1), (300, 3, 0), (1000, 16, 5), (70, 2, 1),
                         (64, 1, 0), (65, 1, 0), (129, 2, 1), (2000, 8, 3)]:
        v = np.full(n, -np.inf)
        pos = g.choice(n, size=finite, replace=False)
        v[pos] = g.random(finite)
        _, idx = torch.topk(torch.from_numpy(v), k=k)
        record["topk"].append({"n": n, "k": k, "finite": {str(int(p)): float(v[p]) for p in pos},
                               "indices": sorted(int(i) for i in idx)})

    save_file(tensors, os.path.join(out, "expected.safetensors"))
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(record, f, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
