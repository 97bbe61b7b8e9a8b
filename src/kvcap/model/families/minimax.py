"""MiniMax-Text-01 / MiniMax-M1: lightning (linear) attention with one softmax layer in eight.

`attn_type_list` (M1's remote config: 0 = lightning, 1 = softmax) or `layer_types`
(transformers configuration_minimax.py) gives the schedule. A lightning layer keeps one
[head_dim, head_dim] state per head and sequence (vLLM minimax_text_01.py
MiniMaxText01LinearAttention; `linear_attention_state_shape`), whatever the length; its weights
are a fused qkv_proj, an output gate, a norm over heads x head_dim and out_proj (transformers
modeling_minimax.py MiniMaxLightningAttention). Every layer's MLP is MoE (all experts resident).
"""

from __future__ import annotations

from typing import Any, Mapping

from ...errors import ModelError
from .. import config as C
from ..spec import FULL, RECURRENT, Layer, ModelSpec, StateTensor, Tensor
from . import common as K


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    d = K.dims(cfg, dtype_default="bfloat16")
    h, n = d.hidden, d.n_layers
    types = K.layer_types(cfg, n, ("full_attention", "linear_attention"))
    if types is None:
        raw = cfg.get("attn_type_list")
        # type() is int: a nested list is unhashable in a set, a bool is no layer type.
        if not isinstance(raw, list) or len(raw) != n or not all(type(t) is int and t in (0, 1) for t in raw):
            raise ModelError(f"a MiniMax config needs attn_type_list (0/1 per layer) or layer_types for {n} layers")
        types = ["full_attention" if t == 1 else "linear_attention" for t in raw]
    n_exp, top_k = C.get_int(cfg, "num_local_experts"), C.get_int(cfg, "num_experts_per_tok")
    shared = C.get_int(cfg, "shared_intermediate_size", default=0, minimum=0)
    width = d.n_heads * d.head_dim
    state = (StateTensor("kv", (d.n_heads, d.head_dim, d.head_dim)),)

    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    layers: list[Layer] = []
    for i, t in enumerate(types):
        p = f"layers.{i}."
        if t == "full_attention":
            tensors += K.attention(p, h, d.n_heads, d.n_kv, d.head_dim)
            layers.append(K.attention_layer(FULL, d.n_kv, d.head_dim, d.n_heads))
        else:
            tensors += [K.linear(p + "linear_attn.qkv_proj", 3 * width, h, K.COL),
                        K.linear(p + "linear_attn.output_gate", width, h, K.COL),
                        K.vec(p + "linear_attn.norm", width, shard=K.COL),
                        K.linear(p + "linear_attn.out_proj", h, width, K.ROW)]
            layers.append(Layer(RECURRENT, state=state))
        tensors += K.router(p, n_exp, h, name="gate") + K.experts(p, n_exp, h, d.inter)
        if shared:
            tensors += K.gated_mlp(p + "shared_mlp.", h, shared) + [K.linear(p + "coefficient", 1, h, K.REP)]
        tensors += [K.vec(p + "norm0", h), K.vec(p + "norm1", h)]
    tensors += K.norm("norm", h) + K.lm_head(d.vocab, h, d.tied)
    return K.spec(cfg, name, source, d, layers, tensors, num_experts=n_exp, experts_per_token=top_k)
