"""GPT-OSS (openai/gpt-oss-20b, -120b): alternating 128-token sliding and full attention, MoE.

`layer_types` lists the schedule (sliding first, then full, alternating); `sliding_window` is
128. Each attention layer has learned "sinks": one logit per query head added to the softmax
denominator (a weight, transformers modeling_gpt_oss.py GptOssAttention.sinks) — they keep no
extra tokens in the cache, so `Layer.sinks` stays 0. q/k/v/o carry biases; the router and every
expert too. The experts are stored as MXFP4 in the released checkpoints (quantization_config);
the attention, router, embeddings and head stay bf16.
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import FULL, OTHER, SLIDING, ModelSpec, Tensor
from . import common as K


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    # The checkpoints' config.json names no torch_dtype; their unquantized tensors are bf16.
    d = K.dims(cfg, dtype_default="bfloat16")
    h = d.hidden
    n_exp = C.get_int(cfg, "num_local_experts")
    top_k = C.get_int(cfg, "num_experts_per_tok", "experts_per_token")
    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    for i in range(d.n_layers):
        p = f"layers.{i}."
        tensors += K.attention(p, h, d.n_heads, d.n_kv, d.head_dim, qkv_bias=True, o_bias=True)
        tensors.append(Tensor(p + "sinks", (d.n_heads,), OTHER, K.COL))
        tensors += K.router(p, n_exp, h, bias=True)
        # gate_up_proj interleaves gate and up columns; priced as two [experts, inter, hidden]
        tensors += K.experts(p, n_exp, h, d.inter, bias=True)
        tensors += K.norm(p + "norm0", h) + K.norm(p + "norm1", h)
    tensors += K.norm("norm", h) + K.lm_head(d.vocab, h, d.tied)

    types = K.layer_types(cfg, d.n_layers, ("full_attention", "sliding_attention"))
    if types is None:
        # transformers configuration_gpt_oss.py: sliding on even layers, full on odd ones
        types = K.every_nth_full(d.n_layers, 2)
    w = K.window(cfg) if "sliding_attention" in types else None
    layers = [K.attention_layer(FULL if t == "full_attention" else SLIDING, d.n_kv, d.head_dim, d.n_heads,
                                window=None if t == "full_attention" else w) for t in types]
    notes = ["attention sinks are learned per-head logits (weights), not cached tokens"]
    return K.spec(cfg, name, source, d, layers, tensors, num_experts=n_exp, experts_per_token=top_k, notes=notes)
