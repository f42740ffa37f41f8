#!/usr/bin/python3
"""PyTorch references for CircuitLens' pair ablations (core/analysis/redundancy/redundancy.ts).

Run with Debian's interpreter (torch 1.13, onnx 1.12, PyYAML):

    /usr/bin/python3 scripts/pair_references.py [NAME ...]

For each model below, the PyTorch module is rebuilt (scripts/train_demo_models.py for the demo models, the zoo's
family modules for zoo entries) and its weights are loaded from the committed .onnx file's initializers, so the
numbers describe exactly that file; the forward pass is checked against the model's forward reference
(examples/references/<model>.json or test/fixtures/zoo/<name>.json) before anything is written.

The suite is read independently of CircuitLens: templates expanded in order (the product of the variables in
the order written), text split on whitespace into the WordLevel vocabulary of tokenizer.json, ids taken as
written. Task prompts are those not tagged `control`. Mean ablation, as DESIGN §4: a head's slice of
blocks.L.attn.hook_z (an MLP's blocks.L.hook_mlp_out) replaced at every position by its mean over every suite
prompt and position of the clean run, through forward hooks that return the patched output.

Every head and MLP is ablated alone, every pair of them together, and all of them at once; per set, the task
prompts' means of: logit_diff (answer − foil at the last position), prob (softmax of the answer), accuracy
(argmax = answer) and kl (KL(clean ‖ ablated) of the next-token distribution). Writes <reference>.pairs.json
beside the model's forward reference: {"model", "suite", "ablation", "prompts", "clean", "singles": {id: m},
"pairs": [{"a", "b", "metrics"}], "all": m}.
"""

import base64
import importlib.util
import itertools
import json
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
import yaml
from onnx import numpy_helper

torch.set_num_threads(2)
torch.manual_seed(0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
ZOO = os.path.join(ROOT, "test", "fixtures", "zoo")
FORWARD_TOL = 1e-4

MODELS = {
    # name: (kind, model file, suite, forward reference, output)
    "induction-gpt2": ("demo", "examples/induction-gpt2.onnx", "examples/induction.suite.yaml", "examples/references/induction-gpt2.json"),
    "induction-llama": ("demo", "examples/induction-llama.onnx", "examples/induction.suite.yaml", "examples/references/induction-llama.json"),
    "gpt2": ("zoo", "test/fixtures/zoo/gpt2/model.onnx", "test/fixtures/zoo/gpt2/induction.suite.yaml", "test/fixtures/zoo/gpt2.json"),
    "llama": ("zoo", "test/fixtures/zoo/llama/model.onnx", "test/fixtures/zoo/llama/induction.suite.yaml", "test/fixtures/zoo/llama.json"),
    "gpt_neox": ("zoo", "test/fixtures/zoo/gpt_neox.onnx", "test/fixtures/zoo/gpt_neox/induction.suite.yaml", "test/fixtures/zoo/gpt_neox.json"),
}


def load_module(name, rel):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def onnx_state(path, model):
    """State dict of `model` from the ONNX initializers: by name where the export kept it, else by the MatMul that
    consumes it (a Linear's weight, transposed: the node /a/b/c/MatMul belongs to module a.b.c)."""
    m = onnx.load(path)
    expected = model.state_dict()
    state = {}
    for t in m.graph.initializer:
        value = torch.from_numpy(numpy_helper.to_array(t).copy())
        if t.name in expected:
            state[t.name] = value
            continue
        users = [n for n in m.graph.node if t.name in n.input]
        if len(users) != 1 or users[0].op_type != "MatMul" or users[0].input[1] != t.name:
            continue  # constants of the graph (shapes, masks), not parameters
        key = users[0].name.strip("/").rsplit("/", 1)[0].replace("/", ".") + ".weight"
        if key in expected and tuple(expected[key].shape) == tuple(value.t().shape):
            state[key] = value.t().contiguous()
    params = {n for n, _ in model.named_parameters()}
    missing = sorted(params - set(state))
    if missing:
        raise SystemExit(f"{path}: no initializer for {missing}")
    return state


def build(name, kind, model_path):
    if kind == "demo":
        tdm = load_module("train_demo_models", "scripts/train_demo_models.py")
        gr = load_module("gradient_references", "scripts/gradient_references.py")
        model = tdm.build(tdm.CONFIGS[name])
        model.load_state_dict(gr.weights_from_onnx(model_path, model))
        modules = dict(model.named_modules())
        hooks = {k: v for k, v in modules.items() if k.endswith("hook_z") or k.endswith("hook_mlp_out")}
        return model.eval(), hooks, tdm.CONFIGS[name]
    sys.path.insert(0, os.path.join(ROOT, "scripts", "zoo"))
    mz = load_module("make_zoo", "scripts/zoo/make_zoo.py")
    entry = next(e for e in mz.load_entries() if e.name == name)
    model = entry.build()
    model.load_state_dict(onnx_state(model_path, model), strict=False)
    return model.eval(), model.hook_points(), entry.cfg


def read_suite(path, vocab):
    with open(path) as f:
        s = yaml.safe_load(f)
    raw = []
    for p in s.get("prompts") or []:
        raw.append(dict(p, tags=p.get("tags") or []))
    for t in s.get("templates") or []:
        names = list(t["variables"])
        for binding in itertools.product(*(t["variables"][k] for k in names)):
            fill = lambda x: x.format(**dict(zip(names, binding)))  # noqa: E731
            raw.append({"text": fill(t["pattern"]), "answer": fill(t["answer"]), "foil": fill(t["foil"]), "tags": t.get("tags") or []})

    def tok(text):
        return [vocab[w] for w in text.split()]

    def one(x):
        if isinstance(x, int):
            return x
        ids = tok(x)
        assert len(ids) == 1, f"{x!r} is {len(ids)} tokens"
        return ids[0]

    prompts = [{"ids": p["ids"] if "ids" in p else tok(p["text"]), "answer": one(p["answer"]), "foil": one(p["foil"]),
                "control": "control" in p["tags"]} for p in raw]
    return s, prompts


def by_length(prompts):
    groups = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p["ids"]), []).append(i)
    return groups.values()


def run(model, hooks, prompts, patches=None, capture=False):
    """Last-position logits [N, V] of every prompt; with capture, each hook's clean output per prompt."""
    out, got = [None] * len(prompts), {}
    for idx in by_length(prompts):
        ids = torch.tensor([prompts[i]["ids"] for i in idx], dtype=torch.int64)
        handles, store = [], {}
        try:
            for name, fn in (patches or {}).items():
                handles.append(hooks[name].register_forward_hook(lambda m, i, o, fn=fn: fn(o)))
            if capture:
                for name, mod in hooks.items():
                    if not (name.endswith("attn.hook_z") or name.endswith("hook_mlp_out")):
                        continue
                    handles.append(mod.register_forward_hook(lambda m, i, o, name=name: store.__setitem__(name, o.detach().clone())))
            with torch.no_grad():
                logits = model(ids)
        finally:
            for h in handles:
                h.remove()
        for r, i in enumerate(idx):
            out[i] = logits[r, -1].double()
        for name, v in store.items():
            got.setdefault(name, []).append(v.reshape(-1, *v.shape[2:]))
    return torch.stack(out), {k: torch.cat(v).double().mean(0).float() for k, v in got.items()}


def patches_for(nodes, means):
    """Forward hooks that replace each node's output by its mean (heads: their slice of hook_z)."""
    by_hook = {}
    for n in nodes:
        if n.startswith("a"):
            layer, head = (int(x) for x in n[1:].split(".h"))
            by_hook.setdefault(f"blocks.{layer}.attn.hook_z", []).append(head)
        else:
            by_hook.setdefault(f"blocks.{int(n[1:])}.hook_mlp_out", []).append(None)
    patches = {}
    for name, heads in by_hook.items():
        mean = means[name]

        def fn(o, heads=heads, mean=mean):
            o = o.clone()
            for h in heads:
                if h is None:
                    o[:] = mean
                else:
                    o[:, :, h, :] = mean[h]
            return o
        patches[name] = fn
    return patches


def metrics(logits, clean, task):
    rows = [i for i, p in enumerate(task)]
    ans = torch.tensor([p["answer"] for p in task])
    foil = torch.tensor([p["foil"] for p in task])
    lp = F.log_softmax(logits, -1)
    clp = F.log_softmax(clean, -1)
    r = torch.arange(len(rows))
    return {
        "logit_diff": (logits[r, ans] - logits[r, foil]).mean().item(),
        "prob": lp[r, ans].exp().mean().item(),
        "accuracy": (logits.argmax(-1) == ans).double().mean().item(),
        "kl": (clp.exp() * (clp - lp)).sum(-1).mean().item(),
    }


def main(argv):
    names = argv or list(MODELS)
    for name in names:
        kind, model_rel, suite_rel, ref_rel = MODELS[name]
        model_path = os.path.join(ROOT, model_rel)
        model, hooks, cfg = build(name, kind, model_path)
        with open(os.path.join(ROOT, ref_rel)) as f:
            ref = json.load(f)
        ids = torch.tensor([p["ids"] for p in ref["prompts"]], dtype=torch.int64)
        with torch.no_grad():
            logits = model(ids)
        b64 = ref["clean"]["logits"]
        want = torch.from_numpy(np.frombuffer(base64.b64decode(b64["b64"]), dtype="<f4").copy()).reshape(b64["shape"])
        diff = (logits - want).abs().max().item()
        print(f"{name}: forward from the ONNX weights vs {ref_rel}: max abs diff {diff:.2e}")
        if not diff <= FORWARD_TOL:
            raise SystemExit(f"{name}: the rebuilt model does not reproduce the reference logits ({diff} > {FORWARD_TOL})")

        tok_path = os.path.join(os.path.dirname(model_path), "tokenizer.json")
        vocab = json.load(open(tok_path))["model"]["vocab"] if kind == "demo" else {}
        suite, prompts = read_suite(os.path.join(ROOT, suite_rel), vocab)
        assert suite.get("ablation", "mean") == "mean", "the references are for mean ablation"
        task = [p for p in prompts if not p["control"]]
        _, means = run(model, hooks, prompts, capture=True)
        clean, _ = run(model, hooks, task)
        L, H = cfg["n_layers"], cfg["n_heads"]
        nodes = [n for layer in range(L) for n in [f"a{layer}.h{h}" for h in range(H)] + [f"m{layer}"]]
        m = lambda ns: metrics(run(model, hooks, task, patches_for(ns, means))[0], clean, task)  # noqa: E731
        out = {
            "model": os.path.relpath(model_path, os.path.dirname(os.path.join(ROOT, ref_rel))),
            "suite": os.path.relpath(os.path.join(ROOT, suite_rel), os.path.dirname(os.path.join(ROOT, ref_rel))),
            "ablation": "mean", "prompts": len(task),
            "notes": "PyTorch (scripts/pair_references.py): mean ablation through forward hooks on hook_z / hook_mlp_out, "
                     "means over every suite prompt and position; metrics are means over the task prompts.",
            "clean": metrics(clean, clean, task),
            "singles": {n: m([n]) for n in nodes},
            "pairs": [{"a": a, "b": b, "metrics": m([a, b])} for a, b in itertools.combinations(nodes, 2)],
            "all": m(nodes),
        }
        path = os.path.join(ROOT, ref_rel[: -len(".json")] + ".pairs.json")
        with open(path, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        print(f"  {len(task)} task prompts, {len(out['pairs'])} pairs; wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
