#!/usr/bin/env python3
"""PyTorch twin of rediff's tiny VLM, timed like the twin benchmark (`cargo bench --bench twin`) times ours.

Same architecture and sizes (token and patch embeddings with learned
positions, pre-norm blocks of RMSNorm, bidirectional multi-head attention
without biases and a SiLU MLP, final RMSNorm, untied head), same batch
shapes, same work per measurement:

- train_step: batch 64 (images to patches, forward, weighted cross-entropy,
  backward, gradient-norm clipping, AdamW)
- forward: batch 256 under no_grad
- caption_{denoise,refine}_{tps}: one caption of gen_length tokens at tps
  tokens per step (argmax, confidence = softmax probability, top-k unmask;
  refine also rewrites decoded tokens every step)

the twin benchmark (`cargo bench --bench twin`) runs it with --spec (a JSON file it writes) and reads the
JSON it prints; run it by hand the same way. Threads: torch.set_num_threads.
"""

import argparse
import json
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the twin benchmark reports this and goes on without the reference
    print(json.dumps({"error": "PyTorch is not installed (pip install torch)"}))
    sys.exit(3)


class RmsNorm(torch.nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f = c["hidden_size"], c["intermediate_size"]
        self.heads = c["num_heads"]
        self.input_layernorm = RmsNorm(d, c["rms_norm_eps"])
        self.q_proj = torch.nn.Linear(d, d, bias=False)
        self.k_proj = torch.nn.Linear(d, d, bias=False)
        self.v_proj = torch.nn.Linear(d, d, bias=False)
        self.o_proj = torch.nn.Linear(d, d, bias=False)
        self.post_attention_layernorm = RmsNorm(d, c["rms_norm_eps"])
        self.up_proj = torch.nn.Linear(d, f, bias=False)
        self.down_proj = torch.nn.Linear(f, d, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        h = self.input_layernorm(x)
        split = lambda p: p(h).view(b, t, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.q_proj), split(self.k_proj), split(self.v_proj)
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1) @ v
        x = x + self.o_proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.down_proj(F.silu(self.up_proj(self.post_attention_layernorm(x))))


class TinyVlm(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.c = c
        self.p = c["patch_size"]
        n_patches = (c["image_size"] // self.p) ** 2
        self.embed_tokens = torch.nn.Embedding(c["vocab_size"], d)
        self.patch_embed = torch.nn.Linear(3 * self.p * self.p, d)
        self.pos_image = torch.nn.Parameter(0.3 * torch.randn(n_patches, d))
        self.pos_text = torch.nn.Parameter(0.3 * torch.randn(c["max_prompt_len"] + c["max_response_len"], d))
        self.layers = torch.nn.ModuleList([Block(c) for _ in range(c["num_layers"])])
        self.norm = RmsNorm(d, c["rms_norm_eps"])
        self.lm_head = torch.nn.Linear(d, c["vocab_size"], bias=False)
        with torch.no_grad():  # as in the twin benchmark (`cargo bench --bench twin`): end-of-turn never wins, so no early stop
            self.lm_head.weight[c["eot"]] = 0

    def patchify(self, images):
        """uint8 [B, H, W, 3] -> [B, patches, 3 p p] in [-1, 1], (c, y, x) order per patch."""
        b, s = images.shape[0], images.shape[1]
        g = s // self.p
        x = images.float() / 127.5 - 1.0
        x = x.view(b, g, self.p, g, self.p, 3).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, g * g, 3 * self.p * self.p)

    def prefix(self, images, prompt):
        img = self.patch_embed(self.patchify(images)) + self.pos_image
        txt = self.embed_tokens(prompt) + self.pos_text[: prompt.shape[1]]
        return torch.cat([img, txt], 1)

    def forward(self, prefix, response):
        l = response.shape[1]
        off = self.c["max_prompt_len"]
        x = torch.cat([prefix, self.embed_tokens(response) + self.pos_text[off : off + l]], 1)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x[:, -l:]))


def median_time(fn, runs, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def caption(model, images, prompt, c, tps, refine):
    l = c["gen_length"]
    mask = c["mask"]
    suppressed = torch.tensor(c["suppressed"], dtype=torch.long)
    with torch.no_grad():
        prefix = model.prefix(images, prompt)
        tokens = torch.full((1, l), mask, dtype=torch.long)
        steps = l // tps
        for _ in range(steps):
            logits = model(prefix, tokens)[0]
            logits[:, suppressed] = float("-inf")
            probs = torch.softmax(logits.double(), -1)
            conf, x0 = probs.max(-1)
            masked = tokens[0] == mask
            decoded = ~masked
            conf = torch.where(masked, conf, torch.tensor(float("-inf"), dtype=conf.dtype))
            k = min(tps, int(masked.sum()))
            idx = torch.topk(conf, k).indices
            if refine:
                tokens[0, decoded] = x0[decoded]
            tokens[0, idx] = x0[idx]
    return tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True, help="JSON file written by the twin benchmark (`cargo bench --bench twin`)")
    args = ap.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    c, runs, threads = spec["config"], spec["runs"], spec["threads"]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = TinyVlm(c)
    s, lp, l = c["image_size"], c["prompt_len"], c["gen_length"]
    gen = torch.Generator().manual_seed(1)

    def batch(n):
        images = torch.randint(0, 256, (n, s, s, 3), dtype=torch.uint8, generator=gen)
        prompt = torch.randint(0, c["vocab_size"], (n, lp), generator=gen)
        return images, prompt

    results = {}
    ops = spec["ops"]
    if "train_step" in ops:
        images, prompt = batch(c["train_batch"])
        inp = torch.randint(0, c["vocab_size"], (c["train_batch"], l), generator=gen)
        labels = torch.randint(0, c["vocab_size"], (c["train_batch"], l), generator=gen)
        weights = torch.rand((c["train_batch"], l), generator=gen) / l
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

        def step():
            opt.zero_grad(set_to_none=True)
            logits = model(model.prefix(images, prompt), inp)
            ce = -torch.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0]
            loss = (ce * weights).sum() / inp.shape[0]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        model.train()
        results["train_step"], _ = median_time(step, runs)
    model.eval()
    if "forward" in ops:
        images, prompt = batch(c["forward_batch"])
        inp = torch.full((c["forward_batch"], l), c["mask"], dtype=torch.long)

        def fwd():
            with torch.no_grad():
                model(model.prefix(images, prompt), inp)

        results["forward"], _ = median_time(fwd, runs)
    images, prompt = batch(1)
    for op in ops:
        if op.startswith("caption_"):
            _, kind, tps = op.split("_")
            results[op], _ = median_time(lambda: caption(model, images, prompt, c, int(tps), kind == "refine"), runs)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "median_s": results}))


if __name__ == "__main__":
    main()
