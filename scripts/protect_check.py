#!/usr/bin/python3
"""Fine-tune the GPT-2 demo model in PyTorch with and without a `circuitlens protect` mask, and measure it.

    node dist/cli.js protect examples/induction-gpt2.circuit.json --out MASK.safetensors
    node dist/cli.js protect --snippet > apply_mask.py
    /usr/bin/python3 scripts/protect_check.py --mask MASK.safetensors --snippet apply_mask.py --out DIR

Run with Debian's interpreter (torch 1.13, onnx 1.12); CPU, deterministic (fixed seeds, 1 thread), about a minute.

1. Rebuilds the demo model (scripts/train_demo_models.py's GPT2Model) from examples/induction-gpt2.onnx. The
   mapping of initializers to parameters is this script's own (names kept by the export, and torch.onnx's
   module scopes for the transposed Linear weights), checked by the logits against the PyTorch reference
   recorded at training (examples/references/induction-gpt2.json).
2. Fine-tunes it, the same data and seed for every run, on random text by default (--task random: words drawn
   uniformly, next-token loss, 40 Adam steps at 3e-4), or on a competing task (--task bigram: chains of a fixed
   random successor map; --task skip: in a repeated sequence, the token two after the earlier occurrence).
   Runs: no mask; the mask through the snippet's protect_optimizer (Adam, each entry's update scaled); the mask
   through the snippet's gradient hooks under Adam (scale_gradients: it protects little, since Adam's step does
   not grow with the gradient). With --shared-mask (a mask made with `protect --shared all`), also that
   mask through protect_optimizer (run adam_step_shared); with --invert-mask (a mask made with `protect --invert`:
   every weight the circuit does not own scaled), that one (run adam_step_invert). With --anchor-mask (a mask made with `protect --anchor`),
   also the run faithful_anchor: no mask, the snippet's faithfulness_anchor_loss (KL(whole model || circuit alone))
   on a fresh batch of the demo's induction sequences each step, times --anchor-lambda, added to the task's loss.
   Each run records the task's loss on a held-out batch (task_eval_loss): what the fine-tuning reached.
3. Exports each fine-tuned model to DIR/<run>/induction-gpt2.onnx (same export as the demo's) and compares its
   initializers with the original's: mean |change| of the entries the mask protects (mask < 1) and of the rest.
   Faithfulness is left to `circuitlens verify --model DIR/<run>/induction-gpt2.onnx` (the test runs it).

Writes DIR/report.json.
"""

import argparse
import importlib.util
import json
import os
import shutil
import sys

import torch
import torch.nn.functional as F

torch.set_num_threads(1)  # 2 threads give the same numbers and run 10-20x slower on a busy machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import train_demo_models as demo  # noqa: E402

MODEL = os.path.join(ROOT, "examples", "induction-gpt2.onnx")
REFERENCE = os.path.join(ROOT, "examples", "references", "induction-gpt2.json")


def onnx_weights(path):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in m.graph.initializer}
    readers = {}
    for n in m.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    return inits, readers


def rebuild():
    """GPT2Model with the demo's weights; returns (model, {onnx name: (param name, transposed)})."""
    cfg = demo.CONFIGS["induction-gpt2"]
    model = demo.build(cfg)
    params = dict(model.named_parameters())
    inits, readers = onnx_weights(MODEL)
    mapping = {}
    for name, value in inits.items():
        if name in params:
            mapping[name] = (name, False)
            continue
        users = readers.get(name, [])
        if len(users) == 1 and users[0].op_type == "MatMul" and users[0].name.endswith("/MatMul"):
            scope = users[0].name[1:-len("/MatMul")].replace("/", ".")
            mapping[name] = (f"{scope}.weight" if scope else "embed.weight", True)  # "/MatMul": the tied unembedding
    loaded = set()
    with torch.no_grad():
        for name, (pname, transposed) in mapping.items():
            value = inits[name].t() if transposed else inits[name]
            if pname in loaded:
                assert torch.equal(params[pname], value), f"{name}: tied to {pname} but differs"
                continue
            params[pname].copy_(value)
            loaded.add(pname)
    missing = set(params) - loaded
    assert not missing, f"parameters not found in the ONNX file: {missing}"
    model.eval()
    ref = json.load(open(REFERENCE))
    ids = torch.tensor([p["ids"] for p in ref["prompts"]], dtype=torch.int64)
    import base64
    import numpy as np

    logits_ref = torch.from_numpy(np.frombuffer(base64.b64decode(ref["clean"]["logits"]["b64"]), dtype="<f4").copy()).reshape(ref["clean"]["logits"]["shape"])
    with torch.no_grad():
        diff = (model(ids) - logits_ref).abs().max().item()
    assert diff < 1e-4, f"rebuilt model's logits differ from the training reference by {diff}"
    return model, mapping, diff


def skip_induction_batch(batch, gen):
    """Repeated sequences; the target at position i is the token at i + 2 (predictable from i >= P on)."""
    tokens, mask = demo.make_batch(batch, gen, seq_len=demo.SEQ_LEN + 1)
    x = tokens[:, : demo.SEQ_LEN]
    y = tokens[:, 2:]
    m = mask[:, : demo.SEQ_LEN - 1]
    return x, y, m


_BIGRAM = torch.randperm(demo.V - demo.FIRST_CONTENT_ID, generator=torch.Generator().manual_seed(99)) + demo.FIRST_CONTENT_ID


def bigram_batch(batch, gen):
    """Chains of a fixed random successor map over the words (a skill the direct path and MLPs can learn)."""
    start = torch.randint(demo.FIRST_CONTENT_ID, demo.V, (batch, 1), generator=gen)
    toks = [start[:, 0]]
    for _ in range(demo.SEQ_LEN):
        toks.append(_BIGRAM[toks[-1] - demo.FIRST_CONTENT_ID])
    tokens = torch.stack(toks, 1)
    return tokens[:, :-1], tokens[:, 1:], torch.ones(batch, demo.SEQ_LEN, dtype=torch.bool)


def random_batch(batch, gen):
    """Words drawn uniformly at random (next-token prediction on noise)."""
    tokens = torch.randint(demo.FIRST_CONTENT_ID, demo.V, (batch, demo.SEQ_LEN + 1), generator=gen)
    return tokens[:, :-1], tokens[:, 1:], torch.ones(batch, demo.SEQ_LEN, dtype=torch.bool)


TASKS = {"skip": skip_induction_batch, "bigram": bigram_batch, "random": random_batch}


ANCHOR_SEED = 5000  # anchor batches: their own generator (seed ANCHOR_SEED + seed), so the task's batches stay the same


def anchor_batch(batch, gen):
    """The demo's training distribution (repeated random words, never the suite's prompts): ids, and the positions
    whose next token the repeat makes predictable."""
    tokens, mask = demo.make_batch(batch, gen)
    positions = torch.zeros_like(tokens, dtype=torch.bool)
    positions[:, :-1] = mask
    return tokens, positions


def anchor_term(kind, snippet, model, modules, reference, reference_modules, ids, positions):
    """The snippet's terms. faithful: KL(whole model || circuit alone), the snippet's faithfulness_anchor_loss;
    circuit: KL(the original model's circuit alone || circuit alone); both: their sum."""
    run = lambda m: m(ids)  # noqa: E731
    if kind == "faithful":
        return snippet.faithfulness_anchor_loss(model, modules, run, positions)
    whole, alone = snippet.circuit_alone(model, modules, run)
    with torch.no_grad():
        _, target = snippet.circuit_alone(reference, reference_modules, run)
    term = snippet.kl_rows(target[positions], alone[positions])
    return term + snippet.kl_rows(whole[positions], alone[positions]) if kind == "both" else term


def fine_tune(model, steps, lr, seed, method, snippet, mask_path, task, anchor=None, stats=None):
    """anchor: (kind, lambda, a mask written by protect --anchor, the original model): adds lambda times
    anchor_term on a fresh anchor batch each step. stats gets the last anchor term."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hooks = []
    if method != "none":
        masks = snippet.load_protect_mask(mask_path, model)
        if method == "adam_step":
            snippet.protect_optimizer(opt, masks)
        else:
            hooks = snippet.scale_gradients(masks)
    if anchor:
        kind, lam, modules_file, reference = anchor
        modules, reference_modules = snippet.load_anchor(modules_file, model), snippet.load_anchor(modules_file, reference)
        agen = torch.Generator().manual_seed(ANCHOR_SEED + seed)
    model.train()
    for _ in range(steps):
        x, y, m = TASKS[task](64, gen)
        logits = model(x)[:, : y.shape[1]]
        loss = F.cross_entropy(logits[m], y[m])
        total = loss
        if anchor:
            term = anchor_term(kind, snippet, model, modules, reference, reference_modules, *anchor_batch(64, agen))
            total = loss + lam * term
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    for h in hooks:
        h.remove()
    model.eval()
    if anchor and stats is not None:
        stats["anchor_term"] = term.item()
    return loss.item()


EVAL_SEED = 10_000  # the fine-tuning task's held-out batch (256 rows), the same for every run


@torch.no_grad()
def task_eval_loss(model, task):
    """The fine-tuning task's loss on a held-out batch: what the fine-tuning reached."""
    x, y, m = TASKS[task](256, torch.Generator().manual_seed(EVAL_SEED))
    return F.cross_entropy(model(x)[:, : y.shape[1]][m], y[m]).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mask", required=True)
    ap.add_argument("--snippet", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--task", choices=sorted(TASKS), default="random")
    ap.add_argument("--runs", default="none,adam_step,adam_grad_hooks")
    ap.add_argument("--shared-mask", help="a second mask (protect --shared all): adds the run adam_step_shared")
    ap.add_argument("--invert-mask", help="a mask written by protect --invert: adds the run adam_step_invert")
    ap.add_argument("--anchor-mask", help="a mask written by protect --anchor: adds the run faithful_anchor (no mask; the "
                    "snippet's faithfulness_anchor_loss on fresh induction batches, times --anchor-lambda)")
    ap.add_argument("--anchor-lambda", type=float, default=1.0)
    ap.add_argument("--check-prompts", help="JSON [{text, answer}] of one length: records the answers' probabilities "
                    "under the snippet's circuit_alone on the original model (the test compares them with circuitlens run --ablate)")
    args = ap.parse_args()

    spec = importlib.util.spec_from_file_location("apply_mask", args.snippet)
    snippet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snippet)
    tensors, meta = snippet.read_safetensors(args.mask)

    original, _ = onnx_weights(MODEL)
    assert set(tensors) <= set(original), "mask names initializers the model does not have"
    report = {"model": os.path.relpath(MODEL, ROOT), "task": args.task,
              "steps": args.steps, "lr": args.lr, "optimizer": "Adam", "batch": 64, "seed": args.seed,
              "scale": float(meta["scale"]), "runs": {}}
    os.makedirs(args.out, exist_ok=True)
    if args.check_prompts:
        model = rebuild()[0]
        prompts = json.load(open(args.check_prompts))
        ids = torch.tensor([demo.encode(p["text"]) for p in prompts])
        with torch.no_grad():
            whole, alone = snippet.circuit_alone(model, snippet.load_anchor(args.anchor_mask, model), lambda m: m(ids))
        answers = torch.tensor([demo.TOKEN_TO_ID[p["answer"].strip()] for p in prompts])
        report["circuit_alone_answer_probs"] = alone[:, -1].softmax(-1)[torch.arange(len(prompts)), answers].tolist()
        report["whole_answer_probs"] = whole[:, -1].softmax(-1)[torch.arange(len(prompts)), answers].tolist()
    runs = args.runs.split(",") + (["adam_step_shared"] if args.shared_mask else []) + (["adam_step_invert"] if args.invert_mask else []) \
        + (["faithful_anchor"] if args.anchor_mask else [])
    other = {"adam_step_shared": args.shared_mask, "adam_step_invert": args.invert_mask}
    for run in runs:
        method, mask_path = ("adam_step", other[run]) if run in other else ("none", None) if run == "faithful_anchor" else (run, args.mask)
        run_tensors = snippet.read_safetensors(mask_path)[0] if run in other else tensors
        model, _, diff = rebuild()
        report["rebuild_max_abs_diff"] = diff
        anchor = ("faithful", args.anchor_lambda, args.anchor_mask, rebuild()[0]) if run == "faithful_anchor" else None
        stats = {}
        loss = fine_tune(model, args.steps, args.lr, args.seed, method, snippet, mask_path, args.task, anchor, stats)
        d = os.path.join(args.out, run)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "induction-gpt2.onnx")
        stdout = sys.stdout
        sys.stdout = sys.stderr  # the export prints its summary
        try:
            demo.export(model, path, 17)
        finally:
            sys.stdout = stdout
        shutil.copy(os.path.join(ROOT, "examples", "tokenizer.json"), os.path.join(d, "tokenizer.json"))
        tuned, _ = onnx_weights(path)
        assert set(tuned) == set(original), f"{run}: the export names its initializers differently"
        prot_sum = prot_n = rest_sum = rest_n = 0.0
        for name, mask in run_tensors.items():
            delta = (tuned[name].float() - original[name].float()).abs().reshape(mask.shape)
            p = mask < 1
            prot_sum += delta[p].sum().item()
            prot_n += p.sum().item()
            rest_sum += delta[~p].sum().item()
            rest_n += (~p).sum().item()
        prot, rest = prot_sum / prot_n, rest_sum / rest_n
        report["runs"][run] = {"onnx": os.path.relpath(path, args.out), "final_loss": loss, **stats, "task_eval_loss": task_eval_loss(model, args.task),
                               "protected_mean_abs_change": prot,
                                  "rest_mean_abs_change": rest, "rest_over_protected": rest / prot if prot > 0 else None}
        print(f"{run}: loss {loss:.3f}, mean |change| protected {prot:.3e}, rest {rest:.3e}, ratio {rest / prot:.1f}", file=sys.stderr)
    runs = report["runs"]
    if "none" in runs and "adam_step" in runs:
        report["protected_change_none_over_masked"] = runs["none"]["protected_mean_abs_change"] / runs["adam_step"]["protected_mean_abs_change"]
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
