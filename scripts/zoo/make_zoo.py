#!/usr/bin/python3
"""Generate the conformance zoo (see scripts/zoo/SPEC.md):

    /usr/bin/python3 scripts/zoo/make_zoo.py [NAME ...]

Entries come from ENTRIES of scripts/zoo/ln_families.py and scripts/zoo/rms_families.py (a module that is
missing or fails to import is skipped with a warning). With names, only those entries (and the bases their
variants need, rebuilt but not rewritten) are generated and merged into the existing manifest.

For every entry: build (and train, for train=True), export per variant, write <name>.json / <name>.grads.json,
run the file with onnxruntime-node and compare its logits with PyTorch's (<= 1e-4, on the reference prompts
and on a shorter batch-1 input), write a suite for trained models, and update test/fixtures/zoo/manifest.json.
Deterministic: fixed seeds, 1 thread.
"""

import copy
import importlib
import json
import os
import sys
import time
import traceback

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
from common import OUT_DIR, ROOT  # noqa: E402

TOL = 1e-4
# Variants computing exactly what their base computes (same weights): the manifest points at the base's
# reference / grads files instead of duplicating them (~5 MB each).
SHARED_REFERENCE = ("opset14", "opset18", "external-data")
MAX_BYTES = 1.5 * 1024 * 1024


def load_entries():
    entries = []
    for mod_name in ("ln_families", "rms_families"):
        if not os.path.exists(os.path.join(HERE, f"{mod_name}.py")):
            print(f"warning: scripts/zoo/{mod_name}.py does not exist; skipping its entries")
            continue
        try:
            mod = importlib.import_module(mod_name)
        except Exception:
            traceback.print_exc()
            print(f"warning: scripts/zoo/{mod_name}.py failed to import; skipping its entries")
            continue
        entries += list(getattr(mod, "ENTRIES", []))
    names = [e.name for e in entries]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"duplicate entry names {dup}"
    return entries


def model_rel(entry):
    return f"{entry.name}/model.onnx" if entry.tokenizer is not None else f"{entry.name}.onnx"


def _clean_outputs(entry):
    for p in (os.path.join(OUT_DIR, f"{entry.name}.onnx"), os.path.join(OUT_DIR, f"{entry.name}.onnx.data")):
        if os.path.exists(p):
            os.remove(p)


def produce(entry, model, base_entry, acc_of):
    """Exports one entry; returns its manifest row and summary info."""
    os.makedirs(OUT_DIR, exist_ok=True)
    _clean_outputs(entry)
    rel = model_rel(entry)
    path = os.path.join(OUT_DIR, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    v = entry.variant
    tmp17 = os.path.join(OUT_DIR, f".tmp-{entry.name}-17.onnx")
    ref_model = model
    int8_info = None
    try:
        if v == "opset17":
            common.export_onnx(model, path, 17)
        elif v == "opset14":
            common.export_onnx(model, path, 14)
        elif v == "opset18":
            # from the opset-14 export, so that the file has ReduceMean (LayerNorm decomposed) whose axes
            # move from an attribute to an input at 18
            common.export_onnx(model, tmp17, 14)
            _, n_moved = common.convert_to_opset18(tmp17, path)
            assert n_moved > 0, "opset18 variant: no Reduce* axes moved"
        elif v == "external-data":
            common.export_onnx(model, tmp17, 17)
            common.save_external_data(tmp17, path)
        elif v == "fp16-weights":
            ref_model = copy.deepcopy(model)
            with torch.no_grad():
                for p in ref_model.parameters():
                    if p.dim() >= 1 and p.numel() > 1:
                        p.copy_(p.half().float())
            common.export_onnx(ref_model, tmp17, 17)
            common.fp16_weights(tmp17, path)
        elif v == "int8-dynamic":
            common.export_onnx(model, tmp17, 17)
            _, n_q = common.quantize_dynamic_int8(tmp17, path)
            int8_info = n_q
        elif "export" in entry.extra:
            # a variant defined by the family module: extra["export"](model, path) writes the file
            entry.extra["export"](model, path)
        else:
            raise SystemExit(f"{entry.name}: unknown variant {v}")
    finally:
        if os.path.exists(tmp17):
            os.remove(tmp17)

    accuracy = acc_of.get(entry.base or entry.name)
    trained = bool(entry.train or (base_entry is not None and base_entry.train))
    if v == "int8-dynamic":
        # Reference: the quantized file's own onnxruntime logits (no hooks); grads: the float base's.
        prompts = common.make_prompts(model.cfg["vocab"])
        ids = torch.tensor([p["ids"] for p in prompts], dtype=torch.int64)
        q_logits = common.run_onnx(path, ids)
        with torch.no_grad():
            f_logits = model(ids)
        diff = (q_logits - f_logits).abs().max().item()
        agree = (q_logits.argmax(-1) == f_logits.argmax(-1)).float().mean().item()
        ref = {
            "model": rel,
            "config": {k: model.cfg[k] for k in common.CONFIG_KEYS},
            "training": {"accuracy": None if accuracy is None else round(accuracy, 4)},
            "notes": f"int8 dynamic quantization of {entry.base}: clean.logits are onnxruntime's output of this quantized "
                     f"file (not PyTorch); no hooks, no ablations. Max abs diff vs the float model {diff:.4f}, argmax "
                     f"agreement {agree:.3f}. {n_q_text(int8_info)}",
            "float_reference": f"{entry.base}.json",
            "prompts": prompts,
            "clean": {"logits": common.enc_tensor(q_logits)},
            "ablations": [],
        }
        ref_file = f"{entry.name}.json"
        with open(os.path.join(OUT_DIR, ref_file), "w") as f:
            json.dump(ref, f)
            f.write("\n")
        grads_file = f"{entry.base}.grads.json"
        max_diff = None
        extra = f"vs float {diff:.3g}, argmax agree {agree:.3f}"
    else:
        if v in SHARED_REFERENCE and entry.base:
            # Same weights, same function as the base: share its reference files (they are ~5 MB each).
            for stale in (f"{entry.name}.json", f"{entry.name}.grads.json"):
                if os.path.exists(os.path.join(OUT_DIR, stale)):
                    os.remove(os.path.join(OUT_DIR, stale))
            ref_file, grads_file = f"{entry.base}.json", f"{entry.base}.grads.json"
            ids = torch.tensor([p["ids"] for p in common.make_prompts(model.cfg["vocab"])], dtype=torch.int64)
            with torch.no_grad():
                logits = ref_model(ids)
            with open(os.path.join(OUT_DIR, ref_file)) as f:
                base_logits = common.dec_tensor(json.load(f)["clean"]["logits"])
            assert (base_logits - logits).abs().max().item() <= 1e-6, "shared reference does not match the model"
        else:
            ref_file, grads_file, ids, logits = common.write_reference(entry, ref_model, OUT_DIR, rel, accuracy)
        if "check" in entry.extra:
            # a graph whose inputs are not just input_ids: extra["check"](model, path) -> max abs logit diff
            max_diff = entry.extra["check"](ref_model, path)
        else:
            short = ids[:1, :13]
            with torch.no_grad():
                short_logits = ref_model(short)
            ort = common.run_onnx_many([(path, ids), (path, short)])
            max_diff = max((ort[0] - logits).abs().max().item(), (ort[1] - short_logits).abs().max().item())
        if not max_diff <= TOL:
            raise SystemExit(f"{entry.name}: onnxruntime logits differ from PyTorch by {max_diff} > {TOL}")
        extra = ""

    tok_rel = None
    if entry.tokenizer is not None:
        tok_rel = f"{entry.name}/tokenizer.json"
        with open(os.path.join(OUT_DIR, tok_rel), "w") as f:
            json.dump(entry.tokenizer, f, indent=1, ensure_ascii=False)
            f.write("\n")
        assert len(entry.tokenizer["model"]["vocab"]) == model.cfg["vocab"], "tokenizer vocab != model vocab"

    suite_rel = None
    suite_acc = None
    if entry.train and entry.base is None:
        suite_rel = f"{entry.name}/induction.suite.yaml"
        os.makedirs(os.path.join(OUT_DIR, entry.name), exist_ok=True)
        model_ref = os.path.relpath(path, os.path.join(OUT_DIR, entry.name))
        suite_acc = common.write_suite(entry, model, os.path.join(OUT_DIR, suite_rel), model_ref)

    size = os.path.getsize(path)
    data = path + ".data"
    if os.path.exists(data):
        size += os.path.getsize(data)
    assert size < MAX_BYTES, f"{entry.name}: {size} bytes"
    nodes, ops = common.graph_summary(path)
    row = {
        "name": entry.name, "family": entry.family, "variant": v, "model": rel, "reference": ref_file,
        "grads": grads_file, "tokenizer": tok_rel, "suite": suite_rel, "trained": trained,
        "accuracy": None if accuracy is None else round(accuracy, 4), "parallel": bool(entry.parallel),
        "notes": entry.notes,
    }
    if v == "int8-dynamic":
        # CircuitLens refuses integer-activation exports with the operators named (core/onnx/normalize.ts).
        row["expect"] = "refuse"
        row["refuse"] = "quantized with integer activations \\(DynamicQuantizeLinear, MatMulInteger"
    info = dict(size=size, nodes=nodes, ops=ops, max_diff=max_diff, acc=accuracy, suite_acc=suite_acc, extra=extra)
    return row, info


def n_q_text(n):
    return f"{n} MatMul/Gemm nodes quantized." if n is not None else ""


def validate_tokenizers(rows):
    toks = [os.path.join(OUT_DIR, r["tokenizer"]) for r in rows if r.get("tokenizer")]
    if not toks:
        return
    script = r"""
const fs = require('fs');
const { Tokenizer } = require('@huggingface/tokenizers');
for (const file of process.argv.slice(1)) {
  const json = JSON.parse(fs.readFileSync(file, 'utf8'));
  const tok = new Tokenizer(json, {});
  const text = 'The quick brown fox: induction heads copy tokens! 123';
  const enc = tok.encode(text, { add_special_tokens: false });  // as core/tokenizer.ts encodes prompts
  const ids = enc.ids ?? enc;
  const dec = tok.decode(Array.from(ids));
  const n = Object.keys(json.model.vocab).length;
  if (dec !== text) { console.error(file, 'round trip failed:', JSON.stringify(dec)); process.exit(1); }
  if (Array.from(ids).some((i) => i < 0 || i >= n)) { console.error(file, 'id out of range'); process.exit(1); }
  console.log(`  tokenizer ${file}: ${Array.from(ids).length} ids for ${text.length} chars, round trip ok`);
}
"""
    import subprocess
    subprocess.run(["node", "-e", script, *toks], cwd=ROOT, check=True)


def main(argv):
    torch.set_num_threads(1)
    entries = load_entries()
    by_name = {e.name: e for e in entries}
    wanted = argv or [e.name for e in entries]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown entries {unknown}; known: {list(by_name)}")
    needed = set(wanted) | {by_name[n].base for n in wanted if by_name[n].base}
    models, acc_of, rows, infos = {}, {}, {}, {}
    t_all = time.time()
    for e in entries:
        if e.name not in needed:
            continue
        t0 = time.time()
        print(f"== {e.name} ({e.family}, {e.variant})", flush=True)
        if e.base:
            model = models[e.base]
        else:
            model = e.build()
            assert model.cfg["vocab"] == e.cfg["vocab"]
            if e.train:
                common.train_induction(model, e.name, steps=e.train_steps, lr=e.lr, seed=e.seed)
                acc = common.induction_accuracy(model, model.cfg["vocab"])
                acc_of[e.name] = acc
                print(f"  [{e.name}] held-out induction accuracy {acc:.4f}", flush=True)
            model.eval()
        models[e.name] = model
        if e.name not in wanted:
            continue
        row, info = produce(e, model, by_name.get(e.base), acc_of)
        rows[e.name], infos[e.name] = row, info
        print(f"  ok: {row['model']} {info['size']} bytes, {info['nodes']} nodes, max diff {info['max_diff']}, "
              f"{time.time() - t0:.1f}s", flush=True)

    manifest_path = os.path.join(OUT_DIR, "manifest.json")
    old = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            old = {r["name"]: r for r in json.load(f).get("entries", [])}
    merged = []
    for e in entries:
        if e.name in rows:
            merged.append(rows[e.name])
        elif e.name in old:
            merged.append(old[e.name])
    with open(manifest_path, "w") as f:
        json.dump({"generator": "scripts/zoo/make_zoo.py", "entries": merged}, f, indent=2)
        f.write("\n")
    validate_tokenizers(list(rows.values()))

    print(f"\n{'entry':18} {'variant':14} {'bytes':>8} {'nodes':>5} {'max diff':>9} {'acc':>6} {'suite':>6}  ops")
    for name, info in infos.items():
        r = rows[name]
        md = "-" if info["max_diff"] is None else f"{info['max_diff']:.1e}"
        acc = "-" if info["acc"] is None else f"{info['acc']:.3f}"
        sa = "-" if info["suite_acc"] is None else f"{info['suite_acc']:.2f}"
        ops = " ".join(f"{k}:{v}" for k, v in info["ops"].items())
        print(f"{name:18} {r['variant']:14} {info['size']:8d} {info['nodes']:5d} {md:>9} {acc:>6} {sa:>6}  {ops} {info['extra']}")
    print(f"total {time.time() - t_all:.1f}s")


if __name__ == "__main__":
    main(sys.argv[1:])
