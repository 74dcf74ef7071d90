#!/usr/bin/env python3
"""Runs the *official* ReDiff training data loader over a dataset.json rediff wrote, for
`tests/stage2_loader.rs`.

The loader is `LazySupervisedDataset` from the official `llava/train/train.py`
(github.com/jiyt17/ReDiff at 52604ca), imported unmodified from a checkout and used as the
official `train()` sets it up for `--version llava_llada --revise True`: the LLaDA tokenizer
loaded with `use_fast=False`, `conv_templates["llava_llada"]` as the default conversation, the
SigLIP image processor, lazy preprocessing. For every record it calls `_get_item` (the
`__getitem__` wrapper retries *other* records on an exception, which would hide a failure)
and records whether it loaded, how many of its `revise` pairs the loader located (the same
search `_get_item` runs: the first occurrence of `'dummy ' + org` minus its first token, at a
position > 0, with `org` and `target` of equal token length), how many positions its
`revise_indices` mark and which (counted from the answer's first token).

The tokenizer: `_get_item` encodes `'dummy ' + org` and drops the first id, which assumes
`dummy` is one token (true of LLaDA's 126k BPE, whose words carry their leading space; the
parity fixture's tiny BPE spells it in five). So this script writes
`fixtures/loader/tokenizer/`: the parity checkpoint's tokenizer with `dummy` added as one
token (four merges into reserved ids), everything else unchanged; rediff validates the
pairs with the same file.

Three modules that `train.py` imports at the top but the data loader never uses are stubbed:
`webdataset` (streaming data), `deepspeed` (the distributed trainer) and `decord` (video).
Images are processed with `image_aspect_ratio = "square"` (the loader's default; the tiling
mode does not touch the text or the pairs).

    bash tests/reference/setup_official.sh        # venv + official checkout under target/reference
    target/reference/venv/bin/pip install "datasets<2.20" "huggingface-hub<0.24" "tyro<0.9" pyyaml
    target/reference/venv/bin/python tests/reference/official_loader.py --official target/reference/ReDiff

It rewrites tests/reference/fixtures/loader/official.json and tokenizer/ (the dataset is
written by `UPDATE_LOADER_FIXTURE=1 cargo test --release --test stage2_loader`, with that
tokenizer: run this script once first when it is missing).
"""

import argparse
import importlib.machinery
import json
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")


def make_tokenizer(checkpoint, out_dir):
    """The checkpoint's tokenizer files, with `dummy` merged into one token."""
    os.makedirs(out_dir, exist_ok=True)
    for name in ["tokenizer_config.json", "special_tokens_map.json"]:
        with open(os.path.join(checkpoint, name)) as f:
            text = f.read()
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(text)
    with open(os.path.join(checkpoint, "tokenizer.json")) as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    pieces = ["du", "dum", "dumm", "dummy"]
    reserved = sorted(
        (i for t, i in vocab.items() if t.startswith("<|reserved_token_")), reverse=True
    )[: len(pieces)]
    inverse = {i: t for t, i in vocab.items()}
    for piece, i in zip(pieces, reserved):
        del vocab[inverse[i]]
        vocab[piece] = i
    tok["model"]["merges"] += ["d u", "du m", "dum m", "dumm y"]
    with open(os.path.join(out_dir, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False)
    return out_dir


def answer_positions(item, answer_ids):
    """The positions `revise_indices` marks, counted from the answer's first token (where
    the answer's own tokens start in `input_ids`: the preprocessing leaves the assistant
    header unignored too, so labels do not tell)."""
    ids = item["input_ids"].tolist()
    n = len(answer_ids)
    starts = [j for j in range(len(ids) - n + 1) if ids[j : j + n] == answer_ids]
    assert starts, "the answer's tokens are not in input_ids"
    marked = item["revise_indices"].nonzero().flatten().tolist()
    return [j - starts[-1] for j in marked]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", required=True, help="checkout of github.com/jiyt17/ReDiff")
    ap.add_argument("--dataset", default=os.path.join(FIXTURES, "loader", "dataset.json"))
    ap.add_argument("--checkpoint", default=os.path.join(FIXTURES, "official", "checkpoint"))
    ap.add_argument("--images", default=os.path.join(FIXTURES, "official"))
    ap.add_argument("--out", default=os.path.join(FIXTURES, "loader", "official.json"))
    args = ap.parse_args()

    sys.path.insert(0, os.path.join(args.official, "train"))
    for name in ["webdataset", "deepspeed", "decord"]:
        stub = types.ModuleType(name)
        stub.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = stub
    import torch
    import transformers
    import llava.train.train as official
    from llava import conversation as conversation_lib
    from llava.model.multimodal_encoder.siglip_encoder import SigLipImageProcessor

    tok_dir = make_tokenizer(args.checkpoint, os.path.join(FIXTURES, "loader", "tokenizer"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        tok_dir, model_max_length=8192, padding_side="right", use_fast=False
    )
    assert len(tokenizer.encode("dummy")) == 1, tokenizer.encode("dummy")
    conversation_lib.default_conversation = conversation_lib.conv_templates["llava_llada"]
    data_args = official.DataArguments(
        data_path=args.dataset, lazy_preprocess=True, is_multimodal=True, image_folder=args.images
    )
    data_args.image_processor = SigLipImageProcessor()
    data_args.mm_use_im_start_end = False
    dataset = official.LazySupervisedDataset(args.dataset, tokenizer, data_args)

    records = []
    for i, raw in enumerate(dataset.list_data_dict):
        row = {"id": raw.get("id", i)}
        try:
            item = dataset._get_item(i)
        except Exception as e:  # the record did not load
            row.update(loaded=False, error=f"{type(e).__name__}: {e}")
            records.append(row)
            continue
        ids = item["input_ids"].tolist()
        located = 0
        for pair in raw.get("revise", []):
            org = tokenizer.encode("dummy " + pair["org"])[1:]
            target = tokenizer.encode("dummy " + pair["target"])[1:]
            if len(org) != len(target):
                continue
            start = next(
                (j for j in range(len(ids) - len(org) + 1) if ids[j : j + len(org)] == org), -1
            )
            located += int(start > 0)
        row.update(
            loaded=True,
            pairs=len(raw.get("revise", [])),
            pairs_located=located,
            revise_positions=int(item["revise_indices"].sum().item()),
            # Where the marked positions sit in the answer (0 = its first token).
            revise_answer_positions=answer_positions(
                item, tokenizer.encode(raw["conversations"][1]["value"], add_special_tokens=False)
            ),
            image_tiles=int(item["image"][0][0].shape[0]) if item["image"][0][0].dim() == 4 else 1,
        )
        records.append(row)
    out = {
        "official_commit": "52604ca",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dataset": os.path.relpath(args.dataset, HERE),
        "records": records,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    ok = sum(r["loaded"] for r in records)
    located = sum(r.get("pairs_located", 0) for r in records)
    pairs = sum(r.get("pairs", 0) for r in records)
    print(f"{ok}/{len(records)} records loaded; {located}/{pairs} pairs located -> {args.out}")


if __name__ == "__main__":
    main()
