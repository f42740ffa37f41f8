#!/usr/bin/python3
"""Check `circuitlens prune` on a zoo model (test/fixtures/zoo) in PyTorch: the pruning masks recomputed from the
ONNX initializers and compared entry for entry with the model `prune --out` wrote, and the pruned model run in the
zoo's own PyTorch module (scripts/zoo/, the classes the zoo was exported from), its metric, accuracy and KL
compared with ours.

    node dist/cli.js prune test/fixtures/zoo/llama/induction.suite.yaml --model test/fixtures/zoo/llama/model.onnx \\
        --circuit C.json --strategy layer-waves --sparsity 0.7 --out pruned.onnx --json > run.json
    /usr/bin/python3 scripts/prune_zoo_check.py --entry llama --model test/fixtures/zoo/llama/model.onnx \\
        --suite test/fixtures/zoo/llama/induction.suite.yaml --run run.json:pruned.onnx [--run curves.json ...] \\
        --out report.json

Run with Debian's interpreter (torch 1.13, onnx 1.12, PyYAML); CPU, deterministic, seconds.

Independent of the TypeScript side, except for one input: which entries the circuit's nodes own (the "slices" of
our JSON, as scripts/prune_check.py; weight-slices.ts is tested against the zoo in test/engine/weight-slices.test.ts).
1. The model: the zoo entry's PyTorch module (scripts/zoo/make_zoo.py's entries), its parameters loaded from the
   ONNX initializers (scripts/pair_references.py's build: by name where the export kept it, else by the module
   scope of the one MatMul reading it, transposed), checked by the unpruned model's logits against the zoo's
   forward reference (<entry>.json, <= 1e-4).
2. The prunable matrices, found here from the PyTorch parameter names: the rank-2 parameters ending in ".weight"
   of a block (`<prefix>.layers.N.` / `transformer.h.N.`: attention and MLP projections, fused QKV included);
   not the embeddings, the unembedding, or the rotary tables (buffers, not parameters). The layer of each is the
   N of its parameter name. Each must be read by a MatMul or Gemm as its B input. In ONNX initializer order, their
   names must be the ones our JSON lists as prunable, with the same layers and total.
3. For each point: the mask as scripts/prune_check.py computes it (k = round(s * N) of the candidate entries, in
   initializer order and row-major, the first k of a stable sort by |w| (magnitude, outside-circuit: the circuit's
   entries are not candidates) or by (last layer first, |w|) (layer-waves)). With a pruned file (RUN.json:OUT.onnx),
   every initializer of that file is compared bit for bit with the original, the masked entries set to zero, and
   the metrics are computed from the file's own weights loaded into the module; without one, from the original
   weights with the mask applied here.
4. The suite's task prompts (not tagged control) run one by one: mean logit difference (answer - foil at the last
   position), accuracy (argmax = answer), mean KL(unpruned || pruned) of the last position's distribution.

Writes a report (JSON) and exits 1 when anything differs (masks: exactly; numbers: float32 tolerance).
"""

import argparse
import base64
import json
import os
import re
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import pair_references as pr  # noqa: E402
from prune_check import block_matrices, close, finish, mask_for, onnx_to_param, point_mismatches  # noqa: E402

torch.set_num_threads(2)
BLOCK = re.compile(r"^(?:[\w.]*\.)?(?:layers|h)\.(\d+)\.")


def last_logits(model, prompts):
    rows = []
    with torch.no_grad():
        for p in prompts:
            rows.append(model(torch.tensor([p["ids"]], dtype=torch.int64))[0, -1].double())
    return rows


def measures(rows, base_rows, prompts):
    ld, acc, kl = [], [], []
    for last, base, p in zip(rows, base_rows, prompts):
        ld.append((last[p["answer"]] - last[p["foil"]]).item())
        acc.append(float(last.argmax().item() == p["answer"]))
        lp, lq = torch.log_softmax(base, -1), torch.log_softmax(last, -1)
        kl.append(float((lp.exp() * (lp - lq)).sum().item()))
    return {"metric": float(np.mean(ld)), "accuracy": float(np.mean(acc)), "kl": float(np.mean(kl))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entry", required=True, help="the zoo entry (test/fixtures/zoo/manifest.json), e.g. llama")
    ap.add_argument("--model", required=True)
    ap.add_argument("--suite", required=True)
    ap.add_argument("--run", action="append", required=True, help="circuitlens prune --json output[:the --out model]")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    manifest = json.load(open(os.path.join(pr.ZOO, "manifest.json")))
    row = next(r for r in manifest["entries"] if r["name"] == args.entry)
    sys.path.insert(0, os.path.join(ROOT, "scripts", "zoo"))
    entry = next(e for e in pr.load_module("make_zoo", "scripts/zoo/make_zoo.py").load_entries() if e.name == args.entry)
    model, _, _ = pr.build(entry.base or entry.name, "zoo", args.model)  # a variant (external data) has its base's module
    params = dict(model.named_parameters())

    # 1. The module reproduces the zoo's forward reference from this file's weights.
    ref = json.load(open(os.path.join(pr.ZOO, row["reference"])))
    with torch.no_grad():
        logits = model(torch.tensor([p["ids"] for p in ref["prompts"]], dtype=torch.int64))
    want = torch.from_numpy(np.frombuffer(base64.b64decode(ref["clean"]["logits"]["b64"]), dtype="<f4").copy())
    forward_diff = (logits.reshape(-1) - want).abs().max().item()
    assert forward_diff <= pr.FORWARD_TOL, f"the rebuilt module is not the file's model ({forward_diff})"

    # 2. The prunable matrices, in ONNX initializer order, from the parameter names.
    m = onnx.load(args.model)
    names, readers = onnx_to_param(m, params)
    inits = {t.name: numpy_helper.to_array(t).copy() for t in m.graph.initializer}
    tensors = block_matrices(m, names, inits, BLOCK)
    for n, _, _ in tensors:
        users = readers.get(n, [])
        assert users and all(u.op_type in ("MatMul", "Gemm") and u.input[1] == n for u in users), f"{n} ({names[n][0]}) is not a MatMul/Gemm weight"
    blocks = {p for p in params if BLOCK.match(p) and p.endswith(".weight") and params[p].dim() == 2}
    assert blocks == {names[n][0] for n, _, _ in tensors}, f"block matrices without an initializer: {blocks - {names[n][0] for n, _, _ in tensors}}"
    total = sum(w.size for _, w, _ in tensors)
    here = [{"name": n, "layer": layer, "param": names[n][0]} for n, _, layer in tensors]

    _, prompts = pr.read_suite(args.suite, {})
    task = [p for p in prompts if not p["control"]]
    base_rows = last_logits(model, task)
    base = measures(base_rows, base_rows, task)

    def load(weights):
        with torch.no_grad():
            for oname, (pname, transposed) in names.items():
                value = torch.from_numpy(np.ascontiguousarray(weights[oname]))
                params[pname].copy_(value.t() if transposed else value)

    report = {"entry": args.entry, "model": os.path.relpath(args.model, ROOT), "forward_diff": forward_diff,
              "prompts": len(task), "prunable": here, "prunable_entries": total, "baseline": base, "runs": [], "mismatches": []}
    bad = report["mismatches"]
    for spec in args.run:
        json_path, _, pruned_path = spec.partition(":")
        ours = json.load(open(json_path))
        listed = [(t["name"], t.get("layer")) for t in ours["prunable"]["tensors"]]
        if listed != [(t["name"], t["layer"]) for t in here]:
            bad.append(f"{json_path}: prunable matrices differ: ours {listed}, here {[(t['name'], t['layer']) for t in here]}")
            continue
        if total != ours["prunable"]["entries"]:
            bad.append(f"{json_path}: {ours['prunable']['entries']} prunable entries in ours, {total} here")
        if len(task) != ours["prompts"]:
            bad.append(f"{json_path}: {ours['prompts']} task prompts in ours, {len(task)} here")
        for key in ("metric", "accuracy"):
            if not close(base[key], ours["baseline"][key]):
                bad.append(f"baseline {key}: torch {base[key]} ours {ours['baseline'][key]}")
        owned = {n: np.zeros(w.shape, dtype=bool) for n, w, _ in tensors}
        for s in (ours.get("circuit") or {}).get("slices", []):
            sl = [slice(None)] * owned[s["initializer"]].ndim
            sl[s["axis"]] = slice(s["start"], s["end"])
            owned[s["initializer"]][tuple(sl)] = True
        pruned_file = None
        if pruned_path:
            assert ours.get("out") and len(ours["curves"]) == 1 and len(ours["curves"][0]["points"]) == 1, f"{json_path}: not one --out run"
            pm = onnx.load(pruned_path)
            pruned_file = {t.name: numpy_helper.to_array(t).copy() for t in pm.graph.initializer}
            if set(pruned_file) != set(inits):
                bad.append(f"{pruned_path}: initializers differ from the original's: {sorted(set(pruned_file) ^ set(inits))[:8]}")
                continue
        for curve in ours["curves"]:
            strategy = curve["strategy"]
            for p in curve["points"]:
                where = f"{args.entry} {strategy} at {p['sparsity']}"
                masks, k = mask_for(tensors, owned, strategy, p["sparsity"], total)
                weights = dict(inits)
                by_layer = {}
                for (n, w, layer), mk in zip(tensors, masks):
                    if strategy == "outside-circuit" and (mk & owned[n]).any():
                        bad.append(f"{where}: {n}: a circuit entry was pruned here")
                    weights[n] = np.where(mk, np.float32(0), w)
                    by_layer.setdefault(layer, [0, 0])
                    by_layer[layer][0] += int((weights[n] == 0).sum())
                    by_layer[layer][1] += mk.size
                checked = None
                if pruned_file is not None:
                    checked = 0
                    for n, want_w in weights.items():
                        got = pruned_file[n]
                        if got.shape != want_w.shape or got.dtype != want_w.dtype or got.tobytes() != want_w.tobytes():
                            diff = int((got != want_w).sum()) if got.shape == want_w.shape else -1
                            bad.append(f"{where}: {n} in {os.path.basename(pruned_path)}: {diff} entries differ from the mask recomputed here")
                        checked += got.size
                    load(pruned_file)
                else:
                    load(weights)
                got = measures(last_logits(model, task), base_rows, task)
                zeros = sum(int((weights[n] == 0).sum()) for n, _, _ in tensors)
                got.update({"strategy": strategy, "sparsity": p["sparsity"], "pruned": k, "reached": zeros / total,
                            "byLayer": {  # zeros / entries per layer, as ours
                                str(layer): a / b for layer, (a, b) in sorted(by_layer.items())},
                            "file": os.path.basename(pruned_path) if pruned_path else None, "file_entries_compared": checked})
                report["runs"].append(got)
                bad += point_mismatches(where, k, zeros / total, got, p)
                for layer, frac in got["byLayer"].items():
                    if abs(frac - p["byLayer"].get(layer, -1)) > 1e-6:
                        bad.append(f"{where}: layer {layer} pruned {frac} here, {p['byLayer'].get(layer)} in ours")
                src = f"from {os.path.basename(pruned_path)}" if pruned_path else "mask applied here"
                print(f"{where:>34}: k {k}  reached {zeros / total:.4f}  metric {got['metric']:9.4f} (ours {p['metric']:9.4f})  "
                      f"accuracy {got['accuracy']:.4f} (ours {p['accuracy']:.4f})  kl {got['kl']:.6f} (ours {p['kl']:.6f})  [{src}]")
        load(inits)
    finish(report, args.out, bad)


if __name__ == "__main__":
    main()
