#!/usr/bin/python3
"""Write the GPT-2-small-shaped benchmark model (random weights) into bench/models/.

Run with Debian's interpreter (torch 1.13, onnx 1.12); `npm run bench` runs it when the files are missing:

    /usr/bin/python3 scripts/make_bench_model.py [--out bench/models] [--force]

It builds the same GPT-2 module as the demo models (GPT2Model from scripts/train_demo_models.py, with its
TransformerLens-style HookPoints): 12 layers, 12 heads, d_model 768, d_mlp 3072, vocab 50257, n_ctx 1024,
LayerNorm, learned positions, fused QKV, GELU, tied unembedding; weights N(0, 0.02), seed 0. It writes

  bench/models/gpt2-small.onnx     torch.onnx.export, opset 17, dynamic batch and sequence
  bench/models/gpt2-small.pt       the state dict, so the PyTorch reference runs the very same weights
  bench/models/gpt2-small.json     the config

bench/models/ is git-ignored: these files (about 0.65 GB + 0.5 GB) are never committed.
"""

import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no scripts/__pycache__ from the import below
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from train_demo_models import GPT2Model  # noqa: E402  (the demo models' GPT-2 module and hook points)

NAME = "gpt2-small"
CONFIG = dict(arch="gpt2", n_layers=12, n_heads=12, n_kv_heads=12, d_model=768, d_head=64, d_mlp=3072, vocab=50257, n_ctx=1024)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "models"))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, f"{NAME}.onnx")
    pt_path = os.path.join(args.out, f"{NAME}.pt")
    cfg_path = os.path.join(args.out, f"{NAME}.json")
    if not args.force and all(os.path.exists(p) for p in (onnx_path, pt_path, cfg_path)):
        print(f"{os.path.relpath(onnx_path, ROOT)} exists (use --force to rebuild)")
        return

    torch.manual_seed(0)
    t0 = time.time()
    model = GPT2Model(CONFIG).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"built GPT2Model {CONFIG} with {n_params / 1e6:.1f}M parameters in {time.time() - t0:.1f}s", flush=True)

    torch.save(model.state_dict(), pt_path + ".tmp")
    os.replace(pt_path + ".tmp", pt_path)

    t0 = time.time()
    ids = torch.randint(0, CONFIG["vocab"], (2, 16), dtype=torch.int64)
    torch.onnx.export(
        model,
        (ids,),
        onnx_path + ".tmp",
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
        opset_version=17,
        do_constant_folding=True,
        export_params=True,
    )
    os.replace(onnx_path + ".tmp", onnx_path)
    print(f"exported {os.path.relpath(onnx_path, ROOT)} (opset 17, {os.path.getsize(onnx_path) / 1e6:.0f} MB) in {time.time() - t0:.1f}s", flush=True)

    import onnx

    onnx.checker.check_model(onnx_path)  # by path: the file is under 2 GB, but this also works above
    with open(cfg_path, "w") as f:
        json.dump({"name": NAME, "config": CONFIG, "params": n_params, "seed": 0, "init": "N(0, 0.02), zero biases, unit LayerNorms"}, f, indent=2)
        f.write("\n")
    print(f"wrote {os.path.relpath(pt_path, ROOT)} and {os.path.relpath(cfg_path, ROOT)}")


if __name__ == "__main__":
    main()
