#!/usr/bin/python3
"""Write the distributed benchmark's model (random weights) into bench/models/.

Run with Debian's interpreter (torch 1.13, onnx 1.12); `npm run bench -- --only distributed` runs it when the
files are missing:

    /usr/bin/python3 scripts/make_dist_bench_model.py [--out bench/models] [--force]

The demo models' GPT-2 module (GPT2Model from scripts/train_demo_models.py, with its hook points), at the size
issue 18 names for the distributed benchmark: 4 layers, 8 heads, d_model 256 (d_head 32), d_mlp 1024, the demo
vocabulary (so examples/tokenizer.json and the demo suites' words work), n_ctx 64; weights N(0, 0.02), zero
biases, seed 0, untrained. It writes

  bench/models/dist-gpt2-4x8/model.onnx       torch.onnx.export, opset 17, dynamic batch and sequence (~15 MB)
  bench/models/dist-gpt2-4x8/tokenizer.json   a copy of examples/tokenizer.json
  bench/models/dist-gpt2-4x8/config.json      the config

bench/models/ is git-ignored.
"""

import argparse
import json
import os
import shutil
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no scripts/__pycache__ from the import below
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from train_demo_models import GPT2Model, N_CTX, V, init_weights  # noqa: E402

NAME = "dist-gpt2-4x8"
CONFIG = dict(arch="gpt2", n_layers=4, n_heads=8, n_kv_heads=8, d_model=256, d_head=32, d_mlp=1024, vocab=V, n_ctx=N_CTX)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "models"))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    out = os.path.join(args.out, NAME)
    os.makedirs(out, exist_ok=True)
    onnx_path = os.path.join(out, "model.onnx")
    cfg_path = os.path.join(out, "config.json")
    tok_path = os.path.join(out, "tokenizer.json")
    if not args.force and all(os.path.exists(p) for p in (onnx_path, cfg_path, tok_path)):
        print(f"{os.path.relpath(onnx_path, ROOT)} exists (use --force to rebuild)")
        return

    torch.manual_seed(0)
    model = GPT2Model(CONFIG).eval()
    model.apply(init_weights)
    n_params = sum(p.numel() for p in model.parameters())
    t0 = time.time()
    ids = torch.randint(2, CONFIG["vocab"], (2, 16), dtype=torch.int64)
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
    import onnx

    onnx.checker.check_model(onnx_path + ".tmp")
    os.replace(onnx_path + ".tmp", onnx_path)
    shutil.copyfile(os.path.join(ROOT, "examples", "tokenizer.json"), tok_path + ".tmp")
    os.replace(tok_path + ".tmp", tok_path)
    with open(cfg_path + ".tmp", "w") as f:
        json.dump({"name": NAME, "config": CONFIG, "params": n_params, "seed": 0, "init": "N(0, 0.02), zero biases, unit LayerNorms"}, f, indent=2)
        f.write("\n")
    os.replace(cfg_path + ".tmp", cfg_path)
    print(f"wrote {os.path.relpath(out, ROOT)}/ ({n_params / 1e6:.1f}M parameters, {os.path.getsize(onnx_path) / 1e6:.0f} MB) in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
