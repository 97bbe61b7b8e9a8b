"""Gemma 2 and Gemma 3 text models: interleaved sliding-window and global layers.

Gemma 2 alternates, sliding first: layer i is global iff (i + 1) % 2 == 0. Gemma 3 has five
sliding layers to one global (`sliding_window_pattern` 6, or an explicit `layer_types`)
(transformers configuration_gemma2.py / configuration_gemma3.py, `__post_init__`). Each layer has
four RMSNorms (before and after attention and MLP); Gemma 3 adds q/k RMSNorm over head_dim.
Embeddings are tied (both configs default tie_word_embeddings=True).
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import FULL, SLIDING, ModelSpec, Tensor
from . import common as K

_PATTERN = {"gemma2": 2, "gemma3_text": 6}


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    model_type = C.get_str(cfg, "model_type")
    d = K.dims(cfg, tied_default=True, dtype_default="bfloat16")
    qk_norm = "head" if model_type == "gemma3_text" else None
    tensors: list[Tensor] = [K.embedding(d.vocab, d.hidden)]
    for i in range(d.n_layers):
        p = f"layers.{i}."
        tensors += K.attention(p, d.hidden, d.n_heads, d.n_kv, d.head_dim,
                               qkv_bias=C.get_bool(cfg, "attention_bias", False),
                               o_bias=C.get_bool(cfg, "attention_bias", False), qk_norm=qk_norm)
        tensors += K.gated_mlp(p, d.hidden, d.inter)
        for j in range(4):
            tensors += K.norm(p + f"norm{j}", d.hidden)
    tensors += K.norm("norm", d.hidden)
    tensors += K.lm_head(d.vocab, d.hidden, d.tied)

    types = K.layer_types(cfg, d.n_layers, ("full_attention", "sliding_attention"))
    if types is None:
        pattern = C.get_int(cfg, "sliding_window_pattern", default=_PATTERN[model_type])
        types = K.every_nth_full(d.n_layers, pattern)
    w = K.window(cfg) if "sliding_attention" in types else None
    layers = [K.attention_layer(FULL if t == "full_attention" else SLIDING, d.n_kv, d.head_dim, d.n_heads,
                                window=None if t == "full_attention" else w) for t in types]
    return K.spec(cfg, name, source, d, layers, tensors)
