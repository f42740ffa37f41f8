#!/usr/bin/python3
"""PyTorch references for CircuitLens' edge-level ablation and edge attribution (core/onnx/edges.ts).

Run with Debian's interpreter (torch 1.13, onnx 1.12):

    /usr/bin/python3 scripts/edge_references.py

An independent, explicit implementation of path patching on the demo models (weights loaded from the committed
.onnx files, as in scripts/gradient_references.py): the forward pass is written out per head, and every
destination reads its own copy of the residual stream, as TransformerLens does with split q/k/v inputs:

    input_v = resid + sum_u w[u->v] * (ablated_u - out_u)

where out_u is node u's actual output in this run (input: token + position embeddings; head: z_h @ W_O[h],
without the output bias; MLP: its output), ablated_u its ablated value (0 for zero ablation; the mean over the
prompts and positions of its clean output for mean ablation) and w[u->v] the edge's weight (1: ablated).
Heads read q, k and v inputs separately; in grouped-query attention the key/value input of query head h goes
through its own key/value head's weights.

Writes examples/references/<model>.edges.json: for the 4 reference prompts, the last-position logits under a
list of edge ablations, and dL/dw for every edge at w = 0 (zero ablation), per prompt, with
L = logit[answer] - logit[foil] (the prompts, answers and foils of <model>.grads.json).
"""

import importlib.util
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

torch.set_num_threads(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
REFERENCES = os.path.join(EXAMPLES, "references")


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def all_edges(L, H):
    """Every edge, in the order of core/ids.ts allEdges (and core/onnx/edge-layout.ts edgeLayout)."""
    out, up = [], ["input"]
    for l in range(L):
        for h in range(H):
            for u in up:
                for x in "qkv":
                    out.append((u, f"a{l}.h{h}<{x}>"))
        heads = [f"a{l}.h{h}" for h in range(H)]
        for u in up + heads:
            out.append((u, f"m{l}"))
        up += heads + [f"m{l}"]
    for u in up:
        out.append((u, "logits"))
    return out


def edge_forward(model, cfg, ids, w, edge_index, ablated):
    """Last-position logits [B, V] and every node's output, with edge weights w [E] (a tensor)."""
    arch, H, KV, Dh, D = cfg["arch"], cfg["n_heads"], cfg["n_kv_heads"], cfg["d_head"], cfg["d_model"]
    B, T = ids.shape
    mask = model.mask[:T, :T]
    x0 = model.embed(ids)
    if arch == "gpt2":
        x0 = x0 + model.pos_embed[:T].unsqueeze(0)
    else:
        cos, sin = model.rope_cos[:T], model.rope_sin[:T]
    outs = {"input": x0}
    resid = x0

    def dest_input(dst, upstream, resid):
        inp = resid
        for u in upstream:
            e = edge_index[(u, dst)]
            inp = inp + w[e] * (ablated[u] - outs[u])
        return inp

    for l, blk in enumerate(model.blocks):
        up = list(outs.keys())
        att = blk.attn
        results = []
        for h in range(H):
            q_in, k_in, v_in = (dest_input(f"a{l}.h{h}<{x}>", up, resid) for x in "qkv")
            if arch == "gpt2":
                Wq = att.qkv.weight
                bq = att.qkv.bias
                sl = lambda part: slice(part * H * Dh + h * Dh, part * H * Dh + (h + 1) * Dh)
                q = F.linear(blk.ln1(q_in), Wq[sl(0)], bq[sl(0)])
                k = F.linear(blk.ln1(k_in), Wq[sl(1)], bq[sl(1)])
                v = F.linear(blk.ln1(v_in), Wq[sl(2)], bq[sl(2)])
            else:
                g = h // (H // KV)
                q = F.linear(blk.ln1(q_in), att.q_proj.weight[h * Dh:(h + 1) * Dh])
                k = F.linear(blk.ln1(k_in), att.k_proj.weight[g * Dh:(g + 1) * Dh])
                v = F.linear(blk.ln1(v_in), att.v_proj.weight[g * Dh:(g + 1) * Dh])
                rot = load_rotate_half
                q = q * cos + rot(q) * sin
                k = k * cos + rot(k) * sin
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(Dh)
            scores = scores.masked_fill(mask, float("-inf"))
            z = torch.softmax(scores, dim=-1) @ v  # [B, T, Dh]
            Wo = att.out.weight if arch == "gpt2" else att.o_proj.weight  # [D, H*Dh]
            results.append(z @ Wo[:, h * Dh:(h + 1) * Dh].t())
        attn_out = sum(results)
        if arch == "gpt2":
            attn_out = attn_out + att.out.bias
        for h in range(H):
            outs[f"a{l}.h{h}"] = results[h]
        resid = resid + attn_out
        m_in = dest_input(f"m{l}", up + [f"a{l}.h{h}" for h in range(H)], resid)
        hn = blk.ln2(m_in)
        if arch == "gpt2":
            mlp = blk.mlp_out(blk.act(blk.mlp_in(hn)))
        else:
            mlp = blk.down_proj(F.silu(blk.gate_proj(hn)) * blk.up_proj(hn))
        outs[f"m{l}"] = mlp
        resid = resid + mlp
    f_in = dest_input("logits", list(outs.keys()), resid)
    y = model.ln_final(f_in)
    logits = F.linear(y, model.embed.weight) if arch == "gpt2" else model.lm_head(y)
    return logits[:, -1, :], outs


load_rotate_half = None


def main():
    global load_rotate_half
    tdm = load("train_demo_models", "train_demo_models.py")
    grf = load("gradient_references", "gradient_references.py")
    load_rotate_half = tdm.rotate_half
    for name, cfg in tdm.CONFIGS.items():
        with open(os.path.join(REFERENCES, f"{name}.grads.json")) as f:
            gref = json.load(f)
        model = tdm.build(cfg)
        model.load_state_dict(grf.weights_from_onnx(os.path.join(EXAMPLES, f"{name}.onnx"), model))
        model.eval()
        L, H, D = cfg["n_layers"], cfg["n_heads"], cfg["d_model"]
        edges = all_edges(L, H)
        index = {e: i for i, e in enumerate(edges)}
        ids = torch.tensor([p["ids"] for p in gref["prompts"]], dtype=torch.int64)
        answers = [p["answer"] for p in gref["prompts"]]
        foils = [p["foil"] for p in gref["prompts"]]
        E = len(edges)

        with torch.no_grad():
            zero_w = torch.zeros(E)
            nodes = ["input"] + [f"a{l}.h{h}" for l in range(L) for h in range(H)] + [f"m{l}" for l in range(L)]
            zeros = {n: torch.zeros(1, 1, D) for n in nodes}
            clean, outs = edge_forward(model, cfg, ids, zero_w, index, zeros)
            plain = model(ids)[:, -1, :]
            diff = (clean - plain).abs().max().item()
            print(f"{name}: explicit per-head forward vs the module's: max abs diff {diff:.2e}")
            if diff > 1e-4:
                raise SystemExit(f"{name}: the explicit forward does not reproduce the model")
            means = {n: outs[n].mean(dim=(0, 1), keepdim=True) for n in nodes}

            g = torch.Generator().manual_seed(7)
            cases = []
            singles = [("input", "a0.h0<q>"), ("input", "a0.h1<k>"), ("input", "a0.h2<v>"), ("a0.h1", "a1.h2<k>"),
                       ("a0.h3", "a1.h0<v>"), ("a0.h0", "a1.h3<q>"), ("m0", "a1.h1<q>"), ("m0", "a1.h1<k>"), ("a0.h2", "m0"),
                       ("a1.h3", "m1"), ("m1", "logits"), ("input", "logits"), ("a1.h0", "logits"), ("input", "m1")]
            for s in singles:
                cases.append({"edges": [f"{s[0]}->{s[1]}"], "kind": "zero", "weight": 1.0})
            for k in (5, 30, 80):
                pick = torch.randperm(E, generator=g)[:k].tolist()
                for kind in ("zero", "mean"):
                    cases.append({"edges": [f"{edges[i][0]}->{edges[i][1]}" for i in sorted(pick)], "kind": kind, "weight": 1.0})
            pick = torch.randperm(E, generator=g)[:40].tolist()
            cases.append({"edges": [f"{edges[i][0]}->{edges[i][1]}" for i in sorted(pick)], "kind": "mean", "weight": 0.5})
            for c in cases:
                w = torch.zeros(E)
                for e in c["edges"]:
                    s, t = e.split("->")
                    w[index[(s, t)]] = c["weight"]
                logits, _ = edge_forward(model, cfg, ids, w, index, zeros if c["kind"] == "zero" else means)
                c["logits"] = grf.encode(logits)

        # dL_b/dw at w = 0, zero ablation, per prompt.
        grads = []
        for b in range(ids.shape[0]):
            w = torch.zeros(E, requires_grad=True)
            logits, _ = edge_forward(model, cfg, ids[b:b + 1], w, index, zeros)
            loss = logits[0, answers[b]] - logits[0, foils[b]]
            loss.backward()
            grads.append(w.grad.detach().clone())
        grads = torch.stack(grads)  # [B, E]
        out = {
            "model": f"{name}.onnx",
            "notes": __doc__.strip().split("\n\n")[1],
            "edges": [f"{s}->{t}" for s, t in edges],
            "prompts": gref["prompts"],
            "cases": cases,
            "eapGrads": grf.encode(grads),
        }
        path = os.path.join(REFERENCES, f"{name}.edges.json")
        with open(path, "w") as f:
            json.dump(out, f)
            f.write("\n")
        print(f"  {len(cases)} ablation cases, {E} edge gradients (max |dL/dw| {grads.abs().max().item():.3g}); wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
