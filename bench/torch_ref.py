#!/usr/bin/python3
"""PyTorch eager reference for the CircuitLens benchmarks (bench/run.js drives it).

Run with Debian's interpreter (torch 1.13, onnx 1.12). The models are the very modules the demo models were
trained with (scripts/train_demo_models.py: GPT2Model / LlamaModel with TransformerLens-style HookPoints, i.e.
nn.Identity modules hooked with register_forward_hook), loaded with the same weights the ONNX file holds:

  * `--weights onnx`: read from the .onnx initializers (the demo models: trained, no state dict kept);
    MatMul weights are found by the exporter's node names (/blocks.0/attn/qkv/MatMul -> blocks.0.attn.qkv).
  * `--weights pt`: the state dict scripts/make_bench_model.py saved next to the .onnx (bench/models/).

Two modes:

  torch_ref.py serve       JSON-lines server on stdin/stdout: {"cmd": ...} -> {"ok": true, ...}; every timing
                           is measured here (time.perf_counter around the computation only), so the Node side
                           can alternate CircuitLens and PyTorch runs in one process pair.
  torch_ref.py memory ...  one process: load, then trace every hook once (batch 1), report RSS (bench 6).

Nothing here is timed against a target; bench/run.js only reports.
"""

import argparse
import base64
import json
import math
import os
import resource
import sys
import threading
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no scripts/__pycache__ from the import below
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import train_demo_models as tdm  # noqa: E402  (model classes and hook points; importing trains nothing)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def config_from_onnx(path):
    """Config of a demo model (examples/<name>.onnx): the table the training script built it from."""
    name = os.path.basename(path)[: -len(".onnx")]
    if name not in tdm.CONFIGS:
        raise SystemExit(f"{path}: not a demo model and no state dict (.pt) beside it")
    return dict(tdm.CONFIGS[name])


def load_model(path, weights, threads):
    torch.set_num_threads(threads)
    if weights == "pt":
        with open(path[: -len(".onnx")] + ".json") as f:
            cfg = json.load(f)["config"]
        model = tdm.build(cfg)
        model.load_state_dict(torch.load(path[: -len(".onnx")] + ".pt"))
    else:
        cfg = config_from_onnx(path)
        model = tdm.build(cfg)
        load_onnx_weights(model, path)
    model.eval()
    return model, cfg


def load_onnx_weights(model, path):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {i.name: i for i in m.graph.initializer}
    state = model.state_dict()
    new = {}
    for n in m.graph.node:
        if n.op_type != "MatMul" or len(n.input) < 2 or n.input[1] not in inits:
            continue
        module = n.name.strip("/").rsplit("/", 1)[0].replace("/", ".") if n.name.count("/") > 1 else ""
        w = torch.from_numpy(numpy_helper.to_array(inits[n.input[1]]).copy()).t().contiguous()
        if module == "":  # the tied unembedding (F.linear(x, embed.weight)): checked below, not loaded
            new["__unembed__"] = w
            continue
        new[f"{module}.weight"] = w
    for k in state:
        if k in inits:
            new[k] = torch.from_numpy(numpy_helper.to_array(inits[k]).copy())
    tied = new.pop("__unembed__", None)
    missing = [k for k in state if k not in new]
    if missing:
        raise SystemExit(f"{path}: could not find weights for {missing}")
    model.load_state_dict(new)
    if tied is not None and not torch.equal(tied, model.embed.weight):
        raise SystemExit(f"{path}: the unembedding is not the transposed embedding (tied weights expected)")


def hook_points(model):
    return {name: mod for name, mod in model.named_modules() if isinstance(mod, tdm.HookPoint)}


# --------------------------------------------------------------------------
# Benchmarks (each returns milliseconds of the computation alone)
# --------------------------------------------------------------------------


def forward(model, ids, mode):
    """logits: model(tokens) as TransformerLens' model(tokens); cache: run_with_cache (every hook, detached);
    last: model(tokens) with the final norm's output cut to the last position, so only it is unembedded."""
    handles = []
    cache = {}
    if mode == "last":
        handles.append(model.ln_final.register_forward_hook(lambda m, i, o: o[:, -1:]))
    if mode == "cache":
        for name, mod in hook_points(model).items():
            handles.append(mod.register_forward_hook(lambda m, i, o, name=name: cache.__setitem__(name, o.detach())))
    try:
        t0 = time.perf_counter()
        with torch.no_grad():
            logits = model(ids)
        ms = (time.perf_counter() - t0) * 1e3
    finally:
        for h in handles:
            h.remove()
    return ms, logits, cache


def sweep(model, cfg, prompts, heads=None):
    """All-heads zero-ablation sweep, one forward per head, as people write it with hooks (TransformerLens
    style: a hook on blocks.L.attn.hook_z that zeroes head H in place). Prompts are batched (one length).
    `heads`: [[L, H], ...] to sweep a subset (default: every head)."""
    tokens = torch.tensor([p["ids"] for p in prompts], dtype=torch.int64)
    ans = torch.tensor([p["answer"] for p in prompts])
    foil = torch.tensor([p["foil"] for p in prompts])
    rows = torch.arange(len(prompts))

    def logit_diff(logits):
        last = logits[:, -1]
        return (last[rows, ans] - last[rows, foil]).mean().item()

    t0 = time.perf_counter()
    scores = {}
    with torch.no_grad():
        clean = logit_diff(model(tokens))
        for L, H in heads or [(L, H) for L in range(cfg["n_layers"]) for H in range(cfg["n_heads"])]:

            def ablate(module, inp, z, H=H):
                z[:, :, H, :] = 0.0
                return z

            handle = model.blocks[L].attn.hook_z.register_forward_hook(ablate)
            try:
                scores[f"a{L}.h{H}"] = clean - logit_diff(model(tokens))
            finally:
                handle.remove()
    return (time.perf_counter() - t0) * 1e3, clean, scores


def eap(model, cfg, prompts):
    """EAP node scores (zero ablation, logit difference), hook-based as the EAP libraries do: forward hooks keep
    hook_z / hook_mlp_out and register tensor hooks for their gradients; one backward. Parameters are frozen
    and the embedding output is the only leaf that requires grad, so no weight gradients are computed."""
    tokens = torch.tensor([p["ids"] for p in prompts], dtype=torch.int64)
    ans = torch.tensor([p["answer"] for p in prompts])
    foil = torch.tensor([p["foil"] for p in prompts])
    rows = torch.arange(len(prompts))
    for p in model.parameters():
        p.requires_grad_(False)
    acts, grads, handles = {}, {}, []
    points = hook_points(model)

    def keep(name):
        def fwd(m, i, o):
            acts[name] = o.detach()
            o.register_hook(lambda g: grads.__setitem__(name, g))

        return fwd

    handles.append(points["hook_embed"].register_forward_hook(lambda m, i, o: o.detach().requires_grad_(True)))
    for L in range(cfg["n_layers"]):
        for name in (f"blocks.{L}.attn.hook_z", f"blocks.{L}.hook_mlp_out"):
            handles.append(points[name].register_forward_hook(keep(name)))
    try:
        t0 = time.perf_counter()
        with torch.enable_grad():
            last = model(tokens)[:, -1]
            metric = (last[rows, ans] - last[rows, foil]).mean()
            metric.backward()
        scores = {}
        for L in range(cfg["n_layers"]):
            z, gz = acts[f"blocks.{L}.attn.hook_z"], grads[f"blocks.{L}.attn.hook_z"]  # [B,T,H,Dh]
            per_head = (z * gz).sum(dim=(0, 1, 3))  # -(0 - z)·g summed over prompts and positions
            for H in range(cfg["n_heads"]):
                scores[f"a{L}.h{H}"] = per_head[H].item()
            m, gm = acts[f"blocks.{L}.hook_mlp_out"], grads[f"blocks.{L}.hook_mlp_out"]
            scores[f"m{L}"] = (m * gm).sum().item()
        ms = (time.perf_counter() - t0) * 1e3
    finally:
        for h in handles:
            h.remove()
    return ms, scores


def edge_eap(model, cfg, prompts):
    """EAP over every edge (zero ablation, logit difference), the way the hook-based EAP libraries do it with
    TransformerLens' split q/k/v inputs (use_split_qkv_input, use_attn_result, hook_mlp_in): as the forward runs,
    each upstream node's (ablated - actual) output goes into one [B, T, N, D] buffer; every destination reads
    its own copy of the residual stream (a head's q, k and v inputs: an expanded [B, T, 3, H, D] copy through
    the per-head norm; the MLP's and the logits' a clone), and a tensor hook on it contracts its gradient with the
    buffer's upstream entries during the one backward pass. GPT-2 architecture (the edge bench's models).
    Returns the scores in edge order (scripts/edge_references.py all_edges; core/onnx/edge-layout.ts edgeLayout)."""
    import edge_references as er  # scripts/ is on sys.path

    if cfg["arch"] != "gpt2":
        raise ValueError("edge_eap: GPT-2 architecture only")
    Ly, H, Dh, D = cfg["n_layers"], cfg["n_heads"], cfg["d_head"], cfg["d_model"]
    tokens = torch.tensor([p["ids"] for p in prompts], dtype=torch.int64)
    ans = torch.tensor([p["answer"] for p in prompts])
    foil = torch.tensor([p["foil"] for p in prompts])
    B, T = tokens.shape
    rows = torch.arange(B)
    N = 1 + Ly * (H + 1)
    for p in model.parameters():
        p.requires_grad_(False)
    t0 = time.perf_counter()
    diffs = torch.zeros(B, T, N, D)
    s_qkv = [None] * Ly  # [n, 3, H] per layer
    s_mlp = [None] * Ly  # [n + H]
    s_logits = [None]

    def on_grad(store, i, n, eq):
        def hook(g):
            store[i] = torch.einsum(eq, diffs[:, :, :n], g)

        return hook

    with torch.enable_grad():
        mask = model.mask[:T, :T]
        x0 = (model.embed(tokens) + model.pos_embed[:T].unsqueeze(0)).requires_grad_(True)
        diffs[:, :, 0] = -x0.detach()
        resid = x0
        for l, blk in enumerate(model.blocks):
            n = 1 + l * (H + 1)
            att = blk.attn
            qkv_in = resid[:, :, None, None, :].expand(B, T, 3, H, D)
            qkv_in.register_hook(on_grad(s_qkv, l, n, "btnd,btxhd->nxh"))
            W = att.qkv.weight.view(3, H, Dh, D)
            qkv = torch.einsum("btxhd,xhkd->btxhk", blk.ln1(qkv_in), W) + att.qkv.bias.view(3, H, Dh)
            q, k, v = qkv.unbind(2)  # [B, T, H, Dh]
            scores = torch.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(Dh)
            pattern = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
            z = torch.einsum("bhqs,bshk->bqhk", pattern, v)
            result = torch.einsum("bthk,dhk->bthd", z, att.out.weight.view(D, H, Dh))  # per-head outputs
            diffs[:, :, n : n + H] = -result.detach()
            resid = resid + result.sum(2) + att.out.bias
            mlp_in = resid.clone()
            mlp_in.register_hook(on_grad(s_mlp, l, n + H, "btnd,btd->n"))
            out = blk.mlp_out(blk.act(blk.mlp_in(blk.ln2(mlp_in))))
            diffs[:, :, n + H] = -out.detach()
            resid = resid + out
        f_in = resid.clone()
        f_in.register_hook(on_grad(s_logits, 0, N, "btnd,btd->n"))
        last = F.linear(model.ln_final(f_in[:, -1]), model.embed.weight)
        metric = (last[rows, ans] - last[rows, foil]).mean()
        metric.backward()
    # score = -(d metric / d w) = -<ablated - actual, grad>, averaged over prompts (the mean above)
    flat = []
    for l in range(Ly):
        n = 1 + l * (H + 1)
        sq = -s_qkv[l]  # [n, 3, H]
        for h in range(H):
            for u in range(n):
                flat.extend(sq[u, :, h].tolist())  # q, k, v
        flat.extend((-s_mlp[l]).tolist())
    flat.extend((-s_logits[0]).tolist())
    ms = (time.perf_counter() - t0) * 1e3
    edges = er.all_edges(Ly, H)
    assert len(edges) == len(flat)
    return ms, flat


def gemm(M, K, N, reps, threads):
    torch.set_num_threads(threads)
    a = torch.randn(M, K)
    b = torch.randn(K, N)
    out = torch.empty(M, N)
    torch.matmul(a, b, out=out)  # warm-up
    ms = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def b64(t):
    return base64.b64encode(t.detach().contiguous().to(torch.float32).numpy().astype("<f4").tobytes()).decode("ascii")


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


def serve():
    models = {}
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        try:
            res = handle(req, models)
            res["ok"] = True
        except Exception as e:  # reported to the Node side, which prints it
            res = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(res) + "\n")
        out.flush()
        if req.get("cmd") == "quit":
            break


def handle(req, models):
    cmd = req["cmd"]
    if cmd == "load":
        t0 = time.perf_counter()
        model, cfg = load_model(req["path"], req["weights"], req.get("threads", 2))
        models[req["key"]] = (model, cfg)
        return {"ms": (time.perf_counter() - t0) * 1e3, "threads": torch.get_num_threads(), "torch": torch.__version__, "config": cfg}
    if cmd == "unload":
        models.pop(req["key"], None)
        return {}
    if cmd == "forward":
        model, _ = models[req["key"]]
        ids = torch.tensor(req["ids"], dtype=torch.int64)
        ms, logits, cache = forward(model, ids, req.get("mode", "logits"))
        res = {"ms": ms, "hooks": len(cache)}
        if req.get("returnLast"):
            res["last"] = b64(logits[:, -1])
        del logits, cache
        return res
    if cmd == "sweep":
        model, cfg = models[req["key"]]
        ms, clean, scores = sweep(model, cfg, req["prompts"], req.get("heads"))
        return {"ms": ms, "clean": clean, "scores": scores}
    if cmd == "eap":
        model, cfg = models[req["key"]]
        ms, scores = eap(model, cfg, req["prompts"])
        return {"ms": ms, "scores": scores}
    if cmd == "edge_eap":
        model, cfg = models[req["key"]]
        ms, scores = edge_eap(model, cfg, req["prompts"])
        return {"ms": ms, "scores": scores}
    if cmd == "gemm":
        return {"ms": gemm(req["M"], req["K"], req["N"], req.get("reps", 5), req.get("threads", 2)), "threads": torch.get_num_threads()}
    if cmd == "quit":
        return {}
    raise ValueError(f"unknown command {cmd}")


# --------------------------------------------------------------------------
# Memory (bench 6): its own process
# --------------------------------------------------------------------------


def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class Sampler:
    """Samples this process's RSS every few milliseconds (torch releases the GIL inside its kernels)."""

    def __init__(self, every_s=0.002):
        self.peak = rss_kb()
        self.every = every_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_kb())
            time.sleep(self.every)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss_kb())


def memory(args):
    import gc

    start = rss_kb()
    model, cfg = load_model(args.model, args.weights, args.threads)
    for _ in range(3):
        gc.collect()
        time.sleep(0.3)
    after_load = rss_kb()
    peak_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg["vocab"], (1, args.tokens), generator=gen)
    with Sampler() as s:
        ms, logits, cache = forward(model, ids, "cache")
        held = rss_kb()
    n_bytes = sum(t.numel() * t.element_size() for t in cache.values()) + logits.numel() * logits.element_size()
    print(json.dumps({
        "rssStartKb": start, "rssAfterLoadKb": after_load, "peakDuringLoadKb": peak_load, "peakDuringTraceKb": s.peak,
        "rssHoldingResultsKb": held, "maxRssKb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "hooks": len(cache), "resultBytes": n_bytes, "ms": ms, "threads": torch.get_num_threads(),
    }))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    sub.add_parser("serve")
    mem = sub.add_parser("memory")
    mem.add_argument("--model", required=True)
    mem.add_argument("--weights", choices=["onnx", "pt"], required=True)
    mem.add_argument("--tokens", type=int, default=128)
    mem.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.mode == "serve":
        serve()
    else:
        memory(args)


if __name__ == "__main__":
    main()
