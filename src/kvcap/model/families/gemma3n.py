"""Gemma 3n text model: cross-layer KV sharing, AltUp, LAuReL and per-layer embeddings.

KV (transformers configuration_gemma3n.py / modeling_gemma3n.py, Gemma3nTextConfig,
Gemma3nTextAttention; llama.cpp `n_layer_kv_from_start`): the last `num_kv_shared_layers`
layers compute no K/V; each reads the cache of the last earlier layer of its type (E2B: 30
layers, 20 own a cache, layers 20+ reuse layer 18 if sliding or 19 if global). Layers are four
sliding (window `sliding_window`) to one global unless `layer_types` says otherwise.

Weights: the checkpoints store k/v projections for every layer (shared layers load but do not
use them), so all are counted. `intermediate_size` may be one width per layer.
"""

from __future__ import annotations

from typing import Any, Mapping

from ...errors import ModelError
from .. import config as C
from ..spec import EMBED, FULL, LINEAR, OTHER, REP, SLIDING, ModelSpec, Tensor
from . import common as K
from .gemma4 import _kv_sources


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    widths = cfg.get("intermediate_size")
    scalar = {**cfg, "intermediate_size": widths[0] if isinstance(widths, list) and widths else widths}
    d = K.dims(scalar, tied_default=True, dtype_default="bfloat16")
    h, n = d.hidden, d.n_layers
    if isinstance(widths, list):
        if len(widths) != n:
            raise ModelError(f"config field 'intermediate_size' lists {len(widths)} widths for {n} layers")
        inter = [C.get_int({"intermediate_size": w}, "intermediate_size") for w in widths]
    else:
        inter = [d.inter] * n
    types = K.layer_types(cfg, n, ("full_attention", "sliding_attention")) or K.every_nth_full(n, 5)
    shared = C.get_int(cfg, "num_kv_shared_layers", default=0, minimum=0)
    if shared > n:
        raise ModelError(f"num_kv_shared_layers {shared} exceeds num_hidden_layers {n}")
    sources = _kv_sources(types, shared)
    alt = C.get_int(cfg, "altup_num_inputs", default=4)
    rank = C.get_int(cfg, "laurel_rank", default=64)
    ple = C.get_int(cfg, "hidden_size_per_layer_input", default=256)

    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    layers = []
    for i, t in enumerate(types):
        p = f"layers.{i}."
        tensors += K.attention(p, h, d.n_heads, d.n_kv, d.head_dim, qk_norm="head")
        tensors += K.gated_mlp(p, h, inter[i]) + [K.vec(p + f"norm{j}", h) for j in range(4)]
        tensors += [K.vec(p + "altup.correct_output_scale", h), Tensor(p + "altup.correction_coefs", (alt, alt), OTHER, REP),
                    Tensor(p + "altup.prediction_coefs", (alt * alt, alt), OTHER, REP),
                    Tensor(p + "altup.modality_router", (alt, h), OTHER, REP), K.vec(p + "altup.router_norm", h),
                    K.linear(p + "laurel.linear_left", rank, h, REP), K.linear(p + "laurel.linear_right", h, rank, REP),
                    K.vec(p + "laurel.post_laurel_norm", h),
                    K.linear(p + "per_layer_input_gate", ple, h, REP), K.linear(p + "per_layer_projection", h, ple, REP),
                    K.vec(p + "post_per_layer_input_norm", h)]
        full = t == "full_attention"
        layers.append(K.attention_layer(FULL if full else SLIDING, d.n_kv, d.head_dim, d.n_heads,
                                        window=None if full else K.window(cfg), kv_source=sources[i]))
    tensors += [Tensor("embed_tokens_per_layer", (C.get_int(cfg, "vocab_size_per_layer_input", default=d.vocab), n * ple),
                       EMBED, REP),
                Tensor("per_layer_model_projection", (n * ple, h), LINEAR, REP), K.vec("per_layer_projection_norm", ple)]
    for j in range(alt - 1):
        tensors += [K.linear(f"altup_projections.{j}", h, h, REP), K.linear(f"altup_unembed_projections.{j}", h, h, REP)]
    tensors += K.norm("norm", h) + K.lm_head(d.vocab, h, d.tied)
    notes = [f"the last {shared} layers reuse earlier layers' KV (num_kv_shared_layers)"] if shared else []
    return K.spec(cfg, name, source, d, layers, tensors, notes=notes)
