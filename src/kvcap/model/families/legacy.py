"""Older dense decoders with their own config names: GPT-2, GPT-BigCode (StarCoder v1),
GPT-NeoX (Pythia, RedPajama), GPT-J, Phi-1/1.5/2 (`phi`, and `phi-msft` remote code), Qwen v1.

All attend fully on every layer; only their tensor layouts differ. Shapes from transformers
modeling_gpt2.py, modeling_gpt_bigcode.py, modeling_gpt_neox.py, modeling_gptj.py,
modeling_phi.py, and Qwen v1's modeling_qwen.py (QWenAttention, QWenMLP: two halves of
intermediate_size).
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import FULL, OTHER, REP, ModelSpec, Tensor
from . import common as K

# model_type -> embeddings tied unless the config says otherwise (GPT2Config, GPTBigCodeConfig)
_TIED = {"gpt2": True, "gpt_bigcode": True}
# learned absolute position tables [n_positions, hidden]
_WPE = {"gpt2", "gpt_bigcode"}


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    mt = C.get_str(cfg, "model_type")
    if mt == "gpt_bigcode" and C.get_bool(cfg, "multi_query", True):
        cfg = {**cfg, "num_key_value_heads": 1}   # MQA: one K/V head (GPTBigCodeAttention)
    if mt == "qwen" and "kv_channels" in cfg and "head_dim" not in cfg:
        cfg = {**cfg, "head_dim": cfg["kv_channels"]}
    d = K.dims(cfg, tied_default=_TIED.get(mt, False), dtype_default="float32" if mt in _WPE else "float16")
    h, kv = d.hidden, d.n_kv * d.head_dim
    q = d.n_heads * d.head_dim
    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    if mt in _WPE:
        tensors.append(Tensor("wpe", (C.get_int(cfg, "n_positions", "max_position_embeddings"), h), OTHER, REP))
    for i in range(d.n_layers):
        p = f"layers.{i}."
        if mt == "gptj":
            tensors += K.attention(p, h, d.n_heads, d.n_kv, d.head_dim)
            tensors += K.plain_mlp(p, h, d.inter, bias=True) + K.norm(p + "norm0", h, bias=True)
        elif mt in ("phi", "phi-msft"):
            tensors += K.attention(p, h, d.n_heads, d.n_kv, d.head_dim, qkv_bias=True, o_bias=True)
            tensors += K.plain_mlp(p, h, d.inter, bias=True) + K.norm(p + "norm0", h, bias=True)
        elif mt == "qwen":
            no_bias = C.get_bool(cfg, "no_bias", True)
            half = d.inter // 2
            tensors += K.attention(p, h, d.n_heads, d.n_kv, d.head_dim, qkv_bias=True, o_bias=not no_bias)
            tensors += K.gated_mlp(p, h, half, bias=not no_bias) + K.norm(p + "norm0", h) + K.norm(p + "norm1", h)
        else:   # gpt2, gpt_bigcode, gpt_neox: biased attention and MLP, two LayerNorms with bias
            tensors += [K.linear(p + "c_attn", q + 2 * kv, h, K.COL), K.vec(p + "c_attn_bias", q + 2 * kv, K.BIAS, K.COL),
                        K.linear(p + "o_proj", h, q, K.ROW), K.vec(p + "o_bias", h, K.BIAS)]
            tensors += K.plain_mlp(p, h, d.inter, bias=True)
            tensors += K.norm(p + "norm0", h, bias=True) + K.norm(p + "norm1", h, bias=True)
    ln_bias = mt != "qwen"
    tensors += K.norm("norm", h, bias=ln_bias)
    tensors += K.lm_head(d.vocab, h, d.tied, bias=mt in ("gptj", "phi", "phi-msft"))
    layers = [K.attention_layer(FULL, d.n_kv, d.head_dim, d.n_heads)] * d.n_layers
    return K.spec(cfg, name, source, d, layers, tensors)
