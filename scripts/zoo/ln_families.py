"""LayerNorm families of the conformance zoo: GPT-2, GPT-NeoX (Pythia), GPT-Neo, OPT, Phi.

Each class re-implements the eager path of Hugging Face transformers' modeling_<family>.py (module names,
parameter names and layouts, operator order), for forward(input_ids) -> logits with no cache, no padding
mask argument and dropout left out (eval). HookPoints (nn.Identity) sit where TransformerLens puts them;
model.hook_points() maps TransformerLens names to them. See scripts/zoo/SPEC.md and common.py.
"""

import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Entry, HookPoint, causal_mask_bool, init_random, rotary_cos_sin, rotate_half, bytelevel_tokenizer_json  # noqa: E402


def gelu_new(x):
    """GPT-2's tanh approximation of GELU (HF NewGELUActivation)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def base_cfg(arch, vocab, d_model=64, n_heads=4, n_layers=2, d_mlp=None, n_ctx=64):
    return dict(arch=arch, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_heads, d_model=d_model,
                d_head=d_model // n_heads, d_mlp=d_mlp or 4 * d_model, vocab=vocab, n_ctx=n_ctx)


class _Hooked(nn.Module):
    """hook_points() from the HookPoint attributes: the base model (self._inner(), e.g. `transformer`, called
    as a module so that exported node names carry its scope: /transformer/h.0/attn/c_attn/Gemm) holds
    hook_embed, hook_pos_embed (learned positions only) and hook_normalized; its blocks are self._blocks()."""

    def hook_points(self):
        inner = self._inner()
        hp = {"hook_embed": inner.hook_embed}
        if hasattr(inner, "hook_pos_embed"):
            hp["hook_pos_embed"] = inner.hook_pos_embed
        for L, blk in enumerate(self._blocks()):
            attn = blk.hook_attn_module()
            hp[f"blocks.{L}.hook_resid_pre"] = blk.hook_resid_pre
            hp[f"blocks.{L}.attn.hook_pattern"] = attn.hook_pattern
            hp[f"blocks.{L}.attn.hook_z"] = attn.hook_z
            hp[f"blocks.{L}.hook_attn_out"] = blk.hook_attn_out
            hp[f"blocks.{L}.hook_mlp_out"] = blk.hook_mlp_out
            hp[f"blocks.{L}.hook_resid_post"] = blk.hook_resid_post
        hp["ln_final.hook_normalized"] = inner.hook_normalized
        return hp


def _block_hooks(blk):
    blk.hook_resid_pre = HookPoint()
    blk.hook_attn_out = HookPoint()
    blk.hook_mlp_out = HookPoint()
    blk.hook_resid_post = HookPoint()


# ======================================================================================================
# GPT-2 (GPT2LMHeadModel)
# ======================================================================================================


class Conv1D(nn.Module):
    """HF pytorch_utils.Conv1D: a linear layer with the weight stored [in, out], applied with addmm on a
    2-D view (exports as Reshape -> Gemm -> Reshape)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class GPT2Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        n_ctx = cfg["n_ctx"]
        self.register_buffer("bias", causal_mask_bool(n_ctx), persistent=False)
        self.embed_dim = cfg["d_model"]
        self.num_heads = cfg["n_heads"]
        self.head_dim = self.embed_dim // self.num_heads
        self.split_size = self.embed_dim
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()
        # Each head's query, key and value [B, H, T, d_head] (path-patching references: one head's input at a time)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()

    def _attn(self, query, key, value):
        attn_weights = torch.matmul(query, key.transpose(-1, -2))
        attn_weights = attn_weights / torch.full([], value.size(-1) ** 0.5, dtype=attn_weights.dtype)
        query_length, key_length = query.size(-2), key.size(-2)
        causal_mask = self.bias[:, :, key_length - query_length: key_length, :key_length]
        mask_value = torch.full([], torch.finfo(attn_weights.dtype).min, dtype=attn_weights.dtype)
        attn_weights = torch.where(causal_mask, attn_weights.to(attn_weights.dtype), mask_value)
        attn_weights = nn.functional.softmax(attn_weights, dim=-1)
        attn_weights = self.hook_pattern(attn_weights)
        return torch.matmul(attn_weights, value)

    def _split_heads(self, tensor):
        new_shape = tensor.size()[:-1] + (self.num_heads, self.head_dim)
        return tensor.view(new_shape).permute(0, 2, 1, 3)

    def _merge_heads(self, tensor):
        tensor = self.hook_z(tensor.permute(0, 2, 1, 3)).contiguous()
        new_shape = tensor.size()[:-2] + (self.num_heads * self.head_dim,)
        return tensor.view(new_shape)

    def forward(self, hidden_states):
        query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
        query, key, value = self._split_heads(query), self._split_heads(key), self._split_heads(value)
        query, key, value = self.hook_q(query), self.hook_k(key), self.hook_v(value)
        attn_output = self._merge_heads(self._attn(query, key, value))
        return self.c_proj(attn_output)


class GPT2MLP(nn.Module):
    def __init__(self, intermediate_size, cfg):
        super().__init__()
        self.c_fc = Conv1D(intermediate_size, cfg["d_model"])
        self.c_proj = Conv1D(cfg["d_model"], intermediate_size)

    def forward(self, hidden_states):
        return self.c_proj(gelu_new(self.c_fc(hidden_states)))


class GPT2Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["d_model"]
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = GPT2Attention(cfg)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = GPT2MLP(cfg["d_mlp"], cfg)
        _block_hooks(self)

    def hook_attn_module(self):
        return self.attn

    def forward(self, hidden_states):
        residual = self.hook_resid_pre(hidden_states)
        attn_output = self.hook_attn_out(self.attn(self.ln_1(residual)))
        hidden_states = attn_output + residual
        residual = hidden_states
        feed_forward_hidden_states = self.hook_mlp_out(self.mlp(self.ln_2(hidden_states)))
        return self.hook_resid_post(residual + feed_forward_hidden_states)


class GPT2Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.wte = nn.Embedding(cfg["vocab"], cfg["d_model"])
        self.wpe = nn.Embedding(cfg["n_ctx"], cfg["d_model"])
        self.h = nn.ModuleList([GPT2Block(cfg) for _ in range(cfg["n_layers"])])
        self.ln_f = nn.LayerNorm(cfg["d_model"], eps=1e-5)
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, input_ids):
        input_shape = input_ids.size()
        input_ids = input_ids.view(-1, input_shape[-1])
        position_ids = torch.arange(0, input_shape[-1], dtype=torch.long).unsqueeze(0)
        inputs_embeds = self.hook_embed(self.wte(input_ids))
        position_embeds = self.hook_pos_embed(self.wpe(position_ids))  # [1,T,D], broadcast over the batch
        hidden_states = inputs_embeds + position_embeds
        for block in self.h:
            hidden_states = block(hidden_states)
        return self.hook_normalized(self.ln_f(hidden_states))


class GPT2LMHeadModel(_Hooked):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.transformer = GPT2Model(cfg)
        self.lm_head = nn.Linear(cfg["d_model"], cfg["vocab"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied

    def _inner(self):
        return self.transformer

    def _blocks(self):
        return self.transformer.h

    def forward(self, input_ids):
        return self.lm_head(self.transformer(input_ids))


# ======================================================================================================
# GPT-NeoX / Pythia (GPTNeoXForCausalLM), use_parallel_residual=True, rotary_pct=0.25
# ======================================================================================================


class GPTNeoXRotaryEmbedding(nn.Module):
    def __init__(self, dim, max_position_embeddings, base=10000):
        super().__init__()
        cos, sin = rotary_cos_sin(dim, max_position_embeddings, base)
        self.register_buffer("cos_cached", cos, persistent=False)
        self.register_buffer("sin_cached", sin, persistent=False)

    def forward(self, x, seq_len):
        return self.cos_cached[:seq_len], self.sin_cached[:seq_len]


def apply_rotary_pos_emb(q, k, cos, sin, position_ids, unsqueeze_dim=1):
    cos = cos[position_ids].unsqueeze(unsqueeze_dim)
    sin = sin[position_ids].unsqueeze(unsqueeze_dim)
    q_embed = (q * cos) + (rotate_half(q) * sin)
    k_embed = (k * cos) + (rotate_half(k) * sin)
    return q_embed, k_embed


class GPTNeoXAttention(nn.Module):
    def __init__(self, cfg, rotary_pct=0.25):
        super().__init__()
        self.num_attention_heads = cfg["n_heads"]
        self.hidden_size = cfg["d_model"]
        self.head_size = self.hidden_size // self.num_attention_heads
        self.rotary_ndims = int(self.head_size * rotary_pct)
        n_ctx = cfg["n_ctx"]
        self.register_buffer("bias", causal_mask_bool(n_ctx), persistent=False)
        self.rotary_emb = GPTNeoXRotaryEmbedding(self.rotary_ndims, n_ctx)
        self.register_buffer("norm_factor", torch.sqrt(torch.tensor(self.head_size, dtype=torch.float32)), persistent=False)
        self.query_key_value = nn.Linear(self.hidden_size, 3 * self.hidden_size)
        self.dense = nn.Linear(self.hidden_size, self.hidden_size)
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()
        # Each head's query, key and value [B, H, T, d_head] (path-patching references: one head's input at a time)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()

    def forward(self, hidden_states, position_ids):
        qkv = self.query_key_value(hidden_states)
        # [B, T, 3*D] -> [B, T, H, 3*Dh]: per head, q, k, v are consecutive (interleaved by head)
        new_qkv_shape = qkv.size()[:-1] + (self.num_attention_heads, 3 * self.head_size)
        qkv = qkv.view(*new_qkv_shape)
        query = qkv[..., : self.head_size].permute(0, 2, 1, 3)
        key = qkv[..., self.head_size: 2 * self.head_size].permute(0, 2, 1, 3)
        value = qkv[..., 2 * self.head_size:].permute(0, 2, 1, 3)
        query_rot = query[..., : self.rotary_ndims]
        query_pass = query[..., self.rotary_ndims:]
        key_rot = key[..., : self.rotary_ndims]
        key_pass = key[..., self.rotary_ndims:]
        seq_len = key.shape[-2]
        cos, sin = self.rotary_emb(value, seq_len=seq_len)
        query, key = apply_rotary_pos_emb(query_rot, key_rot, cos, sin, position_ids)
        query = torch.cat((query, query_pass), dim=-1)
        key = torch.cat((key, key_pass), dim=-1)
        query, key, value = self.hook_q(query), self.hook_k(key), self.hook_v(value)
        attn_output = self._attn(query, key, value)
        attn_output = self._merge_heads(attn_output)
        return self.dense(attn_output)

    def _merge_heads(self, tensor):
        tensor = self.hook_z(tensor.permute(0, 2, 1, 3)).contiguous()
        return tensor.view(tensor.size(0), tensor.size(1), self.num_attention_heads * self.head_size)

    def _attn(self, query, key, value):
        batch_size, num_attention_heads, query_length, attn_head_size = query.size()
        key_length = key.size(-2)
        causal_mask = self.bias[:, :, key_length - query_length: key_length, :key_length]
        query = query.reshape(batch_size * num_attention_heads, query_length, attn_head_size)
        key = key.reshape(batch_size * num_attention_heads, key_length, attn_head_size)
        attn_scores = torch.zeros(batch_size * num_attention_heads, query_length, key_length, dtype=query.dtype)
        attn_scores = torch.baddbmm(attn_scores, query, key.transpose(1, 2), beta=1.0,
                                    alpha=(torch.tensor(1.0, dtype=self.norm_factor.dtype) / self.norm_factor))
        attn_scores = attn_scores.view(batch_size, num_attention_heads, query_length, key_length)
        mask_value = torch.tensor(torch.finfo(attn_scores.dtype).min, dtype=attn_scores.dtype)
        attn_scores = torch.where(causal_mask, attn_scores, mask_value)
        attn_weights = self.hook_pattern(nn.functional.softmax(attn_scores, dim=-1))
        return torch.matmul(attn_weights, value)


class GPTNeoXMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(cfg["d_model"], cfg["d_mlp"])
        self.dense_4h_to_h = nn.Linear(cfg["d_mlp"], cfg["d_model"])

    def forward(self, hidden_states):
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(hidden_states)))


class GPTNeoXLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.use_parallel_residual = True
        self.input_layernorm = nn.LayerNorm(cfg["d_model"], eps=1e-5)
        self.post_attention_layernorm = nn.LayerNorm(cfg["d_model"], eps=1e-5)
        self.attention = GPTNeoXAttention(cfg)
        self.mlp = GPTNeoXMLP(cfg)
        _block_hooks(self)

    def hook_attn_module(self):
        return self.attention

    def forward(self, hidden_states, position_ids):
        hidden_states = self.hook_resid_pre(hidden_states)
        attn_output = self.hook_attn_out(self.attention(self.input_layernorm(hidden_states), position_ids))
        # parallel residual: x = x + attn(ln1(x)) + mlp(ln2(x)), added as mlp + attn + x
        mlp_output = self.hook_mlp_out(self.mlp(self.post_attention_layernorm(hidden_states)))
        return self.hook_resid_post(mlp_output + attn_output + hidden_states)


class GPTNeoXModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_in = nn.Embedding(cfg["vocab"], cfg["d_model"])
        self.layers = nn.ModuleList([GPTNeoXLayer(cfg) for _ in range(cfg["n_layers"])])
        self.final_layer_norm = nn.LayerNorm(cfg["d_model"], eps=1e-5)
        self.hook_embed = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, input_ids):
        seq_length = input_ids.shape[1]
        position_ids = torch.arange(0, seq_length, dtype=torch.long).unsqueeze(0)
        hidden_states = self.hook_embed(self.embed_in(input_ids))
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_ids)
        return self.hook_normalized(self.final_layer_norm(hidden_states))


class GPTNeoXForCausalLM(_Hooked):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.gpt_neox = GPTNeoXModel(cfg)
        self.embed_out = nn.Linear(cfg["d_model"], cfg["vocab"], bias=False)

    def _inner(self):
        return self.gpt_neox

    def _blocks(self):
        return self.gpt_neox.layers

    def forward(self, input_ids):
        return self.embed_out(self.gpt_neox(input_ids))


# ======================================================================================================
# GPT-Neo (GPTNeoForCausalLM): alternating global / local attention, no 1/sqrt(d) scaling
# ======================================================================================================


class GPTNeoSelfAttention(nn.Module):
    def __init__(self, cfg, attention_type, window_size):
        super().__init__()
        n_ctx = cfg["n_ctx"]
        bias = causal_mask_bool(n_ctx)
        if attention_type == "local":
            bias = torch.bitwise_xor(bias, torch.tril(bias, -window_size))
        self.register_buffer("bias", bias, persistent=False)
        self.embed_dim = cfg["d_model"]
        self.num_heads = cfg["n_heads"]
        self.head_dim = self.embed_dim // self.num_heads
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=False)
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=False)
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=False)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=True)
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()
        # Each head's query, key and value [B, H, T, d_head] (path-patching references: one head's input at a time)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()

    def _split_heads(self, tensor):
        new_shape = tensor.size()[:-1] + (self.num_heads, self.head_dim)
        return tensor.view(new_shape).permute(0, 2, 1, 3)

    def _merge_heads(self, tensor):
        tensor = self.hook_z(tensor.permute(0, 2, 1, 3)).contiguous()
        new_shape = tensor.size()[:-2] + (self.num_heads * self.head_dim,)
        return tensor.view(new_shape)

    def _attn(self, query, key, value):
        query = query.to(torch.float32)
        key = key.to(torch.float32)
        attn_weights = torch.matmul(query, key.transpose(-1, -2))
        query_length, key_length = query.size(-2), key.size(-2)
        causal_mask = self.bias[:, :, key_length - query_length: key_length, :key_length]
        mask_value = torch.tensor(torch.finfo(attn_weights.dtype).min, dtype=attn_weights.dtype)
        attn_weights = torch.where(causal_mask, attn_weights, mask_value)
        attn_weights = self.hook_pattern(nn.functional.softmax(attn_weights, dim=-1))
        attn_weights = attn_weights.to(value.dtype)
        return torch.matmul(attn_weights, value)

    def forward(self, hidden_states):
        query = self._split_heads(self.q_proj(hidden_states))
        key = self._split_heads(self.k_proj(hidden_states))
        value = self._split_heads(self.v_proj(hidden_states))
        query, key, value = self.hook_q(query), self.hook_k(key), self.hook_v(value)
        attn_output = self._merge_heads(self._attn(query, key, value))
        return self.out_proj(attn_output)


class GPTNeoAttention(nn.Module):
    def __init__(self, cfg, layer_id, attention_layers, window_size):
        super().__init__()
        self.attention_type = attention_layers[layer_id]
        self.attention = GPTNeoSelfAttention(cfg, self.attention_type, window_size)

    def forward(self, hidden_states):
        return self.attention(hidden_states)


class GPTNeoMLP(nn.Module):
    def __init__(self, intermediate_size, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg["d_model"], intermediate_size)
        self.c_proj = nn.Linear(intermediate_size, cfg["d_model"])

    def forward(self, hidden_states):
        return self.c_proj(gelu_new(self.c_fc(hidden_states)))


class GPTNeoBlock(nn.Module):
    def __init__(self, cfg, layer_id, attention_layers, window_size):
        super().__init__()
        d = cfg["d_model"]
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = GPTNeoAttention(cfg, layer_id, attention_layers, window_size)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = GPTNeoMLP(cfg["d_mlp"], cfg)
        _block_hooks(self)

    def hook_attn_module(self):
        return self.attn.attention

    def forward(self, hidden_states):
        residual = self.hook_resid_pre(hidden_states)
        attn_output = self.hook_attn_out(self.attn(self.ln_1(residual)))
        hidden_states = attn_output + residual
        residual = hidden_states
        feed_forward_hidden_states = self.hook_mlp_out(self.mlp(self.ln_2(hidden_states)))
        return self.hook_resid_post(residual + feed_forward_hidden_states)


class GPTNeoModel(nn.Module):
    def __init__(self, cfg, attention_layers, window_size):
        super().__init__()
        self.wte = nn.Embedding(cfg["vocab"], cfg["d_model"])
        self.wpe = nn.Embedding(cfg["n_ctx"], cfg["d_model"])
        self.h = nn.ModuleList([GPTNeoBlock(cfg, i, attention_layers, window_size) for i in range(cfg["n_layers"])])
        self.ln_f = nn.LayerNorm(cfg["d_model"], eps=1e-5)
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, input_ids):
        input_shape = input_ids.size()
        input_ids = input_ids.view(-1, input_shape[-1])
        position_ids = torch.arange(0, input_shape[-1], dtype=torch.long).unsqueeze(0)
        inputs_embeds = self.hook_embed(self.wte(input_ids))
        position_embeds = self.hook_pos_embed(self.wpe(position_ids))
        hidden_states = inputs_embeds + position_embeds
        for block in self.h:
            hidden_states = block(hidden_states)
        return self.hook_normalized(self.ln_f(hidden_states))


class GPTNeoForCausalLM(_Hooked):
    def __init__(self, cfg, attention_types=((("global", "local"), 1),), window_size=4):
        super().__init__()
        self.cfg = cfg
        attention_layers = [t for types, n in attention_types for _ in range(n) for t in types]
        assert len(attention_layers) == cfg["n_layers"]
        self.transformer = GPTNeoModel(cfg, attention_layers, window_size)
        self.lm_head = nn.Linear(cfg["d_model"], cfg["vocab"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied

    def _inner(self):
        return self.transformer

    def _blocks(self):
        return self.transformer.h

    def forward(self, input_ids):
        return self.lm_head(self.transformer(input_ids))


# ======================================================================================================
# OPT (OPTForCausalLM): do_layer_norm_before=True, ReLU, positions offset by 2
# ======================================================================================================


class OPTLearnedPositionalEmbedding(nn.Embedding):
    def __init__(self, num_embeddings, embedding_dim):
        self.offset = 2
        super().__init__(num_embeddings + self.offset, embedding_dim)

    def forward(self, attention_mask):
        attention_mask = attention_mask.long()
        positions = (torch.cumsum(attention_mask, dim=1).type_as(attention_mask) * attention_mask).long() - 1
        return super().forward(positions + self.offset)


class OPTAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_dim = cfg["d_model"]
        self.num_heads = cfg["n_heads"]
        self.head_dim = self.embed_dim // self.num_heads
        self.scaling = self.head_dim ** -0.5
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=True)
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=True)
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=True)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim, bias=True)
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()
        # Each head's query, key and value [B, H, T, d_head] (path-patching references: one head's input at a time)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()

    def _shape(self, tensor, seq_len, bsz):
        return tensor.view(bsz, seq_len, self.num_heads, self.head_dim).transpose(1, 2).contiguous()

    def forward(self, hidden_states, attention_mask):
        bsz, tgt_len, _ = hidden_states.size()
        query_states = self.q_proj(hidden_states) * self.scaling
        key_states = self._shape(self.k_proj(hidden_states), -1, bsz)
        value_states = self._shape(self.v_proj(hidden_states), -1, bsz)
        proj_shape = (bsz * self.num_heads, -1, self.head_dim)
        query_states = self.hook_q(self._shape(query_states, tgt_len, bsz)).view(*proj_shape)
        key_states = self.hook_k(key_states).view(*proj_shape)
        value_states = self.hook_v(value_states).view(*proj_shape)
        src_len = key_states.size(1)
        attn_weights = torch.bmm(query_states, key_states.transpose(1, 2))
        attn_weights = attn_weights.view(bsz, self.num_heads, tgt_len, src_len) + attention_mask
        attn_weights = torch.max(attn_weights, torch.tensor(torch.finfo(attn_weights.dtype).min))
        attn_weights = attn_weights.view(bsz * self.num_heads, tgt_len, src_len)
        attn_weights = nn.functional.softmax(attn_weights, dim=-1)
        # hook_pattern sees [B,H,T,T]; HF keeps [B*H,T,T] here
        attn_probs = self.hook_pattern(attn_weights.view(bsz, self.num_heads, tgt_len, src_len))
        attn_probs = attn_probs.view(bsz * self.num_heads, tgt_len, src_len)
        attn_output = torch.bmm(attn_probs, value_states)
        attn_output = attn_output.view(bsz, self.num_heads, tgt_len, self.head_dim)
        attn_output = self.hook_z(attn_output.transpose(1, 2))
        attn_output = attn_output.reshape(bsz, tgt_len, self.embed_dim)
        return self.out_proj(attn_output)


class OPTDecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["d_model"]
        self.self_attn = OPTAttention(cfg)
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, cfg["d_mlp"], bias=True)
        self.fc2 = nn.Linear(cfg["d_mlp"], d, bias=True)
        self.final_layer_norm = nn.LayerNorm(d, eps=1e-5)
        _block_hooks(self)

    def hook_attn_module(self):
        return self.self_attn

    def forward(self, hidden_states, attention_mask):
        residual = self.hook_resid_pre(hidden_states)
        hidden_states = self.self_attn_layer_norm(residual)
        hidden_states = self.hook_attn_out(self.self_attn(hidden_states, attention_mask))
        hidden_states = residual + hidden_states
        # HF flattens to [B*T, D] for the MLP (fc1/fc2 export as Gemm)
        hidden_states_shape = hidden_states.shape
        hidden_states = hidden_states.reshape(-1, hidden_states.size(-1))
        residual = hidden_states
        hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.fc1(hidden_states)
        hidden_states = F.relu(hidden_states)
        hidden_states = self.fc2(hidden_states)
        # hook_mlp_out sees [B,T,D]
        mlp_out = self.hook_mlp_out(hidden_states.view(hidden_states_shape))
        hidden_states = (residual.view(hidden_states_shape) + mlp_out)
        return self.hook_resid_post(hidden_states)


def _make_causal_mask(tgt_len, dtype):
    mask = torch.full((tgt_len, tgt_len), torch.finfo(dtype).min)
    mask_cond = torch.arange(mask.size(-1))
    mask.masked_fill_(mask_cond < (mask_cond + 1).view(mask.size(-1), 1), 0)
    return mask.to(dtype)[None, None, :, :]


def _expand_mask(mask, dtype, tgt_len):
    bsz, src_len = mask.size()
    expanded_mask = mask[:, None, None, :].expand(bsz, 1, tgt_len, src_len).to(dtype)
    inverted_mask = 1.0 - expanded_mask
    return inverted_mask.masked_fill(inverted_mask.to(torch.bool), torch.finfo(dtype).min)


class OPTDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.padding_idx = 1
        self.embed_tokens = nn.Embedding(cfg["vocab"], cfg["d_model"], self.padding_idx)
        self.embed_positions = OPTLearnedPositionalEmbedding(cfg["n_ctx"], cfg["d_model"])
        self.final_layer_norm = nn.LayerNorm(cfg["d_model"], eps=1e-5)
        self.layers = nn.ModuleList([OPTDecoderLayer(cfg) for _ in range(cfg["n_layers"])])
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, input_ids):
        batch_size, seq_length = input_ids.shape
        inputs_embeds = self.hook_embed(self.embed_tokens(input_ids))
        attention_mask = torch.ones(batch_size, seq_length, dtype=torch.long)
        pos_embeds = self.hook_pos_embed(self.embed_positions(attention_mask))
        causal = _make_causal_mask(seq_length, inputs_embeds.dtype)
        causal_attention_mask = _expand_mask(attention_mask, inputs_embeds.dtype, seq_length) + causal
        hidden_states = inputs_embeds + pos_embeds
        for layer in self.layers:
            hidden_states = layer(hidden_states, causal_attention_mask)
        return self.hook_normalized(self.final_layer_norm(hidden_states))


class OPTModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.decoder = OPTDecoder(cfg)

    def forward(self, input_ids):
        return self.decoder(input_ids)


class OPTForCausalLM(_Hooked):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = OPTModel(cfg)
        self.lm_head = nn.Linear(cfg["d_model"], cfg["vocab"], bias=False)
        self.lm_head.weight = self.model.decoder.embed_tokens.weight  # tied

    def _inner(self):
        return self.model.decoder

    def _blocks(self):
        return self.model.decoder.layers

    def forward(self, input_ids):
        return self.lm_head(self.model(input_ids))


# ======================================================================================================
# Phi (PhiForCausalLM): parallel block, partial rotary (0.5), lm_head with bias
# ======================================================================================================


class PhiRotaryEmbedding(GPTNeoXRotaryEmbedding):
    pass


class PhiAttention(nn.Module):
    def __init__(self, cfg, partial_rotary_factor=0.5):
        super().__init__()
        self.hidden_size = cfg["d_model"]
        self.num_heads = cfg["n_heads"]
        self.head_dim = self.hidden_size // self.num_heads
        self.num_key_value_heads = cfg["n_kv_heads"]
        self.q_proj = nn.Linear(self.hidden_size, self.num_heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(self.hidden_size, self.num_key_value_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(self.hidden_size, self.num_key_value_heads * self.head_dim, bias=True)
        self.dense = nn.Linear(self.num_heads * self.head_dim, self.hidden_size, bias=True)
        self.rotary_emb = PhiRotaryEmbedding(int(partial_rotary_factor * self.head_dim), cfg["n_ctx"])
        self.rotary_ndims = int(partial_rotary_factor * self.head_dim)
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()
        # Each head's query, key and value [B, H, T, d_head] (path-patching references: one head's input at a time)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()

    def forward(self, hidden_states, attention_mask, position_ids):
        bsz, q_len, _ = hidden_states.size()
        query_states = self.q_proj(hidden_states)
        key_states = self.k_proj(hidden_states)
        value_states = self.v_proj(hidden_states)
        query_states = query_states.view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        key_states = key_states.view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        value_states = value_states.view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        kv_seq_len = key_states.shape[-2]
        cos, sin = self.rotary_emb(value_states, seq_len=kv_seq_len)
        query_rot, query_pass = query_states[..., : self.rotary_ndims], query_states[..., self.rotary_ndims:]
        key_rot, key_pass = key_states[..., : self.rotary_ndims], key_states[..., self.rotary_ndims:]
        query_rot, key_rot = apply_rotary_pos_emb(query_rot, key_rot, cos, sin, position_ids)
        query_states = torch.cat((query_rot, query_pass), dim=-1)
        key_states = torch.cat((key_rot, key_pass), dim=-1)
        query_states, key_states, value_states = self.hook_q(query_states), self.hook_k(key_states), self.hook_v(value_states)
        attn_weights = torch.matmul(query_states.to(torch.float32), key_states.to(torch.float32).transpose(2, 3)) / math.sqrt(self.head_dim)
        attn_weights = attn_weights + attention_mask
        attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(value_states.dtype)
        attn_weights = self.hook_pattern(attn_weights)
        attn_output = torch.matmul(attn_weights, value_states)
        attn_output = self.hook_z(attn_output.transpose(1, 2)).contiguous()
        attn_output = attn_output.reshape(bsz, q_len, self.hidden_size)
        return self.dense(attn_output)


class PhiMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc1 = nn.Linear(cfg["d_model"], cfg["d_mlp"])
        self.fc2 = nn.Linear(cfg["d_mlp"], cfg["d_model"])

    def forward(self, hidden_states):
        return self.fc2(gelu_new(self.fc1(hidden_states)))


class PhiDecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = PhiAttention(cfg)
        self.mlp = PhiMLP(cfg)
        self.input_layernorm = nn.LayerNorm(cfg["d_model"], eps=1e-5)
        _block_hooks(self)

    def hook_attn_module(self):
        return self.self_attn

    def forward(self, hidden_states, attention_mask, position_ids):
        residual = self.hook_resid_pre(hidden_states)
        hidden_states = self.input_layernorm(residual)
        attn_outputs = self.hook_attn_out(self.self_attn(hidden_states, attention_mask, position_ids))
        feed_forward_hidden_states = self.hook_mlp_out(self.mlp(hidden_states))
        return self.hook_resid_post(attn_outputs + feed_forward_hidden_states + residual)


class PhiModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab"], cfg["d_model"])
        self.layers = nn.ModuleList([PhiDecoderLayer(cfg) for _ in range(cfg["n_layers"])])
        self.final_layernorm = nn.LayerNorm(cfg["d_model"], eps=1e-5)
        self.hook_embed = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, input_ids):
        batch_size, seq_length = input_ids.shape
        position_ids = torch.arange(0, seq_length, dtype=torch.long).unsqueeze(0)
        inputs_embeds = self.hook_embed(self.embed_tokens(input_ids))
        attention_mask = _causal_4d_mask(batch_size, seq_length, inputs_embeds.dtype)
        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask, position_ids)
        return self.hook_normalized(self.final_layernorm(hidden_states))


def _causal_4d_mask(bsz, tgt_len, dtype):
    """AttentionMaskConverter._make_causal_mask without past: [B,1,T,T], 0 / finfo.min."""
    mask = torch.full((tgt_len, tgt_len), torch.finfo(dtype).min)
    mask_cond = torch.arange(mask.size(-1))
    mask.masked_fill_(mask_cond < (mask_cond + 1).view(mask.size(-1), 1), 0)
    mask = mask.to(dtype)
    return mask[None, None, :, :].expand(bsz, 1, tgt_len, tgt_len)


class PhiForCausalLM(_Hooked):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = PhiModel(cfg)
        self.lm_head = nn.Linear(cfg["d_model"], cfg["vocab"], bias=True)

    def _inner(self):
        return self.model

    def _blocks(self):
        return self.model.layers

    def forward(self, input_ids):
        return self.lm_head(self.model(input_ids))


# ======================================================================================================
# Entries
# ======================================================================================================

TOKENIZER_TEXT = """
The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran into the forest.
Once upon a time there was a little girl who lived in a village near the forest. Whenever she went out,
the little girl wore a red riding cloak, so everyone in the village called her Little Red Riding Hood.
One morning, Little Red Riding Hood asked her mother if she could go to visit her grandmother, as it had
been a while since they had seen each other. That is a good idea, her mother said. So they packed a nice
basket for Little Red Riding Hood to take to her grandmother. When the basket was ready, the little girl
put on her red cloak and kissed her mother goodbye. Remember, go straight to grandmother's house, her
mother cautioned. Don't dawdle along the way and please don't talk to strangers! The woods are dangerous.
In the beginning the model reads the text, then it predicts the next token, and then the next one again.
Attention heads that copy a token which followed an earlier occurrence of the current token are called
induction heads; they are the simplest circuit that makes in-context learning possible in transformers.
"""

GPT2_TOKENIZER = bytelevel_tokenizer_json(TOKENIZER_TEXT, n_merges=95)
GPT2_VOCAB = len(GPT2_TOKENIZER["model"]["vocab"])  # 256 bytes + merges + <|endoftext|>


def _build(cls, cfg, seed, std, **kw):
    def build():
        torch.manual_seed(seed)
        model = cls(cfg, **kw)
        init_random(model, seed, std=std)
        return model.eval()
    return build


GPT2_CFG = base_cfg("gpt2", GPT2_VOCAB, d_model=64)
NEOX_CFG = base_cfg("gpt_neox", 384, d_model=64)
NEO_CFG = base_cfg("gpt_neo", 300, d_model=48)
OPT_CFG = base_cfg("opt", 272, d_model=48)
PHI_CFG = base_cfg("phi", 320, d_model=48)

ENTRIES = [
    Entry("gpt2", "gpt2", _build(GPT2LMHeadModel, GPT2_CFG, 11, 0.05), GPT2_CFG, tokenizer=GPT2_TOKENIZER, train=True,
          train_steps=1000, lr=3e-3, seed=11,
          notes="GPT2LMHeadModel: Conv1D (addmm) projections, gelu_new, tied lm_head; trained on induction over ids; "
                "byte-level BPE tokenizer.json beside the model"),
    Entry("gpt_neox", "gpt_neox", _build(GPTNeoXForCausalLM, NEOX_CFG, 12, 0.05), NEOX_CFG, train=True, parallel=True,
          train_steps=600, lr=3e-3, seed=12,
          notes="GPTNeoXForCausalLM (Pythia): fused per-head interleaved query_key_value, rotary_pct 0.25, "
                "use_parallel_residual, exact GELU, untied embed_out; trained on induction over ids"),
    Entry("gpt_neo", "gpt_neo", _build(GPTNeoForCausalLM, NEO_CFG, 13, 0.15), NEO_CFG,
          notes="GPTNeoForCausalLM: layer 0 global, layer 1 local (window 4), no 1/sqrt(d) scaling, q/k/v without "
                "bias, learned positions, tied lm_head; random weights"),
    Entry("opt", "opt", _build(OPTForCausalLM, OPT_CFG, 14, 0.15), OPT_CFG,
          notes="OPTForCausalLM: learned positions offset 2 from the attention-mask cumsum, q scaled before bmm, "
                "additive causal mask + max(finfo.min), ReLU MLP on a [B*T,D] view, tied lm_head; random weights"),
    Entry("phi", "phi", _build(PhiForCausalLM, PHI_CFG, 15, 0.15), PHI_CFG, parallel=True,
          notes="PhiForCausalLM: parallel block (attn and MLP read the same input_layernorm output), partial rotary "
                "0.5, gelu_new, dense out-proj, final_layernorm, lm_head with bias; random weights"),
    # variants (same weights as their base)
    Entry("gpt2-opset14", "gpt2", None, GPT2_CFG, variant="opset14", base="gpt2",
          notes="gpt2 exported at opset 14: LayerNorm decomposed into ReduceMean/Sub/Pow/Sqrt/Div primitives; "
                "reference shared with gpt2"),
    Entry("gpt2-opset18", "gpt2", None, GPT2_CFG, variant="opset18", base="gpt2",
          notes="gpt2 exported at opset 14 (LayerNorm decomposed) and converted to opset 18 by hand: ReduceMean's "
                "axes attribute moved to an int64 initializer input; reference shared with gpt2"),
    Entry("gpt2-fp16", "gpt2", None, GPT2_CFG, variant="fp16-weights", base="gpt2",
          notes="gpt2 with float16 initializers each followed by Cast(to=float32); compute in float32. Reference "
                "from PyTorch with the weights rounded to float16"),
    Entry("gpt2-int8", "gpt2", None, GPT2_CFG, variant="int8-dynamic", base="gpt2",
          notes="gpt2 dynamically quantized like onnxruntime quantize_dynamic (uint8 weights + scale/zero point, "
                "DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul [-> Add bias]). Its reference JSON holds "
                "the onnxruntime logits of this quantized file itself (no hooks); grads point at the float gpt2's. "
                "Tests should only check that it loads/traces or is refused clearly"),
    Entry("gpt_neox-extdata", "gpt_neox", None, NEOX_CFG, variant="external-data", base="gpt_neox", parallel=True,
          notes="gpt_neox saved with all initializers in gpt_neox-extdata.onnx.data (external data, one file, "
                "size_threshold 0); reference shared with gpt_neox"),
]
