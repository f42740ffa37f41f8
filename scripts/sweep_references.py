#!/usr/bin/python3
"""PyTorch references for `circuitlens sweep` (core/analysis/sweep/sweep.ts) on the demo models.

Run with Debian's interpreter (torch 1.13, onnx 1.12, PyYAML):

    /usr/bin/python3 scripts/sweep_references.py

Independent of the TypeScript side: it reads examples/induction-sweep.suite.yaml with PyYAML, expands its templates
itself (the cartesian product of each template's variables and of the sweep values; {repeat(n, 'TEXT')} writes
TEXT n times, {VAR} its value), tokenizes with the demo models' word-level vocabulary (scripts/train_demo_models.py),
and runs the PyTorch modules of train_demo_models.py with the weights loaded from the committed .onnx files
(scripts/gradient_references.py weights_from_onnx). For every value of n it writes the mean logit difference
(answer − foil at the last position) and the accuracy (argmax = answer), unablated and with one head
zero-ablated (its slice of hook_z set to 0), and n*: where accuracy falls below 0.5, interpolated linearly.

Writes examples/references/induction-sweep.json.
"""

import importlib.util
import itertools
import json
import os
import re

import torch
import yaml

torch.set_num_threads(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
SUITE = os.path.join(EXAMPLES, "induction-sweep.suite.yaml")
OUT = os.path.join(EXAMPLES, "references", "induction-sweep.json")
ABLATED_HEAD = (0, 1)  # a0.h1, the gpt2 demo model's previous-token head
LEVEL = 0.5


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fill(s, binding):
    def repeat(m):
        return m.group(3 if m.group(2) is None else 2) * int(binding[m.group(1)])

    s = re.sub(r"""\{repeat\((\w+),\s*(?:"([^"]*)"|'([^']*)')\)\}""", repeat, s)
    return re.sub(r"\{(\w+)\}", lambda m: str(binding[m.group(1)]), s)


def expand(suite):
    """[(n, text, answer, foil)] for every template prompt (each template here uses n)."""
    (var, values), = suite["sweep"].items()
    out = []
    for t in suite["templates"]:
        names = list(t["variables"])
        for n in values:
            for combo in itertools.product(*(t["variables"][k] for k in names)):
                b = dict(zip(names, combo), **{var: n})
                out.append((n, fill(t["pattern"], b), fill(t["answer"], b), fill(t["foil"], b)))
    return var, out


def points(rows, values):
    pts = []
    for n in values:
        sel = [r for r in rows if r[0] == n]
        pts.append({"value": n, "prompts": len(sel), "logit_diff": sum(r[1] for r in sel) / len(sel), "accuracy": sum(r[2] for r in sel) / len(sel)})
    return pts


def critical(pts, level):
    for a, b in zip(pts, pts[1:]):
        if a["accuracy"] >= level > b["accuracy"]:
            return a["value"] + (level - a["accuracy"]) * (b["value"] - a["value"]) / (b["accuracy"] - a["accuracy"])
    return None


@torch.no_grad()
def run(model, tdm, prompts, head=None):
    handle = None
    if head is not None:
        layer, h = head

        def zero(_m, _i, z):
            z = z.clone()
            z[:, :, h, :] = 0
            return z

        handle = model.blocks[layer].attn.hook_z.register_forward_hook(zero)
    rows = []
    try:
        for n, text, answer, foil in prompts:
            ids = tdm.encode(text)
            assert 0 not in ids, f"out-of-vocabulary word in {text!r}"
            a, f = tdm.encode(answer), tdm.encode(foil)
            assert len(a) == 1 and len(f) == 1
            last = model(torch.tensor([ids], dtype=torch.int64))[0, -1]
            rows.append((n, (last[a[0]] - last[f[0]]).item(), int(last.argmax().item() == a[0])))
    finally:
        if handle:
            handle.remove()
    return rows


def main():
    tdm = load("train_demo_models", "train_demo_models.py")
    gref = load("gradient_references", "gradient_references.py")
    with open(SUITE) as f:
        suite = yaml.safe_load(f)
    var, prompts = expand(suite)
    values = suite["sweep"][var]
    out = {
        "suite": os.path.relpath(SUITE, ROOT),
        "variable": var,
        "level": LEVEL,
        "notes": "PyTorch (weights from the committed .onnx files), suite expanded by scripts/sweep_references.py; "
        "per value of the variable: mean logit_diff and accuracy at the last position; n* where accuracy falls below the level.",
        "models": {},
    }
    for name, cfg in tdm.CONFIGS.items():
        model = tdm.build(cfg)
        model.load_state_dict(gref.weights_from_onnx(os.path.join(EXAMPLES, f"{name}.onnx"), model))
        model.eval()
        clean = points(run(model, tdm, prompts), values)
        ablated = points(run(model, tdm, prompts, ABLATED_HEAD), values)
        node = f"a{ABLATED_HEAD[0]}.h{ABLATED_HEAD[1]}"
        out["models"][name] = {
            "points": clean,
            "critical": critical(clean, LEVEL),
            "ablated": {"nodes": [node], "kind": "zero", "points": ablated, "critical": critical(ablated, LEVEL)},
        }
        print(f"{name}: n* = {out['models'][name]['critical']}; with {node} zero-ablated: {out['models'][name]['ablated']['critical']}")
        for p, q in zip(clean, ablated):
            print(f"  n={p['value']:>3}  logit_diff {p['logit_diff']:8.3f}  accuracy {p['accuracy']:.3f}   ablated: {q['logit_diff']:8.3f} {q['accuracy']:.3f}")
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
