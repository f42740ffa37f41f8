#!/usr/bin/python3
"""Check `circuitlens sensitivity`'s fake quantization against an independent NumPy/PyTorch one.

    /usr/bin/python3 scripts/quantize_check.py --model M.onnx --tensors Q.safetensors --quantize int4 \
        [--group-size G] [--prompts P.json] --out report.json

Run with Debian's interpreter (torch 1.13, onnx 1.12); CPU, deterministic, seconds.

Q.safetensors holds CircuitLens' quantized initializers (ONNX names) and, for those quantized only in part (a
circuit's slices), a 0/1 tensor "<name>::mask" of the entries in scope. This script
1. reads the ONNX file's initializers and graph with onnx, finds each tensor's output channels from how the graph
   reads it (its own rules: MatMul B [in, out] -> columns; Gemm B with transB -> rows, else columns; Gather or
   Slice of an embedding table -> rows; through Identity/Transpose), and quantizes the original values itself:
   symmetric round-to-nearest (half to even), scale = max|w| / q (q = 127 int8, 7 int4) per channel or per group
   of G consecutive input entries, in float32; fp16: numpy's float16 cast. It compares with CircuitLens' values:
   entries in scope must agree bit for bit (the maximum distance in float32 ulps is reported), entries out of
   scope must be the original's.
2. with --prompts (a JSON list of {"ids", "answer", "foil"}) and one of the demo models (examples/induction-*.onnx),
   rebuilds the model in PyTorch (scripts/train_demo_models.py's classes; the initializer -> parameter mapping is
   this script's own, checked by the logits of the unquantized model against the training reference), puts in
   its own quantized weights and reports the last-position logits, the mean logit difference, accuracy, and
   KL(original || quantized) of each prompt's next-token distribution.
Writes report.json.
"""

import argparse
import base64
import json
import os
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(2)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QMAX = {"int8": 127, "int4": 7}


def read_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + b:8 + n + e], dtype="<f4").reshape(t["shape"]).copy()
    return out


def channel_axis(graph, name):
    """Output-channel axis of initializer `name`, from its readers (independent of CircuitLens' rules)."""
    consumers = {}
    for node in graph.node:
        for i, x in enumerate(node.input):
            consumers.setdefault(x, []).append((node, i))
    axes = set()
    pending = [(name, [0, 1])]
    while pending:
        t, perm = pending.pop()
        for node, i in consumers.get(t, []):
            attrs = {a.name: a for a in node.attribute}
            if node.op_type in ("Identity", "Cast"):
                pending.append((node.output[0], perm))
            elif node.op_type == "Transpose":
                p = list(attrs["perm"].ints) if "perm" in attrs else [1, 0]
                pending.append((node.output[0], [perm[k] for k in p]))
            elif node.op_type == "MatMul" and i == 1:
                axes.add(perm[1])
            elif node.op_type == "Gemm" and i == 1:
                axes.add(perm[0] if ("transB" in attrs and attrs["transB"].i) else perm[1])
            elif node.op_type in ("Gather", "Slice") and i == 0:
                axes.add(perm[0])
            else:
                raise SystemExit(f"{name}: read by {node.op_type} {node.name}: not a weight this script knows")
    assert len(axes) == 1, f"{name}: channel axes {axes}"
    return axes.pop()


def fake_quantize(w, axis, scheme, group):
    """w: float32 [a, b]; returns the dequantized float32 values (NumPy, float32 throughout)."""
    w = w.astype(np.float32)
    if scheme == "fp16":
        return w.astype(np.float16).astype(np.float32)
    q = np.float32(QMAX[scheme])
    m = w if axis == 0 else w.T  # [channels, inputs]
    C, K = m.shape
    g = group or K
    out = np.empty_like(m)
    for k0 in range(0, K, g):
        blk = m[:, k0:k0 + g]
        scale = (np.abs(blk).max(axis=1, keepdims=True) / q).astype(np.float32)
        safe = np.where(scale == 0, np.float32(1), scale).astype(np.float32)
        n = np.clip(np.round((blk / safe).astype(np.float32)), -q, q).astype(np.float32)
        out[:, k0:k0 + g] = np.where(scale == 0, np.float32(0), (n * scale).astype(np.float32))
    return out if axis == 0 else out.T


def ulps(a, b):
    ia = a.astype(np.float32).view(np.int32).astype(np.int64)
    ib = b.astype(np.float32).view(np.int32).astype(np.int64)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return np.abs(ia - ib)


def rebuild(model_path, weights):
    """The demo model in PyTorch with `weights` ({onnx name: array}); the mapping as scripts/protect_check.py's."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import train_demo_models as demo
    import onnx

    stem = os.path.basename(model_path)[:-len(".onnx")]
    model = demo.build(demo.CONFIGS[stem])
    params = dict(model.named_parameters())
    g = onnx.load(model_path).graph
    readers = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    loaded = set()
    with torch.no_grad():
        for name, value in weights.items():
            if name in params:
                pname, transposed = name, False
            else:
                users = readers.get(name, [])
                if not (len(users) == 1 and users[0].op_type == "MatMul" and users[0].name.endswith("/MatMul")):
                    continue
                scope = users[0].name[1:-len("/MatMul")].replace("/", ".")
                pname, transposed = (f"{scope}.weight" if scope else "embed.weight"), True
            v = torch.from_numpy(value.T.copy() if transposed else value.copy())
            if pname in loaded:  # a tied weight: both copies must agree
                assert torch.equal(params[pname], v), f"{name}: tied to {pname} but differs"
                continue
            params[pname].copy_(v)
            loaded.add(pname)
    missing = set(params) - loaded
    assert not missing, f"parameters not found in the ONNX file: {missing}"
    model.eval()
    return model, stem


def last_logits(model, prompts):
    out = []
    with torch.no_grad():
        for p in prompts:
            out.append(model(torch.tensor([p["ids"]], dtype=torch.int64))[0, -1].double())
    return torch.stack(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tensors", required=True)
    ap.add_argument("--quantize", required=True, choices=["int8", "int4", "fp16"])
    ap.add_argument("--group-size", type=int, default=None)
    ap.add_argument("--prompts")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import onnx
    from onnx import numpy_helper

    m = onnx.load(a.model)
    original = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in m.graph.initializer if t.data_type == 1}
    ours = read_safetensors(a.tensors)
    mine = dict(original)
    rows = []
    for name, value in ours.items():
        if name.endswith("::mask"):
            continue
        w = original[name]
        axis = channel_axis(m.graph, name)
        q = fake_quantize(w, axis, a.quantize, a.group_size)
        mask = ours.get(name + "::mask")
        sel = np.ones(w.shape, dtype=bool) if mask is None else mask > 0.5
        mine[name] = np.where(sel, q, w).astype(np.float32)
        d = ulps(value, mine[name])
        bits = value.astype(np.float32).view(np.uint32) != mine[name].view(np.uint32)
        rows.append({"name": name, "axis": int(axis), "entries": int(sel.sum()), "differ": int(bits.sum()), "max_ulps": int(d.max()),
                     "outside_changed": int((value[~sel] != w[~sel]).sum())})
    report = {"model": a.model, "quantize": a.quantize, "group_size": a.group_size, "tensors": rows}
    if a.prompts:
        prompts = json.load(open(a.prompts))
        base, stem = rebuild(a.model, original)
        ref = json.load(open(os.path.join(ROOT, "examples", "references", f"{stem}.json")))
        ids = torch.tensor([p["ids"] for p in ref["prompts"]], dtype=torch.int64)
        want = torch.from_numpy(np.frombuffer(base64.b64decode(ref["clean"]["logits"]["b64"]), dtype="<f4").copy()).reshape(ref["clean"]["logits"]["shape"])
        with torch.no_grad():
            report["rebuild_max_abs_diff"] = float((base(ids) - want).abs().max())
        quant, _ = rebuild(a.model, mine)
        lo, lq = last_logits(base, prompts), last_logits(quant, prompts)
        answer = torch.tensor([p["answer"] for p in prompts])
        foil = torch.tensor([p["foil"] for p in prompts])
        r = torch.arange(len(prompts))
        po, pq = torch.log_softmax(lo, -1), torch.log_softmax(lq, -1)
        report["metrics"] = {
            "logit_diff": float((lq[r, answer] - lq[r, foil]).mean()),
            "accuracy": float((lq.argmax(-1) == answer).double().mean()),
            "kl": float((po.exp() * (po - pq)).sum(-1).mean()),
        }
        report["logits"] = lq.float().numpy().tolist()
    json.dump(report, open(a.out, "w"), indent=1)
    bad = [r for r in rows if r["max_ulps"] > 1 or r["outside_changed"]]
    print(f"{len(rows)} tensors compared; {sum(r['differ'] for r in rows)} entries differ (max {max([r['max_ulps'] for r in rows] or [0])} ulp)"
          + (f"; metrics {report['metrics']}" if "metrics" in report else ""))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
