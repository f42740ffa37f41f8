#!/usr/bin/python3
"""Fine-tune the GPT-2 demo with several protect masks, on every task of protect_check.py and several seeds.

    node dist/cli.js protect examples/induction-gpt2.circuit.json --out owned.safetensors
    node dist/cli.js protect examples/induction-gpt2.circuit.json --shared --out shared.safetensors
    node dist/cli.js protect examples/induction-gpt2.circuit.json --anchor --out anchor.safetensors
    node dist/cli.js protect --snippet --anchor > apply_mask.py
    /usr/bin/python3 scripts/protect_sweep.py --snippet apply_mask.py --out DIR \\
        --variant owned=owned.safetensors --variant shared=shared.safetensors \\
        --anchor-modules anchor.safetensors --anchor faithful1=faithful:1 --anchor faithful1owned=faithful:1+owned

Each (task, seed, variant) is fine-tuned as scripts/protect_check.py does (40 Adam steps, batch 64; learning rate
3e-4 on random text, 1e-3 on bigram and skip; variant "none" has no mask; a mask goes through the snippet's
protect_optimizer), exported to ONNX and measured by the CLI on the induction suite's task prompts (the prompts
`circuitlens verify` computes faithfulness on):

  full      the model's logit difference (and accuracy)
  circuit   the circuit alone: every node outside it mean-ablated (`run --ablate`), means on that model
  empty     every node mean-ablated
  faithfulness = (circuit - empty) / (full - empty), as `circuitlens verify` reports it (its value is recorded
                 too, and checked against this one)
  circuit_vs_original_full = circuit / full of the original model: the circuit's logit difference after
                 fine-tuning as a share of the whole original model's (not faithfulness: one model's circuit
                 against another model's whole)

With --anchor NAME=KIND:LAMBDA[+MASKVARIANT] and --anchor-modules (a mask written by `protect --anchor`), a variant
fine-tunes with LAMBDA times a loss term from the snippet on a fresh batch of the demo's induction sequences each
step (its own generator: the task's batches stay those of the other variants; never the suite's prompts):

  faithful  KL(whole model || circuit alone), the snippet's faithfulness_anchor_loss
  circuit   KL(the original model's circuit alone || circuit alone)
  both      their sum

and the mask of --variant MASKVARIANT when given. Every run also records task_eval_loss: the fine-tuning task's loss
on a held-out batch (256 rows, the same for every run), so a method that wins by not learning the task shows.
--merge OLD.json keeps OLD's runs of variants not run now (test/fixtures/protect-sweep.json was made that way).
--no-none skips "none"; --combine A.json B.json ... --out F.json merges sweeps without running anything (a run in
several must agree within 1e-4; --note NAME=TEXT describes a variant). The masks no option writes (the controls of
README's `protect --invert` table) come from scripts/protect_mask_variants.py; that table's runs were made as

    protect C --shared all --scale 0 --out s0.safetensors; protect C --invert --out rest.safetensors
    protect_mask_variants.py s0.safetensors allshared0.safetensors --set blocks.0.attn.out.bias=0 --set blocks.1.attn.out.bias=0
    protect_mask_variants.py owned.safetensors uniform045.safetensors --uniform 0.45
    protect (a0.h3, m1: a circuit of the nodes outside C) --model examples/induction-gpt2.onnx --out outside.safetensors
    protect_sweep.py ... --no-none --variant allshared0=... --variant outside=... --variant rest=... --variant uniform045=...
    protect_sweep.py --combine test/fixtures/protect-sweep.json DIR*/sweep.json --out test/fixtures/protect-sweep.json

Writes DIR/sweep.json (every run, and per task and variant the mean and min/max over seeds) and prints a table.
CPU (one thread), deterministic; about 5 s a run on an idle machine, twice that with an anchor.
"""

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import protect_check as pc  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = pc.ROOT
CLI = os.path.join(ROOT, "dist", "cli.js")
SUITE = os.path.join(ROOT, "examples", "induction.suite.yaml")
CIRCUIT = os.path.join(ROOT, "examples", "induction-gpt2.circuit.json")
LR = {"random": 3e-4, "bigram": 1e-3, "skip": 1e-3}


def parse_anchor(text, variants):
    """NAME=KIND:LAMBDA[+MASKVARIANT] -> (name, kind, lambda, mask path or None)."""
    name, spec = text.split("=", 1)
    spec, _, mask = spec.partition("+")
    kind, lam = spec.split(":")
    assert kind in ("faithful", "circuit", "both"), f"--anchor {text}: kind must be faithful, circuit or both"
    paths = dict(variants)
    assert not mask or paths.get(mask), f"--anchor {text}: no --variant {mask}"
    return name, kind, float(lam), paths.get(mask) if mask else None


def fine_tune(model, steps, lr, seed, snippet, mask_path, task, anchor=None):
    """protect_check.fine_tune; returns (last task loss, last anchor term or None)."""
    stats = {}
    loss = pc.fine_tune(model, steps, lr, seed, "adam_step" if mask_path else "none", snippet, mask_path, task, anchor, stats)
    return loss, stats.get("anchor_term")


def cli(*args):
    r = subprocess.run(["node", CLI, *args, "--json"], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"circuitlens {' '.join(args)}: {r.stderr[-2000:]}")
    return json.loads(r.stdout)


def task_metrics(model, ablate):
    args = ["run", SUITE, "--model", model] + (["--ablate", ",".join(ablate)] if ablate else [])
    prompts = [p for p in cli(*args)["prompts"] if "task" in p["tags"]]
    return sum(p["logitDiff"] for p in prompts) / len(prompts), sum(p["correct"] for p in prompts) / len(prompts)


def measure(model, nodes, circuit):
    outside = [n for n in nodes if n not in circuit]
    full, full_acc = task_metrics(model, [])
    circ, circ_acc = task_metrics(model, outside)
    empty, _ = task_metrics(model, nodes)
    v = cli("verify", CIRCUIT, "--model", model)
    f = (circ - empty) / (full - empty)
    assert abs(f - v["faithfulnessByMetric"]["logit_diff"]) < 2e-3, f"{model}: faithfulness {f} here, {v['faithfulness']} from verify"
    return {"full": full, "full_accuracy": full_acc, "circuit": circ, "circuit_accuracy": circ_acc, "empty": empty,
            "faithfulness": v["faithfulnessByMetric"]["logit_diff"], "faithfulness_kl": v["faithfulnessByMetric"]["kl"],
            "faithfulness_accuracy": v["faithfulnessByMetric"]["accuracy"]}


def rounded(x):
    """Floats to 5 decimals (what test/fixtures/protect-sweep.json holds)."""
    if isinstance(x, float):
        return round(x, 5)
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    return [rounded(v) for v in x] if isinstance(x, list) else x


KEYS = ["full", "full_accuracy", "circuit", "circuit_accuracy", "empty", "faithfulness", "faithfulness_kl", "circuit_vs_original_full",
        "task_eval_loss", "rest_over_protected"]


def summarise(runs, tasks, names):
    """Per task and variant: the mean and min/max over seeds, and the seeds where a variant beats "none" of the same seed."""
    summary = []
    for task in tasks:
        for name in names:
            rows = [r for r in runs if r["task"] == task and r["variant"] == name]
            s = {"task": task, "variant": name, "seeds": len(rows)}
            if not rows:
                continue
            for k in KEYS:
                if any(r.get(k) is None for r in rows):
                    continue
                vals = [r[k] for r in rows]
                s[k] = {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)}
            none = {r["seed"]: r for r in runs if r["task"] == task and r["variant"] == "none"}
            if name != "none" and all(r["seed"] in none for r in rows):
                s["faithfulness_above_none_in"] = sum(r["faithfulness"] > none[r["seed"]]["faithfulness"] for r in rows)
                s["circuit_above_none_in"] = sum(r["circuit"] > none[r["seed"]]["circuit"] for r in rows)
                s["faithfulness_kl_above_none_in"] = sum(r["faithfulness_kl"] > none[r["seed"]]["faithfulness_kl"] for r in rows)
                if "task_eval_loss" in s:
                    s["task_eval_loss_minus_none"] = sum(r["task_eval_loss"] - none[r["seed"]]["task_eval_loss"] for r in rows) / len(rows)
            summary.append(s)
    return summary


def combine(paths, out, notes):
    """Merge sweep.json files (no fine-tuning): a run found in several must agree (the sweep is deterministic)."""
    reports = [json.load(open(p)) for p in paths]
    runs, seen, variants, anchors = [], {}, {}, {}
    for rep in reports:
        variants.update({n: v for n, v in rep["variants"].items() if variants.get(n) is None})
        anchors.update(rep.get("anchors", {}))
        for r in rep["runs"]:
            key = (r["task"], r["seed"], r["variant"])
            if key in seen:
                for k in ("full", "circuit", "empty", "faithfulness", "faithfulness_kl"):
                    assert abs(seen[key][k] - r[k]) < 1e-4, f"{key}: {k} {seen[key][k]} in one sweep, {r[k]} in another"
                seen[key].update({k: v for k, v in r.items() if k not in seen[key]})
                continue
            seen[key] = r
            runs.append(r)
    variants.update(notes)
    tasks = [t for t in ("random", "bigram", "skip") if any(r["task"] == t for r in runs)]
    report = {**reports[0], "variants": variants, "anchors": anchors, "summary": summarise(runs, tasks, list(variants)), "runs": runs}
    with open(out, "w") as f:
        json.dump(rounded(report), f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--snippet")
    ap.add_argument("--out", required=True)
    ap.add_argument("--variant", action="append", default=[], help="NAME=MASK.safetensors (variant 'none' is always run)")
    ap.add_argument("--tasks", default="random,bigram,skip")
    ap.add_argument("--seeds", default="7,8,9")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--anchor", action="append", default=[],
                    help="NAME=KIND:LAMBDA[+MASKVARIANT]: fine-tune with LAMBDA times an anchor term (faithful, circuit or both) "
                    "on fresh induction batches, and with the mask of --variant MASKVARIANT if given")
    ap.add_argument("--anchor-modules", help="a mask written by `protect --anchor` (its anchor metadata: the nodes outside the circuit)")
    ap.add_argument("--merge", action="append", default=[],
                    help="an earlier sweep.json: its runs of variants not run here are kept (and summarised) in this one")
    ap.add_argument("--only", help="run only these variants (comma-separated; 'none' always runs, unless --no-none)")
    ap.add_argument("--no-none", action="store_true", help="do not run 'none' (its runs come from an earlier sweep, with --combine)")
    ap.add_argument("--combine", nargs="+", metavar="SWEEP.json",
                    help="merge these sweep.json files into --out (a file here), running nothing; --note NAME=TEXT describes a variant")
    ap.add_argument("--note", action="append", default=[], help="with --combine: NAME=TEXT, the variant's description")
    args = ap.parse_args()
    if args.combine:
        combine(args.combine, args.out, dict(n.split("=", 1) for n in args.note))
        return

    assert args.snippet, "--snippet is required (except with --combine)"
    spec = importlib.util.spec_from_file_location("apply_mask", args.snippet)
    snippet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snippet)
    variants = [("none", None)] + [tuple(v.split("=", 1)) for v in args.variant]
    anchors = {a[0]: a[1:] for a in (parse_anchor(t, variants) for t in args.anchor)}
    variants += [(name, a[2]) for name, a in anchors.items()]
    if args.only:
        variants = [v for v in variants if v[0] == "none" or v[0] in args.only.split(",")]
    if args.no_none:
        variants = [v for v in variants if v[0] != "none"]
    cfg = pc.demo.CONFIGS["induction-gpt2"]
    nodes = [f"a{l}.h{h}" for l in range(cfg["n_layers"]) for h in range(cfg["n_heads"])] + [f"m{l}" for l in range(cfg["n_layers"])]
    circuit = json.load(open(CIRCUIT))["nodes"]
    original, _ = pc.onnx_weights(pc.MODEL)
    base = measure(pc.MODEL, nodes, circuit)
    assert not anchors or args.anchor_modules, "--anchor needs --anchor-modules"
    reference = pc.rebuild()[0]
    base["task_eval_loss"] = {t: pc.task_eval_loss(reference, t) for t in args.tasks.split(",")}
    masks = {}
    for name, path in variants:
        if path:
            tensors, _ = snippet.read_safetensors(path)
            masks[name] = {k: (t < 1) for k, t in tensors.items()}
            masks[name]["__entries__"] = sum(int((t < 1).sum()) for t in tensors.values())
    runs = []
    for task in args.tasks.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            for name, path in variants:
                model, _, _ = pc.rebuild()
                anchor = (anchors[name][0], anchors[name][1], args.anchor_modules, reference) if name in anchors else None
                loss, term = fine_tune(model, args.steps, LR[task], seed, snippet, path, task, anchor)
                eval_loss = pc.task_eval_loss(model, task)
                d = os.path.join(args.out, f"{task}-{seed}-{name}")
                os.makedirs(d, exist_ok=True)
                onnx_path = os.path.join(d, "induction-gpt2.onnx")
                stdout, sys.stdout = sys.stdout, sys.stderr
                try:
                    pc.demo.export(model, onnx_path, 17)
                finally:
                    sys.stdout = stdout
                shutil.copy(os.path.join(ROOT, "examples", "tokenizer.json"), os.path.join(d, "tokenizer.json"))
                row = {"task": task, "seed": seed, "variant": name, "lr": LR[task], "final_loss": loss, "task_eval_loss": eval_loss,
                       **({"anchor": anchors[name][0], "lambda": anchors[name][1], "anchor_term": term} if anchor else {}),
                       **measure(onnx_path, nodes, circuit)}
                row["circuit_vs_original_full"] = row["circuit"] / base["full"]
                if name in masks:
                    tuned, _ = pc.onnx_weights(onnx_path)
                    ps = pn = rs = rn = 0.0
                    for k, p in masks[name].items():
                        if k == "__entries__":
                            continue
                        delta = (tuned[k].float() - original[k].float()).abs().reshape(p.shape)
                        ps, pn, rs, rn = ps + delta[p].sum().item(), pn + p.sum().item(), rs + delta[~p].sum().item(), rn + (~p).sum().item()
                    row["protected_entries"] = masks[name]["__entries__"]
                    row["rest_over_protected"] = (rs / rn) / (ps / pn) if ps > 0 and rn > 0 else None
                runs.append(row)
                print(f"{task:6} {seed} {name:10} full {row['full']:6.2f} circuit {row['circuit']:6.2f} empty {row['empty']:6.2f} "
                      f"faith {row['faithfulness']:.3f} circ/orig {row['circuit_vs_original_full']:.3f}", file=sys.stderr)
    merged = {}
    for path in args.merge:
        old = json.load(open(path))
        here = {n for n, _ in variants}
        runs = [r for r in old["runs"] if r["variant"] not in here and r["task"] in args.tasks.split(",")] + runs
        merged.update({n: v for n, v in old["variants"].items() if n not in here})
    if args.merge:  # the earlier sweep's order, then the new variants
        names = list(json.load(open(args.merge[0]))["variants"]) + [n for n, _ in variants]
        order = {n: names.index(n) for n in names}
        variants = sorted([(n, None) for n in merged] + variants, key=lambda v: order[v[0]])
    summary = summarise(runs, args.tasks.split(","), [n for n, _ in variants])
    report = {"model": os.path.relpath(pc.MODEL, ROOT), "circuit": os.path.relpath(CIRCUIT, ROOT), "steps": args.steps, "batch": 64,
              "optimizer": "Adam", "lr": LR, "seeds": [int(s) for s in args.seeds.split(",")],
              "variants": {n: merged.get(n, os.path.basename(p) if p else None) for n, p in variants},
              "anchors": {n: {"kind": a[0], "lambda": a[1], "mask": os.path.basename(a[2]) if a[2] else None,
                                 "data": "fresh induction batches (protect_check.demo.make_batch), 64 a step"} for n, a in anchors.items()}, "original": base, "summary": summary, "runs": runs}
    with open(os.path.join(args.out, "sweep.json"), "w") as f:
        json.dump(rounded(report), f, indent=1)
        f.write("\n")
    print(f"original: full {base['full']:.2f} circuit {base['circuit']:.2f} empty {base['empty']:.2f} faithfulness {base['faithfulness']:.3f}")
    print(f"task loss before fine-tuning (held-out batch): {base['task_eval_loss']}")
    print("| task | variant | full | accuracy | circuit alone | empty | faithfulness | circuit / original full | task loss | faithfulness > none | circuit > none |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in summary:
        m = lambda k, p=2: f"{s[k]['mean']:.{p}f} [{s[k]['min']:.{p}f}, {s[k]['max']:.{p}f}]"  # noqa: E731
        extra = f"{s['faithfulness_above_none_in']}/{s['seeds']} | {s['circuit_above_none_in']}/{s['seeds']}" if "faithfulness_above_none_in" in s else "— | —"
        print(f"| {s['task']} | {s['variant']} | {m('full')} | {s['full_accuracy']['mean']:.2f} | {m('circuit')} | {m('empty')} | {m('faithfulness', 3)} "
              f"| {m('circuit_vs_original_full', 3)} | {m('task_eval_loss', 3) if 'task_eval_loss' in s else '—'} | {extra} |")


if __name__ == "__main__":
    main()
