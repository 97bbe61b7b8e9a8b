"""Llama 4 text model (Scout, Maverick): chunked local attention with NoPE global layers, MoE.

Three of every four layers use RoPE and attend only inside their chunk of
`attention_chunk_size` tokens (8192); every fourth layer has no RoPE and attends globally
(transformers configuration_llama4.py, Llama4TextConfig.__post_init__: `no_rope_layers`
default, then `layer_types`). MoE layers (`moe_layers`, or every interleave_moe_layer_step-th)
hold all routed experts and one shared expert of `intermediate_size`; the others a dense MLP of
`intermediate_size_mlp`. The qk norm (use_qk_norm) is a weightless L2 norm.
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import CHUNKED, FULL, ModelSpec, Tensor
from . import common as K


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    d = K.dims(cfg, dtype_default="bfloat16")
    h = d.hidden
    n_exp = C.get_int(cfg, "num_local_experts", default=16)
    top_k = C.get_int(cfg, "num_experts_per_tok", default=1)
    inter_mlp = C.get_int(cfg, "intermediate_size_mlp", default=16384)
    moe_layers = _moe_layers(cfg, d.n_layers)
    bias = C.get_bool(cfg, "attention_bias", False)

    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    for i in range(d.n_layers):
        p = f"layers.{i}."
        tensors += K.attention(p, h, d.n_heads, d.n_kv, d.head_dim, qkv_bias=bias, o_bias=bias)
        if i in moe_layers:
            tensors += K.router(p, n_exp, h)
            tensors += K.experts(p, n_exp, h, d.inter)
            tensors += K.gated_mlp(p + "shared_expert.", h, d.inter)
        else:
            tensors += K.gated_mlp(p, h, inter_mlp)
        tensors += K.norm(p + "norm0", h) + K.norm(p + "norm1", h)
    tensors += K.norm("norm", h) + K.lm_head(d.vocab, h, d.tied)

    types = K.layer_types(cfg, d.n_layers, ("full_attention", "chunked_attention"))
    chunk = K.optional(cfg, "attention_chunk_size")
    if types is None:
        interval = C.get_int(cfg, "no_rope_layer_interval", default=4)
        rope = cfg.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(d.n_layers)]
        if not isinstance(rope, list) or len(rope) != d.n_layers:
            raise C.ModelError(f"config field 'no_rope_layers' must list 0/1 for each of {d.n_layers} layers")
        # 1 = this layer uses RoPE (and so is chunked), 0 = NoPE global layer
        types = ["chunked_attention" if r and chunk else "full_attention" for r in rope]
    if "chunked_attention" in types and not chunk:
        raise C.ModelError("config declares chunked_attention layers but no attention_chunk_size")
    layers = [K.attention_layer(CHUNKED if t == "chunked_attention" else FULL, d.n_kv, d.head_dim, d.n_heads,
                                window=chunk if t == "chunked_attention" else None) for t in types]
    return K.spec(cfg, name, source, d, layers, tensors, num_experts=n_exp, experts_per_token=top_k)


def _moe_layers(cfg: Mapping[str, Any], n_layers: int) -> set[int]:
    explicit = cfg.get("moe_layers")
    if explicit is not None:
        if not isinstance(explicit, list) or not all(isinstance(i, int) and 0 <= i < n_layers for i in explicit):
            raise C.ModelError(f"config field 'moe_layers' must list layer indices below {n_layers}")
        return set(explicit)
    step = C.get_int(cfg, "interleave_moe_layer_step", default=1)
    return set(range(step - 1, n_layers, step))
