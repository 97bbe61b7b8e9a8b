"""Phi-3-small (`phi3small`, remote code): GQA with block-sparse attention on alternate layers.

Layers where (i + 1) % dense_attention_every_n_layers != 0 attend block-sparsely (local blocks
plus a vertical stride), but a token may still attend to any earlier vertical block, so every
layer keeps K and V for the whole sequence: all layers are FULL here (vLLM phi3_small.py keeps
one paged cache per layer either way). Weights (vLLM Phi3SmallForCausalLM): fused
query_key_value and dense with biases, a GeGLU up_proj of 2 x ff_intermediate_size, LayerNorms
with bias, tied embeddings (mup).
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import FULL, ModelSpec, Tensor
from . import common as K


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    cfg2 = {**cfg, "intermediate_size": C.get_int(cfg, "ff_intermediate_size", "intermediate_size")}
    d = K.dims(cfg2, tied_default=True, dtype_default="bfloat16")
    h, ff = d.hidden, d.inter
    q, kv = d.n_heads * d.head_dim, d.n_kv * d.head_dim
    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    for i in range(d.n_layers):
        p = f"layers.{i}."
        tensors += [K.linear(p + "query_key_value", q + 2 * kv, h, K.COL), K.vec(p + "query_key_value_bias", q + 2 * kv, K.BIAS, K.COL),
                    K.linear(p + "dense", h, q, K.ROW), K.vec(p + "dense_bias", h, K.BIAS)]
        tensors += [K.linear(p + "up_proj", 2 * ff, h, K.COL), K.vec(p + "up_proj_bias", 2 * ff, K.BIAS, K.COL),
                    K.linear(p + "down_proj", h, ff, K.ROW), K.vec(p + "down_proj_bias", h, K.BIAS)]
        tensors += K.norm(p + "norm0", h, bias=True) + K.norm(p + "norm1", h, bias=True)
    tensors += K.norm("norm", h, bias=True) + K.lm_head(d.vocab, h, d.tied)
    layers = [K.attention_layer(FULL, d.n_kv, d.head_dim, d.n_heads)] * d.n_layers
    every = C.get_int(cfg, "dense_attention_every_n_layers", default=2)
    notes = [f"block-sparse attention on {sum((i + 1) % every != 0 for i in range(d.n_layers))} layers; "
             "their K/V are still kept for every token"]
    return K.spec(cfg, name, source, d, layers, tensors, notes=notes)
