#!/usr/bin/python3
"""Check `circuitlens prune` on a demo model in PyTorch: the pruning masks recomputed from the ONNX weights, the
pruned model run in PyTorch, its metric, accuracy and KL compared with ours.

    node dist/cli.js prune examples/induction.suite.yaml --circuit examples/induction-gpt2.circuit.json \\
        --strategy magnitude,outside-circuit,layer-waves --json > prune.json
    /usr/bin/python3 scripts/prune_check.py --prune prune.json --model examples/induction-gpt2.onnx \\
        --suite examples/induction.suite.yaml --out report.json

Run with Debian's interpreter (torch 1.13, onnx 1.12, PyYAML); CPU, deterministic, seconds.

Independent of the TypeScript side, except for one input: which entries the circuit's nodes own (the "slices" of
our JSON; weight-slices.ts is tested against the zoo elsewhere, test/engine/weight-slices.test.ts).
1. The prunable matrices are found here from the PyTorch module names: the rank-2 weights of blocks.N (attention
   q/k/v/output projections and MLP matrices); the ONNX initializers are mapped to the modules as
   scripts/gradient_references.py does (names kept by the export; torch.onnx's module scopes for the transposed
   Linear weights). Their ONNX names must be the ones our JSON lists as prunable.
2. For each point of each curve, the mask: the candidate entries in ONNX initializer order, row-major; k =
   round(s * N) of them (N: every prunable entry), the first k of a stable sort by |w| (magnitude,
   outside-circuit: the circuit's entries are not candidates) or by (last layer first, |w|) (layer-waves).
3. The pruned weights are loaded into scripts/train_demo_models.py's module and the suite's task prompts (not
   tagged control; templates expanded here) run one by one: mean logit difference (answer − foil at the last
   position), accuracy (argmax = answer), mean KL(unpruned ‖ pruned) of the last position's distribution.
The circuit's faithfulness (it needs the suite's mean ablation) is not re-computed here.

Writes a report (JSON) and exits 1 when a number differs beyond float32 tolerance.
"""

import argparse
import itertools
import json
import os
import re
import sys

import numpy as np
import onnx
import torch
import yaml
from onnx import numpy_helper

torch.set_num_threads(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import train_demo_models as demo  # noqa: E402



def onnx_to_param(m, params):
    """ONNX initializer name -> (PyTorch parameter name, transposed), and each initializer's reading nodes. A name the
    export kept maps to itself; a weight read by one MatMul as its second input maps to the nn.Linear of the
    MatMul's module scope (`/blocks.0/attn/q/MatMul` -> blocks.0.attn.q.weight) when that parameter has the
    initializer's shape transposed (torch.onnx's copy of a Linear weight)."""
    readers = {}
    for n in m.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    out = {}
    for t in m.graph.initializer:
        if t.name in params:
            out[t.name] = (t.name, False)
            continue
        users = readers.get(t.name, [])
        if len(users) == 1 and users[0].op_type == "MatMul" and users[0].input[1] == t.name:
            key = users[0].name.strip("/").rsplit("/", 1)[0].replace("/", ".") + ".weight"
            if key in params and tuple(params[key].shape) == tuple(reversed(t.dims)):
                out[t.name] = (key, True)
    return out, readers


def module_names(m, params):
    """onnx_to_param for the demo models, whose tied unembedding is a MatMul at the top scope (`/MatMul`) reading a
    transposed copy of embed.weight."""
    out, readers = onnx_to_param(m, params)
    for t in m.graph.initializer:
        users = readers.get(t.name, [])
        if t.name not in out and len(users) == 1 and users[0].op_type == "MatMul" and users[0].name == "/MatMul" and users[0].input[1] == t.name:
            out[t.name] = ("embed.weight", True)
    return out


def block_matrices(m, names, inits, block):
    """(ONNX name, weights, layer) of the float32 rank-2 `.weight` parameters whose PyTorch name `block` matches
    (group 1: the layer), in ONNX initializer order."""
    out = []
    for t in m.graph.initializer:
        if t.name not in names:
            continue
        pname, _ = names[t.name]
        mt = block.match(pname)
        w = inits[t.name]
        if mt and pname.endswith(".weight") and w.ndim == 2 and w.dtype == np.float32:
            out.append((t.name, w, int(mt.group(1))))
    return out


def expand(suite):
    """[(text, answer, foil)] of the task prompts (not tagged control)."""
    def fill(s, b):
        return re.sub(r"\{(\w+)\}", lambda m: str(b[m.group(1)]), s)

    out = []
    for t in suite.get("templates", []):
        if "control" in t.get("tags", []):
            continue
        names = list(t["variables"])
        for combo in itertools.product(*(t["variables"][k] for k in names)):
            b = dict(zip(names, combo))
            out.append((fill(t["pattern"], b), fill(t["answer"], b), fill(t["foil"], b)))
    for p in suite.get("prompts", []):
        if "control" not in p.get("tags", []):
            out.append((p["text"], p["answer"], p["foil"]))
    return out


def mask_for(tensors, owned, strategy, sparsity, total):
    """Per tensor, a boolean array of the entries set to zero."""
    keys, layers, where = [], [], []
    for ti, (name, w, layer) in enumerate(tensors):
        flat = np.abs(w.reshape(-1))
        cand = ~owned[name].reshape(-1) if strategy == "outside-circuit" else np.ones(flat.size, dtype=bool)
        idx = np.nonzero(cand)[0]
        keys.append(flat[idx])
        layers.append(np.full(idx.size, layer))
        where.append(np.stack([np.full(idx.size, ti), idx], axis=1))
    keys, layers, where = np.concatenate(keys), np.concatenate(layers), np.concatenate(where)
    k = min(int(np.floor(sparsity * total + 0.5)), keys.size)
    if strategy == "layer-waves":
        order = np.lexsort((keys, -layers))  # last layer first, then |w|; lexsort is stable
    else:
        order = np.argsort(keys, kind="stable")
    masks = [np.zeros(w.size, dtype=bool) for _, w, _ in tensors]
    for ti, i in where[order[:k]]:
        masks[ti][i] = True
    return [m.reshape(w.shape) for m, (_, w, _) in zip(masks, tensors)], k


@torch.no_grad()
def evaluate(model, prompts):
    rows = []
    for text, answer, foil in prompts:
        ids = demo.encode(text)
        a, f = demo.encode(answer), demo.encode(foil)
        assert 0 not in ids and len(a) == 1 and len(f) == 1, text
        last = model(torch.tensor([ids], dtype=torch.int64))[0, -1]
        rows.append((last, a[0], f[0]))
    return rows


def measures(rows, base_rows):
    ld, acc, kl = [], [], []
    for (last, a, f), (base, _, _) in zip(rows, base_rows):
        ld.append((last[a] - last[f]).item())
        acc.append(float(last.argmax().item() == a))
        p = torch.log_softmax(base.double(), -1)
        q = torch.log_softmax(last.double(), -1)
        kl.append(float((p.exp() * (p - q)).sum().item()))
    return {"metric": float(np.mean(ld)), "accuracy": float(np.mean(acc)), "kl": float(np.mean(kl))}


def close(a, b, rel=2e-4, abs_=2e-4):
    return abs(a - b) <= abs_ + rel * max(abs(a), abs(b))


def point_mismatches(where, k, reached, got, p):
    """What differs between a point measured here (`got`: metric, accuracy, kl) and ours (`p`)."""
    bad = []
    if k != p["pruned"]:
        bad.append(f"{where}: {k} entries pruned here, {p['pruned']} in ours")
    if abs(reached - p["reached"]) > 1e-6:
        bad.append(f"{where}: sparsity reached {reached} here, {p['reached']} in ours")
    for key in ("metric", "accuracy", "kl"):
        if not close(got[key], p[key]):
            bad.append(f"{where}: {key} torch {got[key]} ours {p[key]}")
    return bad


def finish(report, out, bad):
    """Writes the report, prints the mismatches, exits 1 if there are any."""
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    for b in bad:
        print("MISMATCH " + b, file=sys.stderr)
    sys.exit(1 if bad else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prune", required=True, help="circuitlens prune --json output")
    ap.add_argument("--model", required=True)
    ap.add_argument("--suite", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    ours = json.load(open(args.prune))
    name = os.path.basename(args.model)[: -len(".onnx")]
    cfg = demo.CONFIGS[name]
    model = demo.build(cfg)
    model.eval()
    params = dict(model.named_parameters())
    m = onnx.load(args.model)
    names = module_names(m, params)
    inits = {t.name: numpy_helper.to_array(t).copy() for t in m.graph.initializer}

    # 1. The prunable matrices, in ONNX initializer order.
    tensors = block_matrices(m, names, inits, re.compile(r"^blocks\.(\d+)\."))
    listed = [t["name"] for t in ours["prunable"]["tensors"]]
    assert listed == [t[0] for t in tensors], f"prunable matrices differ: ours {listed}, here {[t[0] for t in tensors]}"
    total = sum(w.size for _, w, _ in tensors)
    assert total == ours["prunable"]["entries"], (total, ours["prunable"]["entries"])

    owned = {n: np.zeros(w.shape, dtype=bool) for n, w, _ in tensors}
    for s in (ours.get("circuit") or {}).get("slices", []):
        sl = [slice(None)] * owned[s["initializer"]].ndim
        sl[s["axis"]] = slice(s["start"], s["end"])
        owned[s["initializer"]][tuple(sl)] = True

    def load(weights):
        with torch.no_grad():
            for oname, (pname, transposed) in names.items():
                value = torch.from_numpy(weights[oname])
                params[pname].copy_(value.t() if transposed else value)

    with open(args.suite) as f:
        prompts = expand(yaml.safe_load(f))
    assert len(prompts) == ours["prompts"], f"{len(prompts)} task prompts here, {ours['prompts']} in ours"
    load(inits)
    base_rows = evaluate(model, prompts)
    base = measures(base_rows, base_rows)
    report = {"model": os.path.relpath(args.model, ROOT), "prompts": len(prompts), "prunable_entries": total, "baseline": base, "curves": [], "mismatches": []}
    bad = report["mismatches"]
    for key in ("metric", "accuracy"):
        if not close(base[key], ours["baseline"][key]):
            bad.append(f"baseline {key}: torch {base[key]} ours {ours['baseline'][key]}")

    # 2. and 3. Each point.
    for curve in ours["curves"]:
        strategy = curve["strategy"]
        pts = []
        for p in curve["points"]:
            masks, k = mask_for(tensors, owned, strategy, p["sparsity"], total)
            weights = dict(inits)
            zeros = 0
            for (n, w, _), mk in zip(tensors, masks):
                pruned = np.where(mk, np.float32(0), w)
                if strategy == "outside-circuit":
                    assert not (mk & owned[n]).any(), f"{n}: a circuit entry was pruned"
                weights[n] = pruned
                zeros += int((pruned == 0).sum())
            load(weights)
            got = measures(evaluate(model, prompts), base_rows)
            got.update({"sparsity": p["sparsity"], "pruned": k, "reached": zeros / total})
            pts.append(got)
            where = f"{strategy} at {p['sparsity']}"
            bad += point_mismatches(where, k, zeros / total, got, p)
            print(f"{where:>28}: reached {zeros / total:.4f}  metric {got['metric']:9.4f} (ours {p['metric']:9.4f})  accuracy {got['accuracy']:.4f} (ours {p['accuracy']:.4f})  kl {got['kl']:.6f} (ours {p['kl']:.6f})")
        report["curves"].append({"strategy": strategy, "points": pts})
    load(inits)
    finish(report, args.out, bad)


if __name__ == "__main__":
    main()
