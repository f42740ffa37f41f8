#!/usr/bin/python3
"""A later checkpoint of the GPT-2 demo model, for `circuitlens compare` and the canaries across checkpoints.

Run with Debian's interpreter (torch 1.13, onnx 1.12), CPU only, deterministic (fixed seeds, 2 threads):

    /usr/bin/python3 scripts/make_checkpoints.py

It rebuilds the demo model in PyTorch from examples/induction-gpt2.onnx (the model class of
scripts/train_demo_models.py, weights read from the ONNX initializers; the rebuilt model must reproduce the
committed reference logits), fine-tunes it for a few hundred steps on a task that competes with induction, and
writes:

  examples/checkpoints/induction-gpt2-finetuned.onnx   same architecture and export settings (opset 17)
  examples/checkpoints/tokenizer.json                  a copy of examples/tokenizer.json (read beside the model)
  examples/references/checkpoints.json                 suite metrics of both checkpoints, computed in PyTorch with
                                                       the weights read back from each exported ONNX file

The competing task ("bigram"): on sequences of random words, predict a fixed word chosen by the current word
(a seeded map from each word to another), a rule learnt from the current token alone. On repeated text it says
something other than the induction answer, so induction loses part of its hold; a share of ordinary induction
batches keeps it from being erased altogether, as in a fine-tune that drifts rather than one that retrains.
"""

import itertools
import json
import os
import shutil
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_demo_models as demo  # noqa: E402  (the model class and export settings of the demo models)

torch.set_num_threads(2)

ROOT = demo.ROOT
SOURCE = os.path.join(demo.EXAMPLES, "induction-gpt2.onnx")
OUT_DIR = os.path.join(demo.EXAMPLES, "checkpoints")
OUT = os.path.join(OUT_DIR, "induction-gpt2-finetuned.onnx")
SUITE = os.path.join(demo.EXAMPLES, "induction.suite.yaml")
REFERENCE = os.path.join(demo.REFERENCES, "checkpoints.json")

FINETUNE = dict(seed=5678, steps=250, lr=1e-3, batch=64, induction_share=0.1)


# --------------------------------------------------------------------------
# ONNX → PyTorch
# --------------------------------------------------------------------------


def state_from_onnx(path):
    """The demo model's state dict from an export of it: named initializers as they are; the MatMul weights
    (exported as Linear.weight transposed, under generated names) by the node that consumes them."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    state = {k: v for k, v in inits.items() if not k.startswith("onnx::")}
    unembed = None
    for n in m.graph.node:
        if n.op_type != "MatMul" or n.input[1] not in inits:
            continue
        w = inits[n.input[1]]
        if n.name == "/MatMul":  # the tied unembedding, constant-folded to embed.weight transposed
            unembed = w
            continue
        # "/blocks.0/attn/qkv/MatMul" → "blocks.0.attn.qkv.weight"
        module = n.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        state[f"{module}.weight"] = w.t().contiguous()
    if unembed is None or not torch.equal(unembed.t(), state["embed.weight"]):
        raise SystemExit(f"{path}: the unembedding is not the embedding transposed (not a tied demo export)")
    return state


def load_demo(path):
    cfg = demo.CONFIGS["induction-gpt2"]
    model = demo.build(cfg)
    model.load_state_dict(state_from_onnx(path), strict=True)
    model.eval()
    return model


def check_reference(model):
    """The rebuilt model reproduces the committed PyTorch reference logits of the demo model."""
    ref = json.load(open(os.path.join(demo.REFERENCES, "induction-gpt2.json")))
    ids = torch.tensor([p["ids"] for p in ref["prompts"]], dtype=torch.int64)
    import base64
    import numpy as np

    t = ref["clean"]["logits"]
    want = torch.from_numpy(np.frombuffer(base64.b64decode(t["b64"]), dtype="<f4").reshape(t["shape"]).copy())
    with torch.no_grad():
        got = model(ids)
    err = (got - want).abs().max().item()
    print(f"rebuilt from {os.path.relpath(SOURCE, ROOT)}: max |logit − reference| = {err:.2e}")
    if err > 1e-4:
        raise SystemExit("the rebuilt model does not reproduce the reference logits")


# --------------------------------------------------------------------------
# Fine-tuning on the competing task
# --------------------------------------------------------------------------


def bigram_map(seed):
    """Each content word → another content word, fixed (a seeded permutation without fixed points)."""
    gen = torch.Generator().manual_seed(seed)
    n = demo.V - demo.FIRST_CONTENT_ID
    perm = torch.randperm(n, generator=gen)
    # A cyclic shift of a random order: a permutation with no word mapped to itself.
    target = torch.empty(n, dtype=torch.int64)
    target[perm] = perm.roll(1)
    full = torch.arange(demo.V)
    full[demo.FIRST_CONTENT_ID:] = target + demo.FIRST_CONTENT_ID
    return full


def bigram_batch(batch, gen, mapping, seq_len=demo.SEQ_LEN):
    """Random words (no repeat within a sequence); every next-token target is the map of the current word."""
    n = demo.V - demo.FIRST_CONTENT_ID
    tokens = torch.rand(batch, n, generator=gen).argsort(dim=-1)[:, :seq_len] + demo.FIRST_CONTENT_ID
    return tokens, mapping[tokens]


def finetune(model, hp):
    torch.manual_seed(hp["seed"])
    gen = torch.Generator().manual_seed(hp["seed"] + 1)
    mapping = bigram_map(hp["seed"] + 2)
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=0.01)
    n_ind = int(round(hp["batch"] * hp["induction_share"]))
    for step in range(hp["steps"]):
        model.train()
        tokens, targets = bigram_batch(hp["batch"] - n_ind, gen, mapping)
        loss = F.cross_entropy(model(tokens).reshape(-1, demo.V), targets.reshape(-1))
        if n_ind:
            itok, imask = demo.make_batch(n_ind, gen)
            loss = loss + demo.masked_loss(model, itok, imask) * hp["induction_share"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == hp["steps"] - 1:
            print(f"  step {step:4d} loss {loss.item():.4f} induction acc(500) {demo.accuracy(model, seed=999, n=500):.3f} "
                  f"bigram acc {bigram_accuracy(model, mapping):.3f}", flush=True)
    model.eval()
    return model, mapping


@torch.no_grad()
def bigram_accuracy(model, mapping, n=500):
    model.eval()
    tokens, targets = bigram_batch(n, torch.Generator().manual_seed(31), mapping)
    return (model(tokens).argmax(-1) == targets).float().mean().item()


# --------------------------------------------------------------------------
# Suite metrics in PyTorch (the reference the engine is checked against)
# --------------------------------------------------------------------------


def suite_prompts(path):
    """The suite's prompts: templates expanded (every combination of the variables), then the listed prompts."""
    import yaml

    s = yaml.safe_load(open(path))
    out = []
    for t in s.get("templates") or []:
        names = list(t["variables"])
        for values in itertools.product(*(t["variables"][k] for k in names)):
            fill = lambda x, b=dict(zip(names, values)): x.format(**b)  # noqa: E731
            out.append({"text": fill(t["pattern"]), "answer": fill(t["answer"]), "foil": fill(t["foil"]), "tags": t.get("tags", [])})
    for p in s.get("prompts") or []:
        out.append({"text": p["text"], "answer": p["answer"], "foil": p["foil"], "tags": p.get("tags", [])})
    return out


def token_id(word):
    ids = demo.encode(word)
    assert len(ids) == 1 and ids[0] != 0, word
    return ids[0]


@torch.no_grad()
def suite_metrics(model, prompts):
    """Per prompt at the last position: logit difference (answer − foil), probability of the answer, argmax =
    answer; means over task prompts (not tagged control) and over control prompts."""
    rows = []
    for p in prompts:
        ids = torch.tensor([demo.encode(p["text"])], dtype=torch.int64)
        logits = model(ids)[0, -1].double()
        a, f = token_id(p["answer"]), token_id(p["foil"])
        rows.append({"text": p["text"], "control": "control" in p["tags"], "logitDiff": (logits[a] - logits[f]).item(),
                     "prob": torch.softmax(logits, -1)[a].item(), "correct": int(logits.argmax().item() == a)})

    def mean(rs):
        n = len(rs)
        return {"prompts": n, "logit_diff": sum(r["logitDiff"] for r in rs) / n, "prob": sum(r["prob"] for r in rs) / n,
                "accuracy": sum(r["correct"] for r in rs) / n}

    return {"task": mean([r for r in rows if not r["control"]]), "control": mean([r for r in rows if r["control"]]),
            "prompts": [{k: r[k] for k in ("text", "logitDiff", "prob", "correct")} for r in rows]}


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    model = load_demo(SOURCE)
    check_reference(model)
    before = demo.accuracy(model, seed=777)
    print(f"induction accuracy before fine-tuning ({demo.HELDOUT} held-out sequences): {before:.4f}")
    model, mapping = finetune(model, FINETUNE)
    after = demo.accuracy(model, seed=777)
    bigram = bigram_accuracy(model, mapping, n=demo.HELDOUT)
    print(f"induction accuracy after fine-tuning: {after:.4f}; bigram accuracy {bigram:.4f}")
    demo.export(model, OUT, 17)
    shutil.copyfile(os.path.join(demo.EXAMPLES, "tokenizer.json"), os.path.join(OUT_DIR, "tokenizer.json"))

    # The references are computed on weights read back from the exported files, not on the models in memory.
    prompts = suite_prompts(SUITE)
    models = {}
    for rel, path in (("induction-gpt2.onnx", SOURCE), ("checkpoints/induction-gpt2-finetuned.onnx", OUT)):
        m = load_demo(path)
        models[rel] = {"heldoutInductionAccuracy": round(demo.accuracy(m, seed=777), 4), **suite_metrics(m, prompts)}
        t = models[rel]["task"]
        print(f"  {rel}: suite task logit_diff {t['logit_diff']:.4f}, accuracy {t['accuracy']:.4f} ({t['prompts']} prompts); "
              f"control accuracy {models[rel]['control']['accuracy']:.4f}")
    ref = {
        "suite": "induction.suite.yaml",
        "notes": "PyTorch forward (scripts/train_demo_models.py GPT2Model) with each model's weights read from its ONNX "
                 "file; last-position metrics, means over task prompts (not tagged control) and control prompts.",
        "finetune": {**FINETUNE, "task": "bigram: next word = a fixed map of the current word, on random words",
                     "heldoutBigramAccuracy": round(bigram, 4)},
        "models": models,
    }
    with open(REFERENCE, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    for p in (OUT, REFERENCE):
        print(f"  wrote {os.path.relpath(p, ROOT)} ({os.path.getsize(p)} bytes)")


if __name__ == "__main__":
    main()
