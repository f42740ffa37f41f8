#!/usr/bin/python3
"""Train the two tiny CircuitLens demo models and write their artefacts.

Run with Debian's interpreter (torch 1.13, onnx 1.12):

    /usr/bin/python3 scripts/train_demo_models.py

Everything is deterministic (fixed seeds, 2 threads) and re-runnable. It writes:

  examples/tokenizer.json                       word-level HF tokenizer (shared)
  examples/induction-gpt2.onnx                  GPT-2 style model, opset 17
  examples/induction-llama.onnx                 Llama style model, opset 17
  test/fixtures/models/induction-gpt2-opset14.onnx   same weights, opset 14
  test/fixtures/models/induction-llama-opset14.onnx  same weights, opset 14
  examples/references/induction-gpt2.json       PyTorch reference activations
  examples/references/induction-llama.json        (clean run + ablations)

Task (induction): a sequence of T=24 tokens starts with a prefix of P distinct
random words (P in [6, 16]); the rest of the sequence repeats the prefix from a
random offset o (periodically, period P - o >= 4).  Every token after the first
repeated one is predictable by induction (find the previous occurrence of the
current token, copy its successor).  Loss and accuracy are taken on those
predictable positions only.

Reference JSON tensors are little-endian float32, base64, row-major, batch dim
first.  Ablation hooks record the activations *after* the ablation was applied.
"""

import base64
import collections
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
REFERENCES = os.path.join(EXAMPLES, "references")
FIXTURES = os.path.join(ROOT, "test", "fixtures", "models")

SEQ_LEN = 24
N_CTX = 64
PROMPT_LEN = 20
N_PROMPTS = 4
HELDOUT = 2000
ACC_TARGET = 0.9

# --------------------------------------------------------------------------
# Vocabulary / tokenizer
# --------------------------------------------------------------------------

NAMES = """
Mary John Alice Bob Sarah James Emma David Lucy Tom Anna Peter Kate Paul Laura
Mark Julia Chris Sophie Daniel Grace Henry Olivia Jack Emily Sam Rachel Ben Clara Max
""".split()

WORDS = """
the a an and or but if then so because when while after before of to in on at
by for with from into over under about between through up down out off near
is was are were be been has had have do did does will would can could should may
might must went came gave took made said saw found got put ran sat stood walked
looked asked told knew thought felt left kept brought bought sent wrote read
home store school park house garden city river forest road door window table
chair book letter bag box car train ship bread apple milk water tea coffee
cake dog cat bird horse fish tree flower sun moon star rain snow wind fire
red blue green black white small big old new happy sad quick slow warm cold
good bad long short early late
one two three four five ten first last next other
he she it they we you I him her them his their our my your this that
there here very too not all some many every each day night morning evening
""".split()

SPECIAL = ["<unk>", "<pad>"]
VOCAB = SPECIAL + NAMES + WORDS
assert len(VOCAB) == len(set(VOCAB)), [w for w, c in collections.Counter(VOCAB).items() if c > 1]
TOKEN_TO_ID = {w: i for i, w in enumerate(VOCAB)}
V = len(VOCAB)
FIRST_CONTENT_ID = len(SPECIAL)  # random words are drawn from ids >= 2


def tokenizer_json():
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": TOKEN_TO_ID[t],
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for t in SPECIAL
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": False},
        "model": {"type": "WordLevel", "vocab": TOKEN_TO_ID, "unk_token": "<unk>"},
    }


def encode(text):
    return [TOKEN_TO_ID.get(w, 0) for w in text.split()]


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def make_batch(batch, gen, seq_len=SEQ_LEN):
    """Returns (tokens [B,T] int64, mask [B,T-1] bool over next-token targets)."""
    n_content = V - FIRST_CONTENT_ID
    perm = torch.rand(batch, n_content, generator=gen).argsort(dim=-1) + FIRST_CONTENT_ID
    P = torch.randint(6, 17, (batch,), generator=gen)  # prefix length 6..16
    # offset o in [0, P-4] so that the period P-o is >= 4
    o = (torch.rand(batch, generator=gen) * (P - 3).float()).floor().long()
    t = torch.arange(seq_len).unsqueeze(0)  # [1,T]
    period = (P - o).unsqueeze(1)
    src = torch.where(t < P.unsqueeze(1), t, o.unsqueeze(1) + (t - P.unsqueeze(1)) % period)
    tokens = perm.gather(1, src)
    # target position j (token j predicted from position j-1) is predictable iff j >= P+1
    tgt_pos = torch.arange(1, seq_len).unsqueeze(0)
    mask = tgt_pos >= (P.unsqueeze(1) + 1)
    return tokens, mask


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


class HookPoint(nn.Identity):
    """TransformerLens-style hook point: identity, hooked with register_forward_hook."""


class FinalNorm(nn.Module):
    def __init__(self, d_model, kind, eps=1e-5):
        super().__init__()
        self.kind = kind
        self.eps = eps
        self.d_model = d_model
        self.weight = nn.Parameter(torch.ones(d_model))
        if kind == "layernorm":
            self.bias = nn.Parameter(torch.zeros(d_model))
        self.hook_normalized = HookPoint()

    def forward(self, x):
        if self.kind == "layernorm":
            y = F.layer_norm(x, (self.d_model,), self.weight, self.bias, self.eps)
        else:
            y = rms_norm(x, self.weight, self.eps)
        return self.hook_normalized(y)


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


class RMSNorm(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


def future_mask(n_ctx):
    """True where attention is forbidden (key position > query position)."""
    return torch.triu(torch.ones(n_ctx, n_ctx, dtype=torch.bool), diagonal=1)


def attend(q, k, v, mask, d_head, hook_pattern, hook_z):
    """q,k,v [B,H,T,Dh], mask [T,T] (True = masked) -> z [B,T,H,Dh] (through hook_z)."""
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d_head)
    scores = scores.masked_fill(mask, float("-inf"))
    pattern = hook_pattern(torch.softmax(scores, dim=-1))  # [B,H,T,T]
    z = torch.matmul(pattern, v)  # [B,H,T,Dh]
    return hook_z(z.transpose(1, 2))  # [B,T,H,Dh]


class GPT2Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_heads, self.d_head, self.d_model = cfg["n_heads"], cfg["d_head"], cfg["d_model"]
        self.qkv = nn.Linear(self.d_model, 3 * self.n_heads * self.d_head, bias=True)
        self.out = nn.Linear(self.n_heads * self.d_head, self.d_model, bias=True)
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()

    def forward(self, x, mask):
        B, T, _ = x.shape
        H, Dh = self.n_heads, self.d_head
        q, k, v = self.qkv(x).split(H * Dh, dim=-1)
        q = q.reshape(B, T, H, Dh).transpose(1, 2)
        k = k.reshape(B, T, H, Dh).transpose(1, 2)
        v = v.reshape(B, T, H, Dh).transpose(1, 2)
        z = attend(q, k, v, mask, Dh, self.hook_pattern, self.hook_z)
        return self.out(z.reshape(B, T, H * Dh))


class GPT2Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["d_model"]
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = GPT2Attention(cfg)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp_in = nn.Linear(d, cfg["d_mlp"], bias=True)
        self.act = nn.GELU()
        self.mlp_out = nn.Linear(cfg["d_mlp"], d, bias=True)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x, mask):
        resid_pre = self.hook_resid_pre(x)
        attn_out = self.hook_attn_out(self.attn(self.ln1(resid_pre), mask))
        resid_mid = resid_pre + attn_out
        mlp_out = self.hook_mlp_out(self.mlp_out(self.act(self.mlp_in(self.ln2(resid_mid)))))
        return self.hook_resid_post(resid_mid + mlp_out)


class GPT2Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg["d_model"]
        self.embed = nn.Embedding(cfg["vocab"], d)
        self.pos_embed = nn.Parameter(torch.zeros(cfg["n_ctx"], d))
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList([GPT2Block(cfg) for _ in range(cfg["n_layers"])])
        self.ln_final = FinalNorm(d, "layernorm")
        self.register_buffer("mask", future_mask(cfg["n_ctx"]), persistent=False)
        self.apply(init_weights)
        nn.init.normal_(self.pos_embed, std=0.02)

    def forward(self, input_ids):
        B, T = input_ids.shape
        embed = self.hook_embed(self.embed(input_ids))
        pos = self.hook_pos_embed(self.pos_embed[:T].unsqueeze(0).expand(B, T, self.cfg["d_model"]))
        x = embed + pos
        mask = self.mask[:T, :T]
        for block in self.blocks:
            x = block(x, mask)
        x = self.ln_final(x)
        return F.linear(x, self.embed.weight)  # tied unembedding


def rotate_half(x):
    half = x.shape[-1] // 2
    x1 = x[..., :half]
    x2 = x[..., half:]
    return torch.cat((-x2, x1), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_heads, self.n_kv = cfg["n_heads"], cfg["n_kv_heads"]
        self.d_head, self.d_model = cfg["d_head"], cfg["d_model"]
        d, H, KV, Dh = self.d_model, self.n_heads, self.n_kv, self.d_head
        self.q_proj = nn.Linear(d, H * Dh, bias=False)
        self.k_proj = nn.Linear(d, KV * Dh, bias=False)
        self.v_proj = nn.Linear(d, KV * Dh, bias=False)
        self.o_proj = nn.Linear(H * Dh, d, bias=False)
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()

    def forward(self, x, mask, cos, sin):
        B, T, _ = x.shape
        H, KV, Dh = self.n_heads, self.n_kv, self.d_head
        q = self.q_proj(x).reshape(B, T, H, Dh).transpose(1, 2)
        k = self.k_proj(x).reshape(B, T, KV, Dh).transpose(1, 2)
        v = self.v_proj(x).reshape(B, T, KV, Dh).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # grouped-query attention: repeat each k/v head n_rep times (HF repeat_kv)
        n_rep = H // KV
        k = k[:, :, None, :, :].expand(B, KV, n_rep, T, Dh).reshape(B, H, T, Dh)
        v = v[:, :, None, :, :].expand(B, KV, n_rep, T, Dh).reshape(B, H, T, Dh)
        z = attend(q, k, v, mask, Dh, self.hook_pattern, self.hook_z)
        return self.o_proj(z.reshape(B, T, H * Dh))


class LlamaBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["d_model"]
        self.ln1 = RMSNorm(d)
        self.attn = LlamaAttention(cfg)
        self.ln2 = RMSNorm(d)
        self.gate_proj = nn.Linear(d, cfg["d_mlp"], bias=False)
        self.up_proj = nn.Linear(d, cfg["d_mlp"], bias=False)
        self.down_proj = nn.Linear(cfg["d_mlp"], d, bias=False)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x, mask, cos, sin):
        resid_pre = self.hook_resid_pre(x)
        attn_out = self.hook_attn_out(self.attn(self.ln1(resid_pre), mask, cos, sin))
        resid_mid = resid_pre + attn_out
        h = self.ln2(resid_mid)
        mlp_out = self.hook_mlp_out(self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h)))
        return self.hook_resid_post(resid_mid + mlp_out)


class LlamaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg["d_model"]
        self.embed = nn.Embedding(cfg["vocab"], d)
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList([LlamaBlock(cfg) for _ in range(cfg["n_layers"])])
        self.ln_final = FinalNorm(d, "rmsnorm")
        self.lm_head = nn.Linear(d, cfg["vocab"], bias=False)
        self.register_buffer("mask", future_mask(cfg["n_ctx"]), persistent=False)
        # rotary cache (rotate_half convention, base 10000), shared by all layers
        Dh = cfg["d_head"]
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, Dh, 2, dtype=torch.float32) / Dh))
        freqs = torch.outer(torch.arange(cfg["n_ctx"], dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)  # [n_ctx, Dh]
        self.register_buffer("rope_cos", emb.cos())
        self.register_buffer("rope_sin", emb.sin())
        self.apply(init_weights)

    def forward(self, input_ids):
        T = input_ids.shape[1]
        x = self.hook_embed(self.embed(input_ids))
        mask = self.mask[:T, :T]
        cos = self.rope_cos[:T]
        sin = self.rope_sin[:T]
        for block in self.blocks:
            x = block(x, mask, cos, sin)
        return self.lm_head(self.ln_final(x))


def init_weights(m):
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


CONFIGS = {
    "induction-gpt2": dict(
        arch="gpt2", n_layers=2, n_heads=4, n_kv_heads=4, d_model=64, d_head=16, d_mlp=256, vocab=V, n_ctx=N_CTX
    ),
    "induction-llama": dict(
        arch="llama", n_layers=2, n_heads=4, n_kv_heads=2, d_model=64, d_head=16, d_mlp=176, vocab=V, n_ctx=N_CTX
    ),
}

TRAIN = {
    "induction-gpt2": dict(seed=1234, steps=2500, lr=2e-3, batch=128, weight_decay=0.01),
    "induction-llama": dict(seed=4321, steps=2500, lr=2e-3, batch=128, weight_decay=0.01),
}


def build(cfg):
    return GPT2Model(cfg) if cfg["arch"] == "gpt2" else LlamaModel(cfg)


# --------------------------------------------------------------------------
# Training / evaluation
# --------------------------------------------------------------------------


def masked_loss(model, tokens, mask):
    logits = model(tokens)[:, :-1]
    targets = tokens[:, 1:]
    loss = F.cross_entropy(logits[mask], targets[mask])
    return loss


@torch.no_grad()
def accuracy(model, seed, n=HELDOUT):
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    tokens, mask = make_batch(n, gen)
    preds = model(tokens)[:, :-1].argmax(-1)
    correct = (preds == tokens[:, 1:]) & mask
    return correct.sum().item() / mask.sum().item()


def train(name, cfg, hp):
    torch.manual_seed(hp["seed"])
    model = build(cfg)
    gen = torch.Generator().manual_seed(hp["seed"] + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    warmup = 100

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        p = (step - warmup) / max(1, hp["steps"] - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    t0 = time.time()
    for step in range(hp["steps"]):
        model.train()
        tokens, mask = make_batch(hp["batch"], gen)
        loss = masked_loss(model, tokens, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == hp["steps"] - 1:
            acc = accuracy(model, seed=999, n=500)
            print(f"[{name}] step {step:5d} loss {loss.item():.4f} acc(500) {acc:.3f}  {time.time() - t0:.1f}s", flush=True)
    model.eval()
    return model, time.time() - t0


# --------------------------------------------------------------------------
# Hooks, references, ablations
# --------------------------------------------------------------------------


def hook_names(cfg):
    names = ["hook_embed"]
    if cfg["arch"] == "gpt2":
        names.append("hook_pos_embed")
    for L in range(cfg["n_layers"]):
        names += [
            f"blocks.{L}.hook_resid_pre",
            f"blocks.{L}.attn.hook_pattern",
            f"blocks.{L}.attn.hook_z",
            f"blocks.{L}.hook_attn_out",
            f"blocks.{L}.hook_mlp_out",
            f"blocks.{L}.hook_resid_post",
        ]
    names.append("ln_final.hook_normalized")
    return names


def run_with_hooks(model, ids, capture, patches=()):
    """patches: list of (hook_name, fn(output) -> new output). Captures after patching."""
    modules = dict(model.named_modules())
    store = {}
    handles = []
    try:
        for name, fn in patches:
            handles.append(modules[name].register_forward_hook(lambda m, i, o, fn=fn: fn(o)))
        for name in capture:

            def cap(m, i, o, name=name):
                store[name] = o.detach().clone()

            handles.append(modules[name].register_forward_hook(cap))
        with torch.no_grad():
            logits = model(ids)
    finally:
        for h in handles:
            h.remove()
    store["logits"] = logits.detach().clone()
    return store


def enc_tensor(t):
    t = t.detach().contiguous().to(torch.float32)
    return {"shape": list(t.shape), "b64": base64.b64encode(t.numpy().astype("<f4").tobytes()).decode("ascii")}


def parse_node(node):
    if node.startswith("a"):
        layer, head = node[1:].split(".h")
        return ("head", int(layer), int(head))
    assert node.startswith("m")
    return ("mlp", int(node[1:]), None)


def make_patches(nodes, kind, clean):
    patches = []
    for node in nodes:
        typ, L, H = parse_node(node)
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


def make_prompts():
    """4 induction prompts of 20 tokens: distinct random words, then a repeat."""
    gen = torch.Generator().manual_seed(2024)
    n_content = V - FIRST_CONTENT_ID
    specs = [(10, 0), (12, 0), (8, 0), (11, 3)]  # (prefix length P, repeat offset o)
    prompts = []
    for P, o in specs:
        perm = (torch.rand(n_content, generator=gen).argsort() + FIRST_CONTENT_ID).tolist()
        toks = perm[:P]
        while len(toks) < PROMPT_LEN:
            toks.append(toks[len(toks) - (P - o)])
        text = " ".join(VOCAB[i] for i in toks)
        assert encode(text) == toks
        prompts.append({"text": text, "ids": toks})
    return prompts


def reference(name, model, cfg, hp, acc, train_s):
    prompts = make_prompts()
    ids = torch.tensor([p["ids"] for p in prompts], dtype=torch.int64)
    names = hook_names(cfg)
    clean = run_with_hooks(model, ids, names)
    last = cfg["n_layers"] - 1
    abl_hooks = [f"blocks.{last}.attn.hook_z", f"blocks.{last}.hook_resid_post"]
    node_sets = [[f"a{L}.h{H}"] for L in range(cfg["n_layers"]) for H in range(cfg["n_heads"])]
    node_sets += [[f"m{L}"] for L in range(cfg["n_layers"])]
    ablations = []
    for nodes in node_sets + [["a0.h0", "a1.h2", "m0"]]:
        for kind in ("zero", "mean"):
            out = run_with_hooks(model, ids, abl_hooks, make_patches(nodes, kind, clean))
            ablations.append(
                {
                    "nodes": nodes,
                    "kind": kind,
                    "logits": enc_tensor(out["logits"]),
                    "hooks": {h: enc_tensor(out[h]) for h in abl_hooks},
                }
            )
    # per-prompt induction accuracy on the reference prompts (informational)
    preds = clean["logits"][:, :-1].argmax(-1)
    ref = {
        "model": f"{name}.onnx",
        "config": {k: cfg[k] for k in ("n_layers", "n_heads", "n_kv_heads", "d_model", "d_head", "d_mlp", "vocab", "n_ctx", "arch")},
        "training": {
            "steps": hp["steps"],
            "batch": hp["batch"],
            "lr": hp["lr"],
            "seed": hp["seed"],
            "seq_len": SEQ_LEN,
            "accuracy": round(acc, 4),
            "heldout_sequences": HELDOUT,
            "train_seconds": round(train_s, 1),
        },
        "notes": "float32 little-endian base64 tensors, row-major, batch first; ablation hooks are recorded after "
        "the ablation; mean = mean of the clean activation over all prompts and positions.",
        "prompts": prompts,
        "clean": {h: enc_tensor(clean[h]) for h in names + ["logits"]},
        "ablations": ablations,
    }
    for p, pr in zip(prompts, preds):
        p_ids = p["ids"]
        print(f"  prompt: {p['text']}")
        print(f"    pred: {' '.join(VOCAB[i] for i in pr.tolist())}")
    return ref


# --------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------


def export(model, path, opset):
    ids = torch.tensor([make_prompts()[0]["ids"]] * 2, dtype=torch.int64)
    torch.onnx.export(
        model,
        (ids,),
        path,
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
        opset_version=opset,
        do_constant_folding=True,
        export_params=True,
    )
    import onnx

    m = onnx.load(path)
    onnx.checker.check_model(m)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    print(f"  {os.path.relpath(path, ROOT)}: opset {opset}, {os.path.getsize(path)} bytes, {sum(ops.values())} nodes")
    print(f"    ops: {dict(sorted(ops.items()))}")
    print(f"    inputs: {[(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]) for i in m.graph.input]}")
    print(f"    outputs: {[(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]) for o in m.graph.output]}")
    inits = [(i.name, list(i.dims)) for i in m.graph.initializer]
    print(f"    initializers ({len(inits)}): {inits}")
    return m


def main():
    import onnx  # noqa: F401  (fail early if missing)

    os.makedirs(EXAMPLES, exist_ok=True)
    os.makedirs(REFERENCES, exist_ok=True)
    os.makedirs(FIXTURES, exist_ok=True)
    print(f"vocab size {V}")
    with open(os.path.join(EXAMPLES, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(), f, indent=2)
        f.write("\n")

    written = [os.path.join(EXAMPLES, "tokenizer.json")]
    summary = {}
    for name, cfg in CONFIGS.items():
        hp = TRAIN[name]
        model, train_s = train(name, cfg, hp)
        acc = accuracy(model, seed=777)
        print(f"[{name}] held-out accuracy on {HELDOUT} sequences: {acc:.4f} (train {train_s:.1f}s)")
        if acc < ACC_TARGET:
            raise SystemExit(f"{name}: accuracy {acc:.4f} below {ACC_TARGET}")
        summary[name] = (acc, train_s)
        ref = reference(name, model, cfg, hp, acc, train_s)
        ref_path = os.path.join(REFERENCES, f"{name}.json")
        with open(ref_path, "w") as f:
            json.dump(ref, f)
            f.write("\n")
        p17 = os.path.join(EXAMPLES, f"{name}.onnx")
        p14 = os.path.join(FIXTURES, f"{name}-opset14.onnx")
        export(model, p17, 17)
        export(model, p14, 14)
        written += [ref_path, p17, p14]

    print("\nsummary:")
    for name, (acc, s) in summary.items():
        print(f"  {name}: accuracy {acc:.4f}, training {s:.1f}s")
    for p in written:
        size = os.path.getsize(p)
        print(f"  {os.path.relpath(p, ROOT)}: {size} bytes")
        if p.endswith(".onnx"):
            assert size < 2 * 1024 * 1024, p


if __name__ == "__main__":
    main()
