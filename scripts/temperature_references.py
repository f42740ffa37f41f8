#!/usr/bin/python3
"""PyTorch references for CircuitLens' per-head softmax temperature (core/onnx/temperature.ts).

Run with Debian's interpreter (torch 1.13, onnx 1.12), CPU, deterministic:

    /usr/bin/python3 scripts/temperature_references.py

The temperature of head h in layer l divides that head's attention scores by tau just before the softmax:
pattern = softmax(scores / tau), where scores are what the model hands its softmax (after the 1/sqrt(d_head)
scaling and the causal mask; masked scores stay -inf or finfo.min, so masked keys keep weight 0). Here the models'
own forward runs with torch.softmax / F.softmax wrapped: the i-th softmax call of a forward is layer i's, and the
wrapper divides head h's slice of its input by tau ([B, H, T, T], or [B*H, T, T] when the heads are folded into
the batch axis, as OPT's bmm attention does). Nothing of the engine's graph rewrite is used.

Models: the demo models (examples/*.onnx, weights read from the .onnx as scripts/gradient_references.py does) and
two zoo families with random weights rebuilt from their seeds (scripts/zoo: opt, heads in the batch axis with an
additive mask clamped at finfo.min; qwen2, grouped-query attention with an additive mask), checked against the
committed references before use.

Writes examples/references/<demo>.temperature.json and test/fixtures/zoo/<name>.temperature.json:
{"model", "notes", "prompts": [{"ids"}], "cases": [{"temperatures": [{"head", "temperature"}],
 "patterns": {"blocks.L.attn.hook_pattern": tensor [B, H, T, T] for each layer L with a tempered head},
 "logits": tensor [B, V] (last position)}]}, tensors as {"shape", "b64"} (little-endian float32).
"""

import base64
import contextlib
import importlib.util
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
ZOO_OUT = os.path.join(ROOT, "test", "fixtures", "zoo")

# (heads and their temperatures) per case: one head per case at every tau the view offers but 1, and two heads at once.
CASES = [
    [("a0.h1", 0.5)],
    [("a1.h2", 2.0)],
    [("a0.h3", 1.5)],
    [("a1.h0", 0.75)],
    [("a0.h0", 2.0), ("a1.h3", 0.5)],
]


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def encode(t):
    t = t.detach().contiguous().to(torch.float32)
    return {"shape": list(t.shape), "b64": base64.b64encode(t.numpy().astype("<f4").tobytes()).decode("ascii")}


def decode(t):
    return torch.from_numpy(np.frombuffer(base64.b64decode(t["b64"]), dtype="<f4").copy()).reshape(t["shape"])


@contextlib.contextmanager
def tempered_softmax(n_heads, temps):
    """Within the block, the i-th softmax call divides head h's scores by tau for every (i, h) -> tau in temps."""
    calls = {"n": 0}
    originals = (torch.softmax, F.softmax)

    def wrapped(x, *args, **kwargs):
        layer = calls["n"]
        calls["n"] += 1
        heads = {h: tau for (l, h), tau in temps.items() if l == layer}
        if heads:
            x = x.clone()
            view = x if x.dim() == 4 else x.view(-1, n_heads, *x.shape[1:])
            for h, tau in heads.items():
                view[:, h] = view[:, h] / tau
        return originals[1](x, *args, **kwargs)

    torch.softmax = wrapped
    F.softmax = wrapped
    try:
        yield calls
    finally:
        torch.softmax, F.softmax = originals


def parse_head(s):
    layer, head = s[1:].split(".h")
    return int(layer), int(head)


def run(model, hook_modules, ids, n_heads, n_layers, case):
    temps = {parse_head(h): tau for h, tau in case}
    store = {}
    handles = [m.register_forward_hook(lambda _m, _i, o, name=name: store.__setitem__(name, o.detach().clone()))
               for name, m in hook_modules.items()]
    try:
        with torch.no_grad(), tempered_softmax(n_heads, temps) as calls:
            logits = model(ids)
    finally:
        for h in handles:
            h.remove()
    if calls["n"] != n_layers:
        raise SystemExit(f"expected {n_layers} softmax calls per forward, saw {calls['n']}")
    layers = sorted({l for l, _ in temps})
    return {
        "temperatures": [{"head": h, "temperature": tau} for h, tau in case],
        "patterns": {f"blocks.{l}.attn.hook_pattern": encode(store[f"blocks.{l}.attn.hook_pattern"]) for l in layers},
        "logits": encode(logits[:, -1, :]),
    }


def write(path, model_file, prompts, cases):
    out = {"model": model_file, "notes": __doc__.strip().split("\n\n")[2], "prompts": [{"ids": p} for p in prompts], "cases": cases}
    with open(path, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print(f"  wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path) // 1024} KiB)")


def check_clean(name, model, ids, ref_logits):
    with torch.no_grad():
        diff = (model(ids) - ref_logits).abs().max().item()
    print(f"{name}: clean logits vs the committed reference: max abs diff {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit(f"{name}: the rebuilt model does not reproduce the reference")


def main():
    tdm = load("train_demo_models", "train_demo_models.py")
    grf = load("gradient_references", "gradient_references.py")
    for name, cfg in tdm.CONFIGS.items():
        with open(os.path.join(EXAMPLES, "references", f"{name}.json")) as f:
            ref = json.load(f)
        model = tdm.build(cfg)
        model.load_state_dict(grf.weights_from_onnx(os.path.join(EXAMPLES, f"{name}.onnx"), model))
        model.eval()
        prompts = [p["ids"] for p in ref["prompts"][:2]]
        ids = torch.tensor(prompts, dtype=torch.int64)
        check_clean(name, model, ids, decode(ref["clean"]["logits"])[:2])
        modules = dict(model.named_modules())
        hooks = {f"blocks.{l}.attn.hook_pattern": modules[f"blocks.{l}.attn.hook_pattern"] for l in range(cfg["n_layers"])}
        cases = [run(model, hooks, ids, cfg["n_heads"], cfg["n_layers"], c) for c in CASES]
        write(os.path.join(EXAMPLES, "references", f"{name}.temperature.json"), f"{name}.onnx", prompts, cases)

    sys.path.insert(0, os.path.join(ROOT, "scripts", "zoo"))
    import ln_families  # noqa: E402
    import rms_families  # noqa: E402
    entries = {e.name: e for e in ln_families.ENTRIES + rms_families.ENTRIES}
    for name in ("opt", "qwen2"):
        e = entries[name]
        model = e.build()
        with open(os.path.join(ZOO_OUT, f"{name}.json")) as f:
            ref = json.load(f)
        prompts = [p["ids"] for p in ref["prompts"][:2]]
        ids = torch.tensor(prompts, dtype=torch.int64)
        check_clean(f"zoo/{name}", model, ids, decode(ref["clean"]["logits"])[:2])
        hp = model.hook_points()
        cfg = e.cfg
        hooks = {f"blocks.{l}.attn.hook_pattern": hp[f"blocks.{l}.attn.hook_pattern"] for l in range(cfg["n_layers"])}
        cases = [run(model, hooks, ids, cfg["n_heads"], cfg["n_layers"], c) for c in CASES]
        write(os.path.join(ZOO_OUT, f"{name}.temperature.json"), f"{name}.onnx", prompts, cases)


if __name__ == "__main__":
    sys.exit(main())
