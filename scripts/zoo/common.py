"""INTERFACE READY

Shared machinery of the conformance zoo (see scripts/zoo/SPEC.md, the contract with the TypeScript tests).
Run everything with Debian's interpreter (torch 1.13, onnx 1.12): /usr/bin/python3 scripts/zoo/make_zoo.py

How a family module registers entries
-------------------------------------
A family module (scripts/zoo/ln_families.py, scripts/zoo/rms_families.py) defines model classes and a
module-level list

    ENTRIES: list[Entry]

make_zoo.py imports both modules (a missing one is skipped with a warning) and generates every entry in
order. An Entry is

    Entry(name, family, build, cfg, variant="opset17", tokenizer=None, train=False, parallel=False,
          notes="", base=None, train_steps=..., seed=...)

  name      file stem in test/fixtures/zoo/ ("gpt2", "llama", "gpt2-opset14", ...)
  family    arch name written to the reference config ("gpt2", "gpt_neo", "gpt_neox", "opt", "phi",
            "llama", "mistral", "qwen2", "gemma")
  build     zero-argument callable returning a *freshly initialised, deterministic* nn.Module (seed inside,
            e.g. via init_random(model, seed)). The module must have
              .cfg: dict with n_layers, n_heads, n_kv_heads, d_model, d_head, d_mlp, vocab, n_ctx, arch
              forward(input_ids [B,T] int64) -> logits [B,T,V] float32
              hook_points() -> dict[str, nn.Module]  TransformerLens names -> HookPoint modules:
                hook_embed, (hook_pos_embed if learned positions), blocks.L.hook_resid_pre,
                blocks.L.attn.hook_pattern [B,H,T,T], blocks.L.attn.hook_z [B,T,H,Dh], blocks.L.hook_attn_out,
                blocks.L.hook_mlp_out, blocks.L.hook_resid_post, ln_final.hook_normalized
            Module names / parameters mirror Hugging Face (transformer.h.0.attn.c_attn, model.layers.0...);
            HookPoints are extra attributes (they vanish from the ONNX graph: nn.Identity).
  cfg       the same dict as model.cfg (used for the manifest before building)
  variant   "opset17" (plain torch.onnx.export at opset 17), "opset14", "opset18" (the opset-14 export
            converted by hand), "external-data", "fp16-weights", "int8-dynamic"; opset14/opset18/external-data
            share their base's reference files (manifest "reference"/"grads" name the base's), int8-dynamic's
            reference holds the quantized file's own onnxruntime logits only. Other variant names need
            extra["export"](model, path) (and extra["check"](model, path) -> max abs diff if the graph takes
            more inputs than input_ids), see make_zoo.produce
  tokenizer None, or a tokenizer.json dict (then the model goes to <name>/model.onnx beside tokenizer.json)
  train     True: train an induction behaviour on ids (train_induction) before exporting; writes a suite
  parallel  True for parallel attention/MLP blocks (manifest field)
  base      for variants: the name of an earlier entry whose (trained) weights are reused; build is then
            ignored (pass None) and cfg should be the base's cfg
  train_steps / lr / seed  training knobs (train=True only)

Useful helpers for family modules: HookPoint, init_random, causal_mask_bool, rotate_half, rotary_cos_sin.
Everything else (references, grads, export, onnxruntime check, variants, suites) is done by make_zoo.py via
the functions below; family modules need not call them.
"""

import base64
import collections
import json
import math
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)  # the machine is shared: 1 thread is much faster under contention

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "test", "fixtures", "zoo")
PROMPT_LEN = 20
N_PROMPTS = 4
FIRST_ID = 1  # prompts / training draw ids from [FIRST_ID, vocab)
TRAIN_SEQ = 24


# --------------------------------------------------------------------------------------------------------
# Interface
# --------------------------------------------------------------------------------------------------------


class HookPoint(nn.Identity):
    """TransformerLens-style hook point: identity (no ONNX node), hooked with register_forward_hook."""


@dataclass
class Entry:
    name: str
    family: str
    build: Optional[Callable[[], nn.Module]]
    cfg: dict
    variant: str = "opset17"
    tokenizer: Optional[dict] = None
    train: bool = False
    parallel: bool = False
    notes: str = ""
    base: Optional[str] = None
    train_steps: int = 1500
    lr: float = 3e-3
    seed: int = 0
    extra: dict = field(default_factory=dict)


def init_random(model, seed, std=0.15, bias_std=0.05, norm_jitter=0.1):
    """Deterministic random init giving non-trivial activations: weights N(0, std), biases N(0, bias_std),
    norm weights 1 + N(0, norm_jitter) (norm biases N(0, bias_std)). Parameters whose name ends in
    'weight' and are 1-D are treated as norm weights. Call at the end of a model's __init__ (or in build)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            elif name.endswith("weight"):
                p.copy_(1.0 + torch.randn(p.shape, generator=gen) * norm_jitter)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * bias_std)
    return model


def causal_mask_bool(n_ctx):
    """HF-style lower-triangular bool buffer [1,1,n_ctx,n_ctx] (True = may attend), like GPT-2's `bias`."""
    return torch.tril(torch.ones((n_ctx, n_ctx), dtype=torch.bool)).view(1, 1, n_ctx, n_ctx)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def rotary_cos_sin(dim, n_ctx, base=10000.0):
    """(cos, sin) [n_ctx, dim] in HF's rotate_half convention (emb = cat(freqs, freqs))."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    t = torch.arange(n_ctx, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


# --------------------------------------------------------------------------------------------------------
# Tensors, prompts
# --------------------------------------------------------------------------------------------------------


def enc_tensor(t):
    t = t.detach().contiguous().to(torch.float32)
    return {"shape": list(t.shape), "b64": base64.b64encode(t.numpy().astype("<f4").tobytes()).decode("ascii")}


def dec_tensor(t):
    return torch.from_numpy(np.frombuffer(base64.b64decode(t["b64"]), dtype="<f4").copy()).reshape(t["shape"])


def make_prompts(vocab, seed=2024):
    """4 induction prompts of 20 ids: distinct random ids, then a (periodic) repeat."""
    gen = torch.Generator().manual_seed(seed)
    specs = [(10, 0), (12, 0), (8, 0), (11, 3)]  # (prefix length P, repeat offset o)
    prompts = []
    for P, o in specs:
        perm = (torch.rand(vocab - FIRST_ID, generator=gen).argsort() + FIRST_ID).tolist()
        toks = perm[:P]
        while len(toks) < PROMPT_LEN:
            toks.append(toks[len(toks) - (P - o)])
        prompts.append({"text": "", "ids": toks})
    return prompts


def make_batch(batch, gen, vocab, seq_len=TRAIN_SEQ):
    """Induction training data on ids: (tokens [B,T], mask [B,T-1] over predictable next-token targets)."""
    n = vocab - FIRST_ID
    perm = torch.rand(batch, n, generator=gen).argsort(dim=-1)[:, :seq_len] + FIRST_ID
    P = torch.randint(6, 17, (batch,), generator=gen)
    o = (torch.rand(batch, generator=gen) * (P - 3).float()).floor().long()
    t = torch.arange(seq_len).unsqueeze(0)
    period = (P - o).unsqueeze(1)
    src = torch.where(t < P.unsqueeze(1), t, o.unsqueeze(1) + (t - P.unsqueeze(1)) % period)
    tokens = perm.gather(1, src)
    mask = torch.arange(1, seq_len).unsqueeze(0) >= (P.unsqueeze(1) + 1)
    return tokens, mask


# --------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------


@torch.no_grad()
def induction_accuracy(model, vocab, seed=777, n=2000):
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    tokens, mask = make_batch(n, gen, vocab)
    preds = model(tokens)[:, :-1].argmax(-1)
    return (((preds == tokens[:, 1:]) & mask).sum() / mask.sum()).item()


def train_induction(model, name, steps=1500, lr=3e-3, batch=64, seed=0, max_seconds=None):
    vocab = model.cfg["vocab"]
    gen = torch.Generator().manual_seed(seed + 1)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = 100

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        p = (step - warmup) / max(1, steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    t0 = time.time()
    for step in range(steps):
        model.train()
        tokens, mask = make_batch(batch, gen, vocab)
        logits = model(tokens)[:, :-1]
        loss = F.cross_entropy(logits[mask], tokens[:, 1:][mask])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            acc = induction_accuracy(model, vocab, seed=999, n=300)
            print(f"  [{name}] step {step:5d} loss {loss.item():.4f} acc(300) {acc:.3f} {time.time() - t0:.1f}s", flush=True)
        if max_seconds is not None and time.time() - t0 > max_seconds:  # (makes the run non-deterministic)
            print(f"  [{name}] stopping at step {step}: time budget {max_seconds}s", flush=True)
            break
    model.eval()
    return time.time() - t0


# --------------------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------------------


def run_with_hooks(model, ids, capture, patches=()):
    """patches: [(hook_name, fn(output) -> new output)]; captures hook outputs after patching."""
    modules = model.hook_points()
    store, handles = {}, []
    try:
        for name, fn in patches:
            handles.append(modules[name].register_forward_hook(lambda m, i, o, fn=fn: fn(o)))
        def cap(m, i, o, name):
            o = o.detach()
            if o.shape[0] == 1 and ids.shape[0] > 1:  # e.g. GPT-2's [1,T,D] position embeddings (broadcast)
                o = o.expand(ids.shape[0], *o.shape[1:])
            store[name] = o.clone()

        for name in capture:
            handles.append(modules[name].register_forward_hook(lambda m, i, o, name=name: cap(m, i, o, name)))
        with torch.no_grad():
            logits = model(ids)
    finally:
        for h in handles:
            h.remove()
    store["logits"] = logits.detach().clone()
    return store


def hook_names(model):
    """Hook names in canonical order (those the model has)."""
    hp = model.hook_points()
    n_layers = model.cfg["n_layers"]
    order = ["hook_embed", "hook_pos_embed"]
    for L in range(n_layers):
        order += [f"blocks.{L}.hook_resid_pre", f"blocks.{L}.attn.hook_pattern", f"blocks.{L}.attn.hook_z",
                  f"blocks.{L}.hook_attn_out", f"blocks.{L}.hook_mlp_out", f"blocks.{L}.hook_resid_post"]
    order.append("ln_final.hook_normalized")
    missing = [n for n in order if n not in hp and n != "hook_pos_embed"]
    assert not missing, f"model lacks hook points {missing}"
    return [n for n in order if n in hp]


def _parse_node(node):
    if node.startswith("a"):
        layer, head = node[1:].split(".h")
        return ("head", int(layer), int(head))
    return ("mlp", int(node[1:]), None)


def make_patches(nodes, kind, clean):
    patches = []
    for node in nodes:
        typ, L, H = _parse_node(node)
        if typ == "head":
            name = f"blocks.{L}.attn.hook_z"
            value = clean[name][:, :, H, :].mean(dim=(0, 1)) if kind == "mean" else None

            def fn(o, H=H, value=value):
                o = o.clone()
                o[:, :, H, :] = 0.0 if value is None else value
                return o
        else:
            name = f"blocks.{L}.hook_mlp_out"
            value = clean[name].mean(dim=(0, 1)) if kind == "mean" else None

            def fn(o, value=value):
                return torch.zeros_like(o) if value is None else value.expand_as(o).clone()
        patches.append((name, fn))
    return patches


def write_resample_reference(entry, model, out_dir, ids, clean, node_sets):
    """<name>.resample.json: resample ablation of every head and MLP alone, prompt p's corrupted prompt being
    prompt (p + 1) mod B (all prompts have one length): the node's output replaced, at every position, by its
    value in the corrupted prompt's clean run. Last-position logits only (small; the engine's resample path is
    the mean path's with other values, which the main reference checks at every hook)."""
    B = ids.shape[0]
    roll = [(p + 1) % B for p in range(B)]
    out = []
    for nodes in node_sets:
        patches = []
        for node in nodes:
            typ, L, H = _parse_node(node)
            name = f"blocks.{L}.attn.hook_z" if typ == "head" else f"blocks.{L}.hook_mlp_out"
            src = clean[name][roll]

            def fn(o, H=H, src=src, typ=typ):
                o = o.clone()
                if typ == "head":
                    o[:, :, H, :] = src[:, :, H, :]
                else:
                    o[:] = src
                return o
            patches.append((name, fn))
        res = run_with_hooks(model, ids, [], patches)
        out.append({"nodes": nodes, "kind": "resample", "logits": enc_tensor(res["logits"][:, -1:, :])})
    with open(os.path.join(out_dir, f"{entry.name}.resample.json"), "w") as f:
        json.dump({"corrupted": roll, "notes": "corrupted[p] is the index of prompt p's corrupted prompt; logits at the "
                   "last position [B, 1, V]", "ablations": out}, f)
        f.write("\n")


def edge_list(n_layers, n_heads, parallel):
    """Every edge in CircuitLens' order (core/ids.ts allEdges; EAP-IG's)."""
    out, up = [], ["input"]
    for L in range(n_layers):
        for H in range(n_heads):
            for u in up:
                for x in "qkv":
                    out.append((u, f"a{L}.h{H}<{x}>"))
        heads = [f"a{L}.h{H}" for H in range(n_heads)]
        for u in (up if parallel else up + heads):
            out.append((u, f"m{L}"))
        up += heads + [f"m{L}"]
    for u in up:
        out.append((u, "logits"))
    return out


def write_edge_reference(entry, model, out_dir, ids, clean):
    """<name>.edges.json: path patching of single edges under zero ablation, written out with hooks, independent
    of CircuitLens' graph rewriting. Edge u -> v replaces what flows from u into v's input only:
      delta = (ablated_u - actual_u) = -out_u in the residual stream ([B, T, D]; input: the embedding stream,
              MLP: its output, head h: z_h W_O[h], taken as attn_out with only head h kept minus attn_out with none);
      v = logits: the last resid_post + delta, read by the final norm;
      v = m_l:    the MLP run on its stream + delta (resid_mid: attn_out_l + delta; parallel blocks: resid_pre_l +
                  delta) in a side run, its output put in place of m_l's in the main run;
      v = a_l.h<x>: the layer run on resid_pre_l + delta in a side run, head h's x (query, key or value, after
                  rotary and repeat_kv) put in place of head h's in the main run.
    A deterministic sample of the edges (every third, and every edge into the logits), last-position logits."""
    hp = model.hook_points()
    mods = dict(model.named_modules())
    qkv = {x: [m for n, m in mods.items() if n.endswith(f".hook_{x}")] for x in "qkv"}
    cfg = model.cfg
    Ln, Hn = cfg["n_layers"], cfg["n_heads"]
    if any(len(v) != Ln for v in qkv.values()):
        return None
    parallel = bool(entry.parallel)

    def run(patches, capture=(), grad=False):
        handles, store = [], {}
        try:
            for mod, fn in patches:
                handles.append(mod.register_forward_hook(lambda m, i, o, fn=fn: fn(o)))
            for name, mod in capture:
                handles.append(mod.register_forward_hook(lambda m, i, o, name=name: store.__setitem__(name, o if grad else o.detach().clone())))
            with torch.set_grad_enabled(grad):
                logits = model(ids)
        finally:
            for h in handles:
                h.remove()
        return logits, store

    # EAP's metric: L = sum over prompts of logit[answer] - logit[foil] at the last position (the grads reference's).
    last = clean["logits"][:, -1]
    answers = last.argmax(-1)
    foils = torch.where(answers == ids[:, 0], ids[:, 1], ids[:, 0])
    rows = torch.arange(ids.shape[0])

    def patched(src_delta, dst, w, grad):
        """Logits with `w * delta` flowing along the edge into `dst` (w = 1: the edge ablated)."""
        d = w * src_delta
        if dst == "logits":
            return run([(hp[f"blocks.{Ln - 1}.hook_resid_post"], lambda o: o + d)], grad=grad)[0]
        if dst.startswith("m"):
            L = int(dst[1:])
            side = hp[f"blocks.{L}.hook_resid_pre"] if parallel else hp[f"blocks.{L}.hook_attn_out"]
            _, got = run([(side, lambda o: o + d)], [("m", hp[f"blocks.{L}.hook_mlp_out"])], grad=grad)
            return run([(hp[f"blocks.{L}.hook_mlp_out"], lambda o: got["m"])], grad=grad)[0]
        node, x = dst[:-3], dst[-2]
        _, L, H = _parse_node(node)
        mod = qkv[x][L]
        _, got = run([(hp[f"blocks.{L}.hook_resid_pre"], lambda o: o + d)], [("x", mod)], grad=grad)

        def put(o, H=H):
            o = o.clone()
            o[:, H] = got["x"][:, H]
            return o
        return run([(mod, put)], grad=grad)[0]

    def out_of(node):
        if node == "input":
            return clean["blocks.0.hook_resid_pre"]
        typ, L, H = _parse_node(node)
        if typ == "mlp":
            return clean[f"blocks.{L}.hook_mlp_out"]
        attn = hp[f"blocks.{L}.hook_attn_out"]

        def keep(o, H=H):
            o = o.clone()
            mask = torch.zeros(o.shape[2], dtype=o.dtype)
            if H is not None:
                mask[H] = 1
            return o * mask[None, None, :, None]
        _, with_h = run([(hp[f"blocks.{L}.attn.hook_z"], keep)], [("a", attn)])
        _, none = run([(hp[f"blocks.{L}.attn.hook_z"], lambda o: torch.zeros_like(o))], [("a", attn)])
        return with_h["a"] - none["a"]

    edges = edge_list(Ln, Hn, parallel)
    sample = [e for i, e in enumerate(edges) if i % 3 == 0 or e[1] == "logits"]
    outs = {}
    results = []
    for src, dst in sample:
        if src not in outs:
            outs[src] = out_of(src)
        delta = -outs[src]
        logits = patched(delta, dst, 1.0, False)
        # EAP: -dL/dw at w = 0 by autograd through the same written-out path patching, averaged over prompts.
        w = torch.zeros((), requires_grad=True)
        lg = patched(delta, dst, w, True)[:, -1]
        (lg[rows, answers] - lg[rows, foils]).sum().backward()
        eap = -float(w.grad) / ids.shape[0]
        results.append({"edge": f"{src}->{dst}", "logits": enc_tensor(logits[:, -1:, :]), "eap": eap})
    with open(os.path.join(out_dir, f"{entry.name}.edges.json"), "w") as f:
        json.dump({"ablation": "zero", "edges": len(edges), "notes": "path patching of single edges (zero ablation), "
                   "last-position logits [B, 1, V]; eap = -dL/dw at w = 0 averaged over prompts, L = logit[answer] - "
                   "logit[foil] at the last position (the grads reference's answers and foils); see scripts/zoo/common.py "
                   "write_edge_reference", "sample": results}, f)
        f.write("\n")
    return len(results)


CONFIG_KEYS = ("n_layers", "n_heads", "n_kv_heads", "d_model", "d_head", "d_mlp", "vocab", "n_ctx", "arch")


def write_reference(entry, model, out_dir, model_file, accuracy=None):
    """Writes <name>.json (clean + ablations) and <name>.grads.json; returns (ref_file, grads_file)."""
    cfg = model.cfg
    prompts = make_prompts(cfg["vocab"])
    ids = torch.tensor([p["ids"] for p in prompts], dtype=torch.int64)
    names = hook_names(model)
    clean = run_with_hooks(model, ids, names)
    last = cfg["n_layers"] - 1
    abl_hooks = [f"blocks.{last}.attn.hook_z", f"blocks.{last}.hook_resid_post"]
    node_sets = [[f"a{L}.h{H}"] for L in range(cfg["n_layers"]) for H in range(cfg["n_heads"])]
    node_sets += [[f"m{L}"] for L in range(cfg["n_layers"])]
    node_sets.append(["a0.h0", f"a{last}.h{min(2, cfg['n_heads'] - 1)}", "m0"])
    ablations = []
    for nodes in node_sets:
        for kind in ("zero", "mean"):
            out = run_with_hooks(model, ids, abl_hooks, make_patches(nodes, kind, clean))
            # Ablated logits at the last position only (what metrics read; the hooks cover every position):
            # the full [B, T, V] logits of every ablation made the references ten times larger.
            ablations.append({"nodes": nodes, "kind": kind, "logits": enc_tensor(out["logits"][:, -1:, :]),
                              "hooks": {h: enc_tensor(out[h]) for h in abl_hooks}})
    ref = {
        "model": model_file,
        "config": {k: cfg[k] for k in CONFIG_KEYS},
        "training": {"accuracy": None if accuracy is None else round(accuracy, 4)},
        "notes": "float32 little-endian base64 tensors, row-major, batch first; ablation hooks are recorded after "
                 "the ablation; ablation logits are at the last position only [B, 1, V]; mean = mean of the clean "
                 "activation over all prompts and positions.",
        "prompts": prompts,
        "clean": {h: enc_tensor(clean[h]) for h in names + ["logits"]},
        "ablations": ablations,
    }
    ref_file = f"{entry.name}.json"
    with open(os.path.join(out_dir, ref_file), "w") as f:
        json.dump(ref, f)
        f.write("\n")
    write_resample_reference(entry, model, out_dir, ids, clean, node_sets[:-1])
    write_edge_reference(entry, model, out_dir, ids, clean)

    # gradients
    hp = model.hook_points()
    ghooks = []
    for L in range(cfg["n_layers"]):
        ghooks += [f"blocks.{L}.hook_resid_pre", f"blocks.{L}.attn.hook_z", f"blocks.{L}.hook_mlp_out"]
    store, handles = {}, []

    def capture(name):
        def fn(_m, _i, o):
            o.retain_grad()
            store[name] = o
        return fn

    try:
        for h in ghooks:
            handles.append(hp[h].register_forward_hook(capture(h)))
        logits = model(ids)
    finally:
        for h in handles:
            h.remove()
    lastl = logits[:, -1, :]
    answers = lastl.argmax(-1)
    foils = torch.where(answers == ids[:, 0], ids[:, 1], ids[:, 0])
    rows = torch.arange(ids.shape[0])
    loss = (lastl[rows, answers] - lastl[rows, foils]).sum()
    loss.backward()
    model.zero_grad(set_to_none=True)
    gdiff = (logits.detach() - clean["logits"]).abs().max().item()
    assert gdiff <= 1e-5, gdiff
    grads = {
        "model": model_file,
        "notes": "dL/d(hook) from PyTorch autograd, L = sum over prompts of logit[answer] - logit[foil] at the last "
                 "position; answer = PyTorch's argmax there, foil = the prompt's first id (the second where the first "
                 "is the answer). float32 little-endian base64, row-major, batch first; hook_z is [B,T,H,Dh].",
        "metric": "logit_diff",
        "value": loss.item(),
        "prompts": [{"ids": p["ids"], "answer": int(a), "foil": int(fo)} for p, a, fo in zip(prompts, answers, foils)],
        "grads": {h: enc_tensor(store[h].grad) for h in ghooks},
    }
    grads_file = f"{entry.name}.grads.json"
    with open(os.path.join(out_dir, grads_file), "w") as f:
        json.dump(grads, f)
        f.write("\n")
    return ref_file, grads_file, ids, clean["logits"]


# --------------------------------------------------------------------------------------------------------
# Suites
# --------------------------------------------------------------------------------------------------------


def write_suite(entry, model, path, model_ref, n_task=24, n_control=8, seed=31337):
    """Induction suite on ids: task prompts = random ids + a repeat (answer = the next id by induction,
    foil = the prompt's first id or another earlier id); controls = random distinct ids (answer/foil two
    random ids that do not occur in the prompt)."""
    vocab = model.cfg["vocab"]
    gen = torch.Generator().manual_seed(seed)
    lines = [f"# Induction on token ids for the zoo model {entry.name} ({entry.family}); generated by scripts/zoo/make_zoo.py.",
             "# Task prompts: distinct random ids then a repeat of a stretch (answer = the id that followed the current",
             "# one earlier). Controls: distinct random ids with no repeat; answer/foil are ids absent from the prompt.",
             f"name: {entry.name}-induction", f"model: {model_ref}", "metric: logit_diff", "ablation: mean", "prompts:"]
    n_ok = 0
    for i in range(n_task):
        P = 6 + int(torch.randint(0, 7, (1,), generator=gen))
        R = 3 + int(torch.randint(0, P - 3, (1,), generator=gen))  # repeat the first R ids of the prefix
        perm = (torch.rand(vocab - FIRST_ID, generator=gen).argsort() + FIRST_ID).tolist()
        prefix = perm[:P]
        ids = prefix + prefix[:R]
        answer = prefix[R]
        foil = prefix[0] if prefix[0] != answer else prefix[1]
        corrupted = perm[P:P + len(ids)]
        with torch.no_grad():
            pred = model(torch.tensor([ids]))[0, -1].argmax().item()
        n_ok += pred == answer
        lines.append(f"  - ids: {ids}\n    answer: {answer}\n    foil: {foil}\n    corrupted: {corrupted}\n    tags: [task]")
    for i in range(n_control):
        n = 10 + int(torch.randint(0, 6, (1,), generator=gen))
        perm = (torch.rand(vocab - FIRST_ID, generator=gen).argsort() + FIRST_ID).tolist()
        ids = perm[:n]
        answer, foil = perm[n], perm[n + 1]
        corrupted = perm[n + 2:n + 2 + n]
        lines.append(f"  - ids: {ids}\n    answer: {answer}\n    foil: {foil}\n    corrupted: {corrupted}\n    tags: [control]")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return n_ok / n_task


# --------------------------------------------------------------------------------------------------------
# Export and variants
# --------------------------------------------------------------------------------------------------------


def export_onnx(model, path, opset=17, example_ids=None):
    """torch.onnx.export with input_ids -> logits, dynamic batch/seq. Returns the loaded onnx.ModelProto."""
    import onnx

    if example_ids is None:
        example_ids = torch.tensor([make_prompts(model.cfg["vocab"])[0]["ids"]] * 2, dtype=torch.int64)
    model.eval()
    torch.onnx.export(
        model, (example_ids,), path,
        input_names=["input_ids"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
        opset_version=opset, do_constant_folding=True, export_params=True,
    )
    m = onnx.load(path)
    onnx.checker.check_model(m)
    return m


def _set_opset(m, version):
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = version


def convert_to_opset18(src, dst):
    """Opset 14..17 -> 18 by hand (onnx 1.12's version converter stops at 17). Of the ops whose signature
    changed between 14 and 18 only these occur in torch's exports of the zoo models:
      Reduce{L1,L2,LogSum,LogSumExp,Max,Mean,Min,Prod,SumSquare} (18: the `axes` attribute becomes an optional
      int64 input -> moved to a new initializer), Split (18: optional num_outputs attribute; the `split` input
      is unchanged since 13). Changes in 15-17 (Pow/Where bf16, Shape start/end, new LayerNormalization) need
      no rewrite. Ops whose 18 change would matter (Pad, Resize, Scatter*, Col2Im, GroupNormalization,
      CenterCropPad) are refused. onnx 1.12 has no opset-18 schemas, so the result is not run through
      onnx.checker (onnxruntime-node checks it instead)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(src)
    reduce_ops = {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                  "ReduceMin", "ReduceProd", "ReduceSumSquare"}
    unsupported = {"Resize", "ScatterND", "ScatterElements", "Pad", "Col2Im", "GroupNormalization", "CenterCropPad"}
    new_inits = []
    n_moved = 0
    for i, n in enumerate(m.graph.node):
        if n.op_type in unsupported:
            raise SystemExit(f"convert_to_opset18: {n.op_type} not handled")
        if n.op_type in reduce_ops:
            axes = [a for a in n.attribute if a.name == "axes"]
            if axes:
                vals = list(axes[0].ints)
                n.attribute.remove(axes[0])
                name = f"{n.name or n.op_type + str(i)}/axes"
                new_inits.append(numpy_helper.from_array(np.array(vals, dtype=np.int64), name))
                n.input.append(name)
                n_moved += 1
    m.graph.initializer.extend(new_inits)
    _set_opset(m, 18)
    m.ir_version = 8
    onnx.save(m, dst)
    return m, n_moved


def save_external_data(src, dst):
    """Re-save with every initializer in one <dst basename>.data file (size_threshold 0)."""
    import onnx

    m = onnx.load(src)
    data_name = os.path.basename(dst) + ".data"
    data_path = os.path.join(os.path.dirname(dst), data_name)
    if os.path.exists(data_path):
        os.remove(data_path)
    onnx.save(m, dst, save_as_external_data=True, all_tensors_to_one_file=True, location=data_name, size_threshold=0)
    return onnx.load(dst)


def fp16_weights(src, dst):
    """Weights-only fp16: every float32 initializer of >1 element is stored float16 and followed by a
    Cast(to=FLOAT) node producing the original name; compute stays float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(src)
    g = m.graph
    casts, keep = [], []
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT and int(np.prod(t.dims)) > 1:
            arr = numpy_helper.to_array(t).astype(np.float16)
            h = numpy_helper.from_array(arr, t.name + "_fp16")
            keep.append(h)
            casts.append(helper.make_node("Cast", [h.name], [t.name], name=f"/Cast_fp16/{t.name}", to=TensorProto.FLOAT))
        else:
            keep.append(t)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    onnx.checker.check_model(m)
    onnx.save(m, dst)
    return m


def quantize_dynamic_int8(src, dst):
    """Dynamic int8 quantization in the layout of onnxruntime's quantize_dynamic (transformers.js
    model_quantized.onnx): for each MatMul/Gemm whose B is a float initializer (2-D), the weight is stored as
    uint8 with per-tensor scale and zero point; the activation goes through DynamicQuantizeLinear, then
    MatMulInteger(A_q, W_q, a_zp, w_zp) -> Cast(float) -> Mul(a_scale * w_scale) [-> Add bias for Gemm].
    Gemm is expected with transA=0, alpha=beta=1 (transB handled by transposing the stored weight)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(src)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    new_nodes, drop = [], set()
    n_q = 0
    for n in g.node:
        if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits and len(inits[n.input[1]].dims) == 2:
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            if n.op_type == "Gemm" and (attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
                new_nodes.append(n)
                continue
            w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            if attrs.get("transB", 0):
                w = w.T
            lo, hi = min(0.0, float(w.min())), max(0.0, float(w.max()))
            scale = (hi - lo) / 255.0 if hi > lo else 1.0
            zp = int(np.clip(round(-lo / scale), 0, 255))
            wq = np.clip(np.round(w / scale) + zp, 0, 255).astype(np.uint8)
            base = inits[n.input[1]].name
            wq_name, ws_name, wz_name = base + "_quantized", base + "_scale", base + "_zero_point"
            g.initializer.extend([numpy_helper.from_array(wq, wq_name),
                                  numpy_helper.from_array(np.array(scale, dtype=np.float32), ws_name),
                                  numpy_helper.from_array(np.array(zp, dtype=np.uint8), wz_name)])
            drop.add(base)
            a = n.input[0]
            p = n.name or f"q{n_q}"
            aq, asc, azp = f"{a}_quantized_{n_q}", f"{a}_scale_{n_q}", f"{a}_zero_point_{n_q}"
            new_nodes.append(helper.make_node("DynamicQuantizeLinear", [a], [aq, asc, azp], name=f"{p}_QuantizeLinear"))
            mmi = f"{p}_output_quantized"
            new_nodes.append(helper.make_node("MatMulInteger", [aq, wq_name, azp, wz_name], [mmi], name=f"{p}_quant"))
            cast = f"{p}_output_quantized_cast"
            new_nodes.append(helper.make_node("Cast", [mmi], [cast], name=f"{p}_output_quantized_cast", to=TensorProto.FLOAT))
            sc = f"{p}_scales_mul"
            new_nodes.append(helper.make_node("Mul", [asc, ws_name], [sc], name=f"{p}_scales_mul"))
            has_bias = n.op_type == "Gemm" and len(n.input) > 2 and n.input[2]
            out = n.output[0]
            mul_out = f"{p}_output_quantized_mul" if has_bias else out
            new_nodes.append(helper.make_node("Mul", [cast, sc], [mul_out], name=f"{p}_output_scale_mul"))
            if has_bias:
                new_nodes.append(helper.make_node("Add", [mul_out, n.input[2]], [out], name=f"{p}_bias_add"))
            n_q += 1
        else:
            new_nodes.append(n)
    used = {i for nd in new_nodes for i in nd.input}
    keep = [t for t in g.initializer if not (t.name in drop and t.name not in used)]
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.node[:]
    g.node.extend(new_nodes)
    onnx.checker.check_model(m)
    onnx.save(m, dst)
    return m, n_q


# --------------------------------------------------------------------------------------------------------
# onnxruntime (Node) check
# --------------------------------------------------------------------------------------------------------

NODE_RUNNER = r"""
const fs = require('fs');
const ort = require('onnxruntime-node');
(async () => {
  const [input, output] = process.argv.slice(1);
  const jobs = JSON.parse(fs.readFileSync(input, 'utf8'));
  const results = [];
  for (const job of jobs) {
    const session = await ort.InferenceSession.create(job.model);
    const buf = Buffer.from(job.ids.b64, 'base64');
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    const out = await session.run({ input_ids: new ort.Tensor('int64', new BigInt64Array(ab), job.ids.shape) });
    const t = out[session.outputNames[0]];
    results.push({ shape: t.dims, b64: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('base64') });
  }
  fs.writeFileSync(output, JSON.stringify(results));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def run_onnx_many(jobs):
    """jobs: [(model_path, ids LongTensor [B,T])] -> [logits float32 tensor]. Runs onnxruntime-node."""
    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = os.path.join(tmp, "in.json"), os.path.join(tmp, "out.json")
        with open(inp, "w") as f:
            json.dump([{"model": os.path.abspath(p), "ids": {"shape": list(ids.shape), "b64": base64.b64encode(
                ids.contiguous().numpy().astype("<i8").tobytes()).decode("ascii")}} for p, ids in jobs], f)
        subprocess.run(["node", "-e", NODE_RUNNER, inp, outp], cwd=ROOT, check=True)
        with open(outp) as f:
            res = json.load(f)
    return [dec_tensor(r) for r in res]


def run_onnx(path, ids):
    return run_onnx_many([(path, ids)])[0]


def graph_summary(path):
    import onnx

    m = onnx.load(path, load_external_data=False)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    return len(m.graph.node), dict(sorted(ops.items()))


# --------------------------------------------------------------------------------------------------------
# Byte-level BPE tokenizer (Hugging Face tokenizers format)
# --------------------------------------------------------------------------------------------------------


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode map (re-derived: printable latin-1 ranges keep their
    code point, the other bytes are mapped to 256 + n in order)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def train_bytelevel_bpe(text, n_merges):
    """Greedy BPE on the ByteLevel pre-tokenization of `text` (words with a leading space as 'Ġ').
    Returns (vocab dict token->id, merges list 'a b'). Ids: the 256 byte symbols in the order of
    bytes_to_unicode's printable-first listing (as GPT-2), then merges in order."""
    import re

    b2u = bytes_to_unicode()
    # GPT-2 pre-tokenization pattern (simplified: no \p classes in Python's re; letters/digits/other)
    pat = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")
    words = collections.Counter()
    for piece in pat.findall(text):
        words[tuple(b2u[b] for b in piece.encode("utf-8"))] += 1
    order = sorted(range(256), key=lambda b: (0 if b2u[b] == chr(b) and b >= 33 else 1, ord(b2u[b])))
    vocab = {b2u[b]: i for i, b in enumerate(order)}
    merges = []
    words = dict(words)
    for _ in range(n_merges):
        pairs = pair_counts(words)
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        tok = best[0] + best[1]
        if tok not in vocab:
            vocab[tok] = len(vocab)
        words = apply_merge(words, best)
    return vocab, [f"{a} {b}" for a, b in merges]


def pair_counts(words):
    """How often each adjacent pair of symbols occurs, over word counts ({tuple of symbols: count})."""
    pairs = collections.Counter()
    for w, c in words.items():
        for a, b in zip(w, w[1:]):
            pairs[(a, b)] += c
    return pairs


def apply_merge(words, pair):
    """Word counts ({tuple of symbols: count}) with every adjacent `pair` fused into one symbol (a BPE merge)."""
    tok = pair[0] + pair[1]
    new = {}
    for w, c in words.items():
        out, i = [], 0
        while i < len(w):
            if i + 1 < len(w) and (w[i], w[i + 1]) == pair:
                out.append(tok)
                i += 2
            else:
                out.append(w[i])
                i += 1
        new[tuple(out)] = new.get(tuple(out), 0) + c
    return new


def bytelevel_tokenizer_json(text, n_merges, special="<|endoftext|>"):
    vocab, merges = train_bytelevel_bpe(text, n_merges)
    vocab[special] = len(vocab)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": vocab[special], "content": special, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": True, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges},
    }
