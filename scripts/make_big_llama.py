#!/usr/bin/python3
"""Write the TinyLlama-1.1B-shaped benchmark model (random weights, external data) into bench/models/.

Run with Debian's interpreter (torch 1.13, onnx 1.12); `npm run bench -- --only big --make-big` runs it when the
files are missing:

    /usr/bin/python3 scripts/make_big_llama.py [--out bench/models/tinyllama-1.1b] [--force] [--layers N]

The module is the conformance zoo's Llama (scripts/zoo/rms_families.py: Hugging Face's LlamaForCausalLM with eager
attention, its module and parameter names, RMSNorm in float32, rotate_half rotary, grouped-query attention through
repeat_kv, the Trilu causal mask) with TinyLlama-1.1B's dimensions: 22 layers, d_model 2048, 32 heads,
4 key/value heads, head_dim 64, intermediate 5632, vocab 32000, rms eps 1e-5, rope theta 10000, n_ctx 2048.
Weights N(0, 0.02), unit norms, seed 0 (about 1.1 G parameters, 4.4 GB in float32). It writes

  model.onnx        torch.onnx.export, opset 17, dynamic batch and sequence, constant folding (so the
                    projections are MatMuls on pre-transposed `onnx::MatMul_*` initializers, as optimum's exports)
  model.onnx.data   every initializer, in ONE external data file (offsets aligned to 4 KiB)
  config.json       the config, parameter count and seed
  reference.json    PyTorch's logits at the last position of one 16-token prompt (ids 1..16), for checks

bench/models/ is git-ignored: nothing here is committed. Memory: the model (4.4 GB) plus the transposed copies that
constant folding makes (4.4 GB) peak at about 9-10 GB RSS; torch 1.13 writes a >2 GB export as one file per
tensor, which this script then streams into the single data file (never holding the weights a second time).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "tinyllama-1.1b"
CONFIG = dict(
    arch="llama", n_layers=22, n_heads=32, n_kv_heads=4, d_model=2048, d_head=64, d_mlp=5632, vocab=32000,
    n_ctx=2048, rms_eps=1e-5, rope_theta=10000.0,
)
PROMPT = list(range(1, 17))  # the reference prompt: ids 1..16


# The model is the conformance zoo's Llama (scripts/zoo/rms_families.py, which mirrors Hugging Face's
# LlamaForCausalLM, its unconditional float32 casts in RMSNorm included) at TinyLlama's dimensions.
sys.path.insert(0, os.path.join(ROOT, "scripts", "zoo"))
from rms_families import Config, ForCausalLM  # noqa: E402


def build(cfg):
    config = Config("llama", vocab_size=cfg["vocab"], hidden_size=cfg["d_model"], intermediate_size=cfg["d_mlp"],
                    num_attention_heads=cfg["n_heads"], num_key_value_heads=cfg["n_kv_heads"], head_dim=cfg["d_head"],
                    num_hidden_layers=cfg["n_layers"], max_position_embeddings=cfg["n_ctx"],
                    rope_theta=cfg["rope_theta"], rms_norm_eps=cfg["rms_eps"])
    with torch.no_grad():
        model = ForCausalLM(config)
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    return model.eval()


def rss_gib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def merge_external(src_onnx, dst_dir, data_name="model.onnx.data", align=4096):
    """Copy the export's per-tensor external files into one data file, streaming, and write model.onnx beside it."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    src_dir = os.path.dirname(src_onnx)
    model = onnx.load(src_onnx, load_external_data=False)
    data_path = os.path.join(dst_dir, data_name + ".tmp")
    n = 0
    offset = 0
    with open(data_path, "wb") as out:
        tensors = list(model.graph.initializer)
        for node in model.graph.node:  # Constant nodes' tensors (small; kept inline unless external)
            for a in node.attribute:
                if a.HasField("t"):
                    tensors.append(a.t)
        for t in tensors:
            if uses_external_data(t):
                info = ExternalDataInfo(t)
                with open(os.path.join(src_dir, info.location), "rb") as f:
                    if info.offset:
                        f.seek(info.offset)
                    data = f.read(info.length) if info.length else f.read()
            elif t.HasField("raw_data") and len(t.raw_data) >= 1024:
                data = t.raw_data
                t.ClearField("raw_data")
            else:
                continue
            pad = (-offset) % align
            if pad:
                out.write(b"\0" * pad)
                offset += pad
            out.write(data)
            del t.external_data[:]
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(len(data)))):
                e = t.external_data.add()
                e.key, e.value = k, v
            t.data_location = onnx.TensorProto.EXTERNAL
            offset += len(data)
            n += 1
            del data
    os.replace(data_path, os.path.join(dst_dir, data_name))
    onnx.save(model, os.path.join(dst_dir, "model.onnx.tmp"))
    os.replace(os.path.join(dst_dir, "model.onnx.tmp"), os.path.join(dst_dir, "model.onnx"))
    return n, offset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "models", NAME))
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--layers", type=int, default=None, help="fewer layers (a quick check of this script)")
    args = ap.parse_args()
    cfg = dict(CONFIG)
    if args.layers:
        cfg["n_layers"] = args.layers
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "model.onnx")
    data_path = os.path.join(args.out, "model.onnx.data")
    cfg_path = os.path.join(args.out, "config.json")
    ref_path = os.path.join(args.out, "reference.json")
    if not args.force and all(os.path.exists(p) for p in (onnx_path, data_path, cfg_path, ref_path)):
        print(f"{os.path.relpath(onnx_path, ROOT)} exists (use --force to rebuild)")
        return

    torch.manual_seed(0)
    t0 = time.time()
    with torch.no_grad():
        model = build(cfg)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"built LlamaForCausalLM {cfg} with {n_params / 1e6:.1f}M parameters in {time.time() - t0:.1f}s (peak RSS {rss_gib():.1f} GiB)", flush=True)

        t0 = time.time()
        ids = torch.tensor([PROMPT], dtype=torch.int64)
        logits = model(ids)[0, -1]
        print(f"reference forward (1 x {len(PROMPT)}) in {time.time() - t0:.1f}s", flush=True)
        import base64
        import numpy as np

        ref = {
            "model": NAME, "config": cfg, "prompt": PROMPT,
            "last_logits": {"shape": [cfg["vocab"]], "b64": base64.b64encode(logits.numpy().astype("<f4").tobytes()).decode()},
            "argmax": int(logits.argmax()), "max_abs": float(logits.abs().max()),
        }
        del logits, np

        t0 = time.time()
        tmp = tempfile.mkdtemp(prefix="big-llama-", dir=args.out)
        try:
            export_ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], dtype=torch.int64)
            torch.onnx.export(
                model,
                (export_ids,),
                os.path.join(tmp, "model.onnx"),
                input_names=["input_ids"],
                output_names=["logits"],
                dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
                opset_version=17,
                do_constant_folding=True,
                export_params=True,
            )
            print(f"exported to {tmp} in {time.time() - t0:.1f}s (peak RSS {rss_gib():.1f} GiB)", flush=True)
            del model
            t0 = time.time()
            n, size = merge_external(os.path.join(tmp, "model.onnx"), args.out)
            print(f"merged {n} tensors ({size / 1e9:.2f} GB) into {os.path.relpath(data_path, ROOT)} in {time.time() - t0:.1f}s", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    import onnx

    onnx.checker.check_model(onnx_path)  # by path: works above 2 GB with external data
    with open(ref_path, "w") as f:
        json.dump(ref, f)
        f.write("\n")
    with open(cfg_path, "w") as f:
        json.dump({"name": NAME, "config": cfg, "params": n_params, "seed": 0, "init": "N(0, 0.02), unit RMSNorms",
                   "files": {"model": "model.onnx", "data": "model.onnx.data"}}, f, indent=2)
        f.write("\n")
    print(f"wrote {os.path.relpath(onnx_path, ROOT)} ({os.path.getsize(onnx_path) / 1e6:.1f} MB) + model.onnx.data "
          f"({os.path.getsize(data_path) / 1e9:.2f} GB), config.json, reference.json (peak RSS {rss_gib():.1f} GiB)")


if __name__ == "__main__":
    main()
