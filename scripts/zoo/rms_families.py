#!/usr/bin/python3
"""RMSNorm families of the conformance zoo: Llama, Mistral, Qwen2, Gemma (see scripts/zoo/SPEC.md).

The model classes follow Hugging Face transformers' `modeling_llama.py` / `modeling_mistral.py` /
`modeling_qwen2.py` / `modeling_gemma.py` (eager attention, the 4.4x layout with one `model.rotary_emb`
shared by all layers): the same module tree (`model.embed_tokens`, `model.layers.N.self_attn.{q,k,v,o}_proj`,
`model.layers.N.mlp.{gate,up,down}_proj`, `model.layers.N.{input,post_attention}_layernorm`, `model.norm`,
`lm_head`), the same parameter layouts and the same operator order, so that `torch.onnx.export` gives the node
and initializer names of an optimum export (`/model/layers.0/self_attn/q_proj/MatMul`, ...). Written from a
reading of that code, not copied.

  - RMSNorm in float32: Llama-style `weight * x.to(dtype)`; Gemma-style `x * (1 + weight)`.
  - Rotary: inv_freq[None,:,None] @ position_ids[:,None,:] -> freqs, cat(freqs, freqs), cos, sin
    (MatMul, Concat, Cos, Sin in the export); `rotate_half` is Slice, Neg, Concat.
  - Causal mask as HF builds it: full((T, S), min) (ConstantOfShape), Llama/Qwen2/Gemma `torch.triu(.., 1)`
    (Trilu) then `*= arange(S) > cache_position[:, None]` (Range, Greater, Cast, Mul); Mistral
    `arange(S) > cache_position | arange(S) <= cache_position - sliding_window` (Or); then [None, None]
    .expand(B, 1, T, S) (Unsqueeze, Expand). With a 2-D attention_mask (merged-decoder variant) the padding
    columns are filled with min as well (Equal, Where).
  - GQA/MQA through `repeat_kv` (Unsqueeze, Expand, Reshape); Softmax in float32; MatMul with V.
  - Llama/Mistral/Qwen2 SwiGLU `down(silu(gate(x)) * up(x))`; Gemma GeGLU with gelu-tanh; Gemma scales the
    embeddings by sqrt(hidden_size) (a tensor of the hidden dtype) and ties lm_head to embed_tokens.
  - Qwen2: q/k/v projections with bias, o_proj without.
"""

import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


from common import HookPoint, apply_merge, pair_counts  # noqa: E402  (HookPoint: nn.Identity; no ONNX node)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


class Config:
    """The few fields of a Hugging Face config the models read (names as in LlamaConfig & co.)."""

    def __init__(self, arch, vocab_size, hidden_size, intermediate_size, num_attention_heads, num_key_value_heads,
                 head_dim=None, num_hidden_layers=2, max_position_embeddings=64, rope_theta=10000.0,
                 rms_norm_eps=1e-6, attention_bias=False, o_proj_bias=False, sliding_window=None,
                 tie_word_embeddings=False, hidden_act="silu"):
        self.arch = arch
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim if head_dim is not None else hidden_size // num_attention_heads
        self.num_hidden_layers = num_hidden_layers
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.attention_bias = attention_bias
        self.o_proj_bias = o_proj_bias
        self.sliding_window = sliding_window
        self.tie_word_embeddings = tie_word_embeddings
        self.hidden_act = hidden_act

    def zoo_config(self):
        """The `config` object of the reference JSON (SPEC.md)."""
        return {
            "n_layers": self.num_hidden_layers, "n_heads": self.num_attention_heads,
            "n_kv_heads": self.num_key_value_heads, "d_model": self.hidden_size, "d_head": self.head_dim,
            "d_mlp": self.intermediate_size, "vocab": self.vocab_size, "n_ctx": self.max_position_embeddings,
            "arch": self.arch,
        }


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


class LlamaRMSNorm(nn.Module):
    """HF LlamaRMSNorm (also Mistral's and Qwen2's): normalise in float32, cast back, then weight * x."""

    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class GemmaRMSNorm(nn.Module):
    """HF GemmaRMSNorm: weight stored as an offset from 1; (x_norm * (1 + w)) in float32, then cast back."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def _norm(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        output = self._norm(x.float())
        output = output * (1.0 + self.weight.float())
        return output.type_as(x)


class RotaryEmbedding(nn.Module):
    """HF LlamaRotaryEmbedding (default rope type): cos/sin of inv_freq (x) position_ids, computed per call."""

    def __init__(self, config):
        super().__init__()
        dim = config.head_dim
        base = config.rope_theta
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.attention_scaling = 1.0

    @torch.no_grad()
    def forward(self, x, position_ids):
        inv_freq_expanded = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        position_ids_expanded = position_ids[:, None, :].float()
        freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def rotate_half(x):
    """Rotates half the hidden dims of the input: (x1, x2) -> (-x2, x1)."""
    half = x.shape[-1] // 2
    x1 = x[..., :half]
    x2 = x[..., half:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    q_embed = (q * cos) + (rotate_half(q) * sin)
    k_embed = (k * cos) + (rotate_half(k) * sin)
    return q_embed, k_embed


def repeat_kv(hidden_states, n_rep):
    """[B, kvH, S, Dh] -> [B, kvH * n_rep, S, Dh], each kv head repeated n_rep times (expand + reshape)."""
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


class Attention(nn.Module):
    """HF LlamaAttention / MistralAttention / Qwen2Attention / GemmaAttention, eager path."""

    def __init__(self, config, layer_idx):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.hidden_size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.num_key_value_heads = config.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.scaling = self.head_dim ** -0.5
        bias = config.attention_bias
        self.q_proj = nn.Linear(self.hidden_size, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(self.hidden_size, self.num_key_value_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(self.hidden_size, self.num_key_value_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, self.hidden_size, bias=config.o_proj_bias)
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()
        # Each query head's query, key and value [B, H, T, d_head], keys and values after repeat_kv
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()

    def forward(self, hidden_states, attention_mask, position_embeddings, past_key_value=None):
        bsz, q_len, _ = hidden_states.size()
        query_states = self.q_proj(hidden_states)
        key_states = self.k_proj(hidden_states)
        value_states = self.v_proj(hidden_states)

        query_states = query_states.view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        key_states = key_states.view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        value_states = value_states.view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)

        cos, sin = position_embeddings
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)

        if past_key_value is not None:
            # the legacy tuple cache: keys after rotary, before repeat_kv, concatenated on the sequence axis
            key_states = torch.cat([past_key_value[0], key_states], dim=-2)
            value_states = torch.cat([past_key_value[1], value_states], dim=-2)
        present = (key_states, value_states)

        key_states = repeat_kv(key_states, self.num_key_value_groups)
        value_states = repeat_kv(value_states, self.num_key_value_groups)
        query_states, key_states, value_states = self.hook_q(query_states), self.hook_k(key_states), self.hook_v(value_states)

        if self.config.arch == "gemma":
            attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) * self.scaling
        else:
            attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) / math.sqrt(self.head_dim)

        if attention_mask is not None:
            causal_mask = attention_mask[:, :, :, : key_states.shape[-2]]
            attn_weights = attn_weights + causal_mask

        # upcast attention to fp32
        attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
        attn_weights = self.hook_pattern(attn_weights)
        attn_output = torch.matmul(attn_weights, value_states)

        attn_output = attn_output.transpose(1, 2).contiguous()
        attn_output = self.hook_z(attn_output)
        attn_output = attn_output.reshape(bsz, q_len, -1).contiguous()
        attn_output = self.o_proj(attn_output)
        return attn_output, present


class MLP(nn.Module):
    """HF LlamaMLP / GemmaMLP: down_proj(act(gate_proj(x)) * up_proj(x))."""

    def __init__(self, config):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.intermediate_size = config.intermediate_size
        self.gate_proj = nn.Linear(self.hidden_size, self.intermediate_size, bias=False)
        self.up_proj = nn.Linear(self.hidden_size, self.intermediate_size, bias=False)
        self.down_proj = nn.Linear(self.intermediate_size, self.hidden_size, bias=False)
        self.hidden_act = config.hidden_act

    def act_fn(self, x):
        if self.hidden_act == "gelu_pytorch_tanh":
            return F.gelu(x, approximate="tanh")
        return F.silu(x)

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.self_attn = Attention(config, layer_idx)
        self.mlp = MLP(config)
        norm = GemmaRMSNorm if config.arch == "gemma" else LlamaRMSNorm
        self.input_layernorm = norm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = norm(config.hidden_size, eps=config.rms_norm_eps)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, hidden_states, attention_mask, position_embeddings, past_key_value=None):
        hidden_states = self.hook_resid_pre(hidden_states)
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states, present = self.self_attn(hidden_states, attention_mask, position_embeddings, past_key_value)
        hidden_states = self.hook_attn_out(hidden_states)
        hidden_states = residual + hidden_states

        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        hidden_states = self.hook_mlp_out(hidden_states)
        hidden_states = residual + hidden_states
        return self.hook_resid_post(hidden_states), present


class Model(nn.Module):
    """HF LlamaModel / MistralModel / Qwen2Model / GemmaModel."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        norm = GemmaRMSNorm if config.arch == "gemma" else LlamaRMSNorm
        self.norm = norm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)
        self.hook_embed = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None):
        inputs_embeds = self.hook_embed(self.embed_tokens(input_ids))
        past_seen_tokens = past_key_values[0][0].shape[2] if past_key_values is not None else 0
        cache_position = torch.arange(past_seen_tokens, past_seen_tokens + inputs_embeds.shape[1])
        if position_ids is None:
            position_ids = cache_position.unsqueeze(0)

        causal_mask = self._update_causal_mask(attention_mask, inputs_embeds, cache_position, past_seen_tokens)

        hidden_states = inputs_embeds
        if self.config.arch == "gemma":
            # normalized by sqrt(hidden_size), the constant in the hidden states' dtype (as HF does)
            normalizer = torch.tensor(self.config.hidden_size ** 0.5, dtype=hidden_states.dtype)
            hidden_states = hidden_states * normalizer

        position_embeddings = self.rotary_emb(hidden_states, position_ids)

        presents = []
        for i, decoder_layer in enumerate(self.layers):
            past = past_key_values[i] if past_key_values is not None else None
            hidden_states, present = decoder_layer(hidden_states, causal_mask, position_embeddings, past)
            presents.append(present)

        hidden_states = self.norm(hidden_states)
        hidden_states = self.hook_normalized(hidden_states)
        return hidden_states, presents

    def _update_causal_mask(self, attention_mask, input_tensor, cache_position, past_seen_tokens):
        dtype = input_tensor.dtype
        min_dtype = torch.finfo(dtype).min
        batch_size, sequence_length = input_tensor.shape[0], input_tensor.shape[1]
        if attention_mask is not None:
            target_length = attention_mask.shape[-1]
        else:
            target_length = past_seen_tokens + sequence_length
        causal_mask = torch.full((sequence_length, target_length), fill_value=min_dtype, dtype=dtype)
        if self.config.arch == "mistral":
            # MistralModel: no triu; the diagonal mask or'ed with the sliding-window mask
            diagonal_attend_mask = torch.arange(target_length) > cache_position.reshape(-1, 1)
            if self.config.sliding_window is not None:
                sliding_attend_mask = torch.arange(target_length) <= (
                    cache_position.reshape(-1, 1) - self.config.sliding_window
                )
                diagonal_attend_mask = diagonal_attend_mask | sliding_attend_mask
            causal_mask = causal_mask * diagonal_attend_mask
        else:
            # LlamaModel (Qwen2, Gemma alike): triu then the cache-position mask
            causal_mask = torch.triu(causal_mask, diagonal=1)
            causal_mask = causal_mask * (torch.arange(target_length) > cache_position.reshape(-1, 1))
        causal_mask = causal_mask[None, None, :, :].expand(batch_size, 1, -1, -1)
        if attention_mask is not None:
            # the padding columns (attention_mask 0) where the causal mask allows: min as well. The 2-D mask
            # covers all S columns here, so HF's [..., :mask_length] slice is the whole tensor.
            padding_mask = causal_mask + attention_mask[:, None, None, :]
            padding_mask = padding_mask == 0
            causal_mask = causal_mask.masked_fill(padding_mask, min_dtype)
        return causal_mask


class ForCausalLM(nn.Module):
    """HF LlamaForCausalLM & co.: `model` + `lm_head` (tied to embed_tokens for Gemma).

    forward(input_ids) -> logits, the zoo's export signature. `forward_with_cache` is the optimum-style
    signature of the merged-decoder variant."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.cfg = config.zoo_config()
        self.model = Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids):
        hidden_states, _ = self.model(input_ids)
        return self.lm_head(hidden_states)

    def forward_with_cache(self, input_ids, attention_mask, position_ids, past_key_values=None):
        hidden_states, presents = self.model(input_ids, attention_mask, position_ids, past_key_values)
        return self.lm_head(hidden_states), presents

    def hook_points(self):
        m = self.model
        hooks = {"hook_embed": m.hook_embed}
        for L, layer in enumerate(m.layers):
            hooks[f"blocks.{L}.hook_resid_pre"] = layer.hook_resid_pre
            hooks[f"blocks.{L}.attn.hook_pattern"] = layer.self_attn.hook_pattern
            hooks[f"blocks.{L}.attn.hook_z"] = layer.self_attn.hook_z
            hooks[f"blocks.{L}.hook_attn_out"] = layer.hook_attn_out
            hooks[f"blocks.{L}.hook_mlp_out"] = layer.hook_mlp_out
            hooks[f"blocks.{L}.hook_resid_post"] = layer.hook_resid_post
        hooks["ln_final.hook_normalized"] = m.hook_normalized
        return hooks


def init_random(model, seed, std=0.15):
    """Random weights (std ~0.15 so the logits vary); norm weights random around their identity value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                if model.config.arch == "gemma":
                    p.copy_(torch.randn(p.shape, generator=g) * 0.2)  # stored offset from 1
                else:
                    p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.2)
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * std)


# --------------------------------------------------------------------------------------------------
# Tokenizers (Hugging Face tokenizers format)
# --------------------------------------------------------------------------------------------------

SPM = "\u2581"  # sentencepiece's word-boundary mark

CORPUS = """
The little model read the story again and again until it knew which word came next. When the
same names appeared twice, it looked back to the first time and copied what followed. Mary went
to the market in the morning; John stayed home and wrote a letter to his sister. In the evening
they walked along the river, talked about the weather, and counted the boats that passed under
the old stone bridge. Some of the children played in the garden while their parents were cooking
dinner. A quick brown fox jumps over the lazy dog. Numbers like 1, 2, 3, 10 and 2024 are written
with digits. Is this a question? Yes! It is: the answer, of course, is "induction".
Every token that repeats an earlier token predicts the token that came after it the first time.
"""


def _words(text):
    return text.split()


def _char_set(text):
    chars = sorted({c for c in text if not c.isspace()})
    return [SPM] + [c for c in chars if c != SPM]


def _tokenizer_header(specials):
    """The head of a Hugging Face tokenizer.json whose special tokens are the first ids."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
             "special": True}
            for i, t in enumerate(specials)
        ],
    }


def llama_bpe_tokenizer_json(vocab_size=384):
    """A Llama-2 style tokenizer.json: sentencepiece BPE converted to HF tokenizers — normalizer
    Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, BPE with byte_fallback (the 256 <0xNN> tokens at ids
    3..258 after <unk>, <s>, </s>), merges as "a b" strings, decoder Replace/ByteFallback/Fuse/Strip.
    Vocab ids: specials, bytes, merged pieces in merge order, then the single characters (sentencepiece
    orders its pieces by score, so the characters come last)."""
    import collections

    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    chars = _char_set(CORPUS)
    n_merges = vocab_size - len(specials) - len(byte_tokens) - len(chars)
    assert n_merges > 0, n_merges
    # words as sentencepiece sees them: "▁" + word (a leading space per word)
    words = collections.Counter(tuple(SPM + w) for w in _words(CORPUS))
    merges, merged = [], []
    for _ in range(n_merges):
        pairs = pair_counts(words)
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], -len(kv[0][0] + kv[0][1]), kv[0]))[0]
        tok = best[0] + best[1]
        merges.append(best)
        if tok not in merged and tok not in chars:
            merged.append(tok)
        words = apply_merge(words, best)
    pieces = specials + byte_tokens + merged + chars
    # top up with more single characters if merges ran out (keeps the vocab size exact)
    extra = iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789#$%&*+/<=>@[]^_`{|}~")
    while len(pieces) < vocab_size:
        c = next(extra)
        if c not in pieces:
            pieces.append(c)
    assert len(pieces) == vocab_size and len(set(pieces)) == vocab_size
    vocab = {p: i for i, p in enumerate(pieces)}
    return {
        **_tokenizer_header(specials),
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPM},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPM},
        ]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPM}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "vocab": vocab,
                  "merges": [f"{a} {b}" for a, b in merges]},
    }


def unigram_tokenizer_json(vocab_size=320):
    """A sentencepiece Unigram tokenizer.json (as converted for T5/ALBERT-like models): Metaspace
    pre-tokenizer and decoder ("▁", prepend always), model Unigram with [piece, log-probability] pairs.
    Specials in Gemma's order: <pad> 0, <eos> 1, <bos> 2, <unk> 3. Pieces: "▁word" for the corpus words
    (most frequent first), common sub-word pieces, then every single character so any corpus text
    segments without <unk>."""
    import collections
    import math as _m

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    chars = _char_set(CORPUS)
    words = collections.Counter(SPM + w.strip('.,;:!?"') for w in _words(CORPUS))
    subs = collections.Counter()
    for w in _words(CORPUS):
        w = w.strip('.,;:!?"')
        for n in (2, 3, 4):
            for i in range(len(w) - n + 1):
                subs[w[i:i + n]] += 1
    pieces, scores = [], {}
    total = sum(words.values()) + sum(subs.values())
    budget = vocab_size - len(specials) - len(chars)
    for w, c in words.most_common():
        if len(pieces) >= budget * 2 // 3:
            break
        if len(w) > 1 and w not in pieces:
            pieces.append(w)
            scores[w] = _m.log(c / total)
    for s, c in subs.most_common():
        if len(pieces) >= budget:
            break
        if s not in pieces and s not in chars:
            pieces.append(s)
            scores[s] = _m.log(c / total) - 1.0
    for i, c in enumerate(chars):
        scores[c] = -8.0 - 0.01 * i
    scores[SPM] = -3.0
    ordered = sorted(pieces, key=lambda p: -scores[p]) + chars
    ordered = ordered[: vocab_size - len(specials)]
    vocab = [[s, 0.0] for s in specials] + [[p, round(scores[p], 4)] for p in ordered]
    assert len(vocab) == vocab_size and len({p for p, _ in vocab}) == vocab_size
    return {
        **_tokenizer_header(specials),
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": SPM, "prepend_scheme": "always", "split": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}},
        },
        "decoder": {"type": "Metaspace", "replacement": SPM, "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": False},
    }


# --------------------------------------------------------------------------------------------------
# The optimum-style merged decoder (decoder_model_merged.onnx)
# --------------------------------------------------------------------------------------------------


class _NoPast(nn.Module):
    """decoder_model.onnx: (input_ids, attention_mask, position_ids) -> (logits, present.L.key/value...)."""

    def __init__(self, lm):
        super().__init__()
        # the same submodules under the same names, so the export's initializers are model.* / lm_head
        self.model, self.lm_head = lm.model, lm.lm_head

    def forward(self, input_ids, attention_mask, position_ids):
        logits, presents = ForCausalLM.forward_with_cache(self, input_ids, attention_mask, position_ids, None)
        return (logits,) + tuple(t for kv in presents for t in kv)


class _WithPast(nn.Module):
    """decoder_with_past_model.onnx: the same plus past_key_values.L.key/value [B, kvH, past, Dh]."""

    def __init__(self, lm):
        super().__init__()
        self.model, self.lm_head = lm.model, lm.lm_head

    def forward(self, input_ids, attention_mask, position_ids, *past):
        pkv = [(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)]
        logits, presents = ForCausalLM.forward_with_cache(self, input_ids, attention_mask, position_ids, pkv)
        return (logits,) + tuple(t for kv in presents for t in kv)


def _kv_names(n_layers, prefix):
    return [f"{prefix}.{L}.{kind}" for L in range(n_layers) for kind in ("key", "value")]


def export_merged_decoder(lm, path, opset=17):
    """Exports the decoder without and with past, and merges them the way optimum's merge_decoders does:
    one `If` on use_cache_branch (then = with past, else = without past), the branches' initializers
    hoisted to the outer graph (identical tensors shared, colliding names renamed), outer inputs the union
    (input_ids, attention_mask, position_ids, past_key_values.L.key/value, use_cache_branch), outputs logits
    and present.L.key/value. Returns the merged onnx.ModelProto."""
    import tempfile

    import onnx
    from onnx import TensorProto, helper

    lm.eval()
    cfg = lm.config
    nL, kvH, Dh = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim
    past_names = _kv_names(nL, "past_key_values")
    present_names = _kv_names(nL, "present")
    B, T, P = 2, 3, 4
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(1, cfg.vocab_size, (B, T), generator=gen)
    dyn_common = {"input_ids": {0: "batch_size", 1: "sequence_length"},
                  "position_ids": {0: "batch_size", 1: "sequence_length"},
                  "logits": {0: "batch_size", 1: "sequence_length"}}
    with tempfile.TemporaryDirectory() as tmp:
        p_no, p_with = os.path.join(tmp, "decoder_model.onnx"), os.path.join(tmp, "decoder_with_past_model.onnx")
        mask = torch.ones(B, T, dtype=torch.int64)
        pos = torch.arange(T).unsqueeze(0).expand(B, T).contiguous()
        dyn = dict(dyn_common, attention_mask={0: "batch_size", 1: "sequence_length"})
        dyn.update({n: {0: "batch_size", 2: "sequence_length"} for n in present_names})
        torch.onnx.export(_NoPast(lm), (ids, mask, pos), p_no, input_names=["input_ids", "attention_mask", "position_ids"],
                          output_names=["logits"] + present_names, dynamic_axes=dyn, opset_version=opset,
                          do_constant_folding=True)
        past = tuple(torch.randn(B, kvH, P, Dh, generator=gen) for _ in past_names)
        mask = torch.ones(B, P + T, dtype=torch.int64)
        pos = (P + torch.arange(T)).unsqueeze(0).expand(B, T).contiguous()
        dyn = dict(dyn_common, attention_mask={0: "batch_size", 1: "past_sequence_length + sequence_length"})
        dyn.update({n: {0: "batch_size", 2: "past_sequence_length"} for n in past_names})
        dyn.update({n: {0: "batch_size", 2: "past_sequence_length + sequence_length"} for n in present_names})
        torch.onnx.export(_WithPast(lm), (ids, mask, pos) + past, p_with,
                          input_names=["input_ids", "attention_mask", "position_ids"] + past_names,
                          output_names=["logits"] + present_names, dynamic_axes=dyn, opset_version=opset,
                          do_constant_folding=True)
        m_no, m_with = onnx.load(p_no), onnx.load(p_with)

    # Initializers: everything to the outer graph; a with-past tensor equal to a no-past one is shared
    # (renamed to it), a different tensor under a name the no-past graph already uses is renamed.
    def key(t):
        return (t.data_type, tuple(t.dims), t.SerializeToString().replace(t.name.encode(), b""))

    outer, by_content = {}, {}
    for t in m_no.graph.initializer:
        outer[t.name] = t
        by_content.setdefault(key(t), t.name)
    rename = {}
    for t in m_with.graph.initializer:
        k = key(t)
        if k in by_content:
            if by_content[k] != t.name:
                rename[t.name] = by_content[k]
            continue
        if t.name in outer:
            new = f"{t.name}_with_past"
            rename[t.name] = new
            t = onnx.TensorProto.FromString(t.SerializeToString())
            t.name = new
        outer[t.name] = t
        by_content[k] = t.name
    with_nodes = list(m_with.graph.node)
    for n in with_nodes:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]

    def branch_outputs(g):
        return [helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None) for o in g.output]

    no_past = helper.make_graph(list(m_no.graph.node), "no_past", [], branch_outputs(m_no.graph))
    with_past = helper.make_graph(with_nodes, "with_past", [], branch_outputs(m_with.graph))
    if_node = helper.make_node("If", ["use_cache_branch"], ["logits"] + present_names, name="optimum::if",
                               then_branch=with_past, else_branch=no_past)
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("input_ids", i64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", i64, ["batch_size", "attention_mask_sequence_length"]),
        helper.make_tensor_value_info("position_ids", i64, ["batch_size", "sequence_length"]),
    ] + [helper.make_tensor_value_info(n, f32, ["batch_size", kvH, "past_sequence_length", Dh]) for n in past_names] + [
        helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1]),
    ]
    outputs = [helper.make_tensor_value_info("logits", f32, ["batch_size", "sequence_length", cfg.vocab_size])] + [
        helper.make_tensor_value_info(n, f32, ["batch_size", kvH, "present_sequence_length", Dh]) for n in present_names]
    graph = helper.make_graph([if_node], "merged_decoder", inputs, outputs, initializer=list(outer.values()))
    merged = helper.make_model(graph, opset_imports=list(m_with.opset_import), producer_name="circuitlens-zoo")
    merged.ir_version = m_with.ir_version
    onnx.checker.check_model(merged)
    onnx.save(merged, path)
    return merged


MERGED_RUNNER = r"""
const fs = require('fs');
const ort = require('onnxruntime-node');
(async () => {
  const [model, input, output] = process.argv.slice(1);
  const cases = JSON.parse(fs.readFileSync(input, 'utf8'));
  const session = await ort.InferenceSession.create(model);
  const results = [];
  for (const feedsIn of cases) {
    const feeds = {};
    for (const [name, t] of Object.entries(feedsIn)) {
      const buf = Buffer.from(t.b64, 'base64');
      const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
      const data = t.type === 'int64' ? new BigInt64Array(ab) : t.type === 'bool' ? new Uint8Array(ab) : new Float32Array(ab);
      feeds[name] = new ort.Tensor(t.type, data, t.shape);
    }
    const out = await session.run(feeds);
    const res = {};
    for (const name of session.outputNames) {
      const t = out[name];
      res[name] = { shape: t.dims, b64: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('base64') };
    }
    results.push(res);
  }
  fs.writeFileSync(output, JSON.stringify(results));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def run_onnx_feeds(path, cases):
    """cases: [{name: tensor}] (int64, float32 or bool tensors) -> [{output name: float32 tensor}], run by
    onnxruntime-node from the repo's node_modules."""
    import base64
    import subprocess
    import tempfile

    import numpy as np

    root = os.path.dirname(os.path.dirname(HERE))

    def enc(t):
        if t.dtype == torch.int64:
            typ, arr = "int64", t.numpy().astype("<i8")
        elif t.dtype == torch.bool:
            typ, arr = "bool", t.numpy().astype(np.uint8)
        else:
            typ, arr = "float32", t.numpy().astype("<f4")
        return {"type": typ, "shape": list(t.shape), "b64": base64.b64encode(arr.tobytes()).decode("ascii")}

    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = os.path.join(tmp, "in.json"), os.path.join(tmp, "out.json")
        with open(inp, "w") as f:
            json.dump([{k: enc(v.contiguous()) for k, v in c.items()} for c in cases], f)
        subprocess.run(["node", "-e", MERGED_RUNNER, os.path.abspath(path), inp, outp], cwd=root, check=True)
        with open(outp) as f:
            res = json.load(f)
    return [{k: torch.from_numpy(np.frombuffer(base64.b64decode(v["b64"]), dtype="<f4").copy()).reshape(v["shape"])
             for k, v in r.items()} for r in res]


def check_merged_decoder(lm, path, tol=1e-4):
    """Runs the merged decoder with onnxruntime-node against PyTorch:
      1. use_cache_branch false, empty past [B, kvH, 0, Dh], all-ones mask: logits and presents vs
         forward_with_cache without past (and the logits vs the plain forward);
      2. two steps: the first T1 tokens (no-past branch), then T2 tokens with use_cache_branch true and the
         first step's presents as past: logits vs the full forward's last T2 positions, presents vs PyTorch;
      3. a left-padded batch through the no-past branch (attention_mask zeros, shifted position_ids) vs PyTorch.
    Returns the largest abs difference seen."""
    cfg = lm.config
    nL, kvH, Dh = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim
    past_names = _kv_names(nL, "past_key_values")
    present_names = _kv_names(nL, "present")
    gen = torch.Generator().manual_seed(11)
    B, T1, T2 = 2, 12, 6
    ids = torch.randint(1, cfg.vocab_size, (B, T1 + T2), generator=gen)

    def feeds(x, mask, pos, past, use_cache):
        d = {"input_ids": x, "attention_mask": mask, "position_ids": pos}
        for n, t in zip(past_names, past):
            d[n] = t
        d["use_cache_branch"] = torch.tensor([use_cache])
        return d

    empty = [torch.zeros(B, kvH, 0, Dh) for _ in past_names]
    pos_all = torch.arange(T1 + T2).unsqueeze(0).expand(B, -1).contiguous()
    with torch.no_grad():
        full = lm(ids)
        l1, pres1 = lm.forward_with_cache(ids[:, :T1], torch.ones(B, T1, dtype=torch.int64), pos_all[:, :T1])
        pres1 = [t for kv in pres1 for t in kv]
        l2, pres2 = lm.forward_with_cache(ids[:, T1:], torch.ones(B, T1 + T2, dtype=torch.int64), pos_all[:, T1:],
                                          [(pres1[2 * i], pres1[2 * i + 1]) for i in range(nL)])
        pres2 = [t for kv in pres2 for t in kv]
        # left padding: row 0 has 3 pad tokens
        pad_mask = torch.ones(B, T1, dtype=torch.int64)
        pad_mask[0, :3] = 0
        pad_pos = (pad_mask.cumsum(-1) - 1).clamp(min=0)
        l3, _ = lm.forward_with_cache(ids[:, :T1], pad_mask, pad_pos)
    assert (l1 - full[:, :T1]).abs().max() <= tol and (l2 - full[:, T1:]).abs().max() <= tol

    cases = [feeds(ids[:, :T1], torch.ones(B, T1, dtype=torch.int64), pos_all[:, :T1], empty, False)]
    r1 = run_onnx_feeds(path, cases)[0]
    past = [r1[n] for n in present_names]
    cases = [feeds(ids[:, T1:], torch.ones(B, T1 + T2, dtype=torch.int64), pos_all[:, T1:], past, True),
             feeds(ids[:, :T1], pad_mask, pad_pos, empty, False)]
    # 4. the reference prompts (common.make_prompts) through the no-past branch
    ref_ids = torch.tensor([q["ids"] for q in _common().make_prompts(cfg.vocab_size)], dtype=torch.int64)
    Br, Tr = ref_ids.shape
    with torch.no_grad():
        l4 = lm(ref_ids)
    cases.append(feeds(ref_ids, torch.ones(Br, Tr, dtype=torch.int64),
                       torch.arange(Tr).unsqueeze(0).expand(Br, -1).contiguous(),
                       [torch.zeros(Br, kvH, 0, Dh) for _ in past_names], False))
    r2, r3, r4 = run_onnx_feeds(path, cases)
    diffs = {
        "no-past logits": (r1["logits"] - l1).abs().max().item(),
        "no-past presents": max((r1[n] - t).abs().max().item() for n, t in zip(present_names, pres1)),
        "with-past logits vs full forward": (r2["logits"] - full[:, T1:]).abs().max().item(),
        "with-past presents": max((r2[n] - t).abs().max().item() for n, t in zip(present_names, pres2)),
        "left-padded logits (valid positions)": (r3["logits"][1] - l3[1]).abs().max().item(),
        "left-padded logits row 0 (non-pad)": (r3["logits"][0, 3:] - l3[0, 3:]).abs().max().item(),
        "reference prompts logits (no past)": (r4["logits"] - l4).abs().max().item(),
    }
    for k, v in diffs.items():
        print(f"    merged decoder {k}: max |onnx - torch| = {v:.2e}")
    worst = max(diffs.values())
    assert worst <= tol, diffs
    return worst


# --------------------------------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------------------------------


def _common():
    import common

    return common


def init_hf(model, seed, std=0.02):
    """Hugging Face's _init_weights (normal(0, initializer_range) matrices, zero biases, RMSNorm at identity):
    the starting point for the trained entry."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                p.copy_(torch.zeros_like(p) if model.config.arch == "gemma" else torch.ones_like(p))
    return model


LLAMA_VOCAB = 384
GEMMA_VOCAB = 320

CONFIGS = {
    # Llama: GQA 4 query heads over 2 kv heads, SwiGLU, RMSNorm; trained on induction
    "llama": Config("llama", LLAMA_VOCAB, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                    num_key_value_heads=2, rms_norm_eps=1e-5),
    # Mistral: GQA and a sliding window of 4 in the mask
    "mistral": Config("mistral", 320, hidden_size=48, intermediate_size=96, num_attention_heads=4,
                      num_key_value_heads=2, sliding_window=4, rms_norm_eps=1e-5),
    # Qwen2: q/k/v with bias, o_proj without; GQA
    "qwen2": Config("qwen2", 288, hidden_size=64, intermediate_size=112, num_attention_heads=4,
                    num_key_value_heads=2, attention_bias=True, rms_norm_eps=1e-6, rope_theta=1000000.0),
    # Gemma: MQA (1 kv head), head_dim 16 with hidden 32 (4 * 16 != 32), GeGLU (gelu tanh), sqrt(d)-scaled
    # embeddings, RMSNorm (1 + w), lm_head tied to embed_tokens
    "gemma": Config("gemma", GEMMA_VOCAB, hidden_size=32, intermediate_size=96, num_attention_heads=4,
                    num_key_value_heads=1, head_dim=16, hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True,
                    rms_norm_eps=1e-6),
}


def _builder(name, trained, seed):
    def build():
        torch.manual_seed(seed)
        model = ForCausalLM(CONFIGS[name])
        if trained:
            init_hf(model, seed)
        else:
            init_random(model, seed, std=0.2 if CONFIGS[name].hidden_size <= 48 else 0.15)
        return model.eval()
    return build


def _entries():
    from common import Entry

    llama_cfg = CONFIGS["llama"].zoo_config()
    c = CONFIGS
    return [
        Entry("llama", "llama", _builder("llama", True, 4321), llama_cfg, tokenizer=llama_bpe_tokenizer_json(LLAMA_VOCAB),
              train=True, train_steps=1500, lr=3e-3, seed=4321,
              notes="LlamaForCausalLM: GQA (4 q / 2 kv heads, repeat_kv Expand+Reshape), rotary (MatMul of inv_freq and "
                    "positions, Cos/Sin; rotate_half Slice/Neg/Concat), causal mask ConstantOfShape+Trilu+Range/Greater+"
                    "Expand, RMSNorm Pow/ReduceMean/Sqrt/Div, SwiGLU (Sigmoid*x); trained on induction over ids; "
                    "SentencePiece-style BPE tokenizer.json with byte_fallback"),
        Entry("mistral", "mistral", _builder("mistral", False, 101), c["mistral"].zoo_config(),
              notes="MistralForCausalLM: GQA (4 q / 2 kv), sliding window 4 in the mask (Range, Greater, Sub, "
                    "LessOrEqual, Or, Cast, Mul; no Trilu); random weights"),
        Entry("qwen2", "qwen2", _builder("qwen2", False, 202), c["qwen2"].zoo_config(),
              notes="Qwen2ForCausalLM: q/k/v projections with bias (MatMul+Add), o_proj without; GQA (4 q / 2 kv); "
                    "rope_theta 1e6; random weights"),
        Entry("gemma", "gemma", _builder("gemma", False, 303), c["gemma"].zoo_config(),
              tokenizer=unigram_tokenizer_json(GEMMA_VOCAB),
              notes="GemmaForCausalLM: MQA (1 kv head), head_dim 16 with d_model 32, embeddings * sqrt(32), RMSNorm "
                    "x*(1+w), GeGLU gelu-tanh (Tanh), attention scaled by Mul, lm_head tied to embed_tokens; random "
                    "weights; Unigram tokenizer.json (Metaspace)"),
        Entry("llama-opset14", "llama", None, llama_cfg, variant="opset14", base="llama",
              notes="the trained llama exported at opset 14 (Trilu's first opset)"),
        Entry("llama-merged", "llama", None, llama_cfg, variant="merged-decoder", base="llama",
              extra={"export": export_merged_decoder, "check": check_merged_decoder},
              notes="the trained llama as an optimum decoder_model_merged.onnx: inputs input_ids, attention_mask "
                    "[B, past+T], position_ids, past_key_values.{L}.key/.value [B, 2, past, 16], use_cache_branch "
                    "(bool [1]); outputs logits, present.{L}.key/.value; one If (then: with past, else: without) "
                    "with the initializers hoisted to the outer graph. Reference = the plain forward (use_cache_branch "
                    "false, empty past, all-ones mask, positions 0..T-1)"),
        Entry("llama-fp16", "llama", None, llama_cfg, variant="fp16-weights", base="llama",
              notes="the trained llama with float16 initializers, each Cast to float32 (compute float32); the "
                    "reference uses the fp16-rounded weights"),
    ]


ENTRIES = _entries()
