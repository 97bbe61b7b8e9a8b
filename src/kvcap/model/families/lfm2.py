"""LFM2 (Liquid): gated short-convolution layers with a few full-attention layers.

Layer types come from `layer_types` or `full_attn_idxs` (transformers configuration_lfm2.py).
A conv layer keeps the last (conv_L_cache - 1) inputs of its depthwise conv over hidden_size
channels per sequence (vLLM `MambaStateShapeCalculator.short_conv_state_shape`; llama.cpp
`n_embd_r` = n_embd x (L_cache - 1) for LFM2). The MLP width is adjusted as Lfm2MLP does
(2/3 of intermediate_size, times block_ffn_dim_multiplier, rounded up to block_multiple_of).
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import FULL, OTHER, RECURRENT, Layer, ModelSpec, StateTensor, Tensor
from . import common as K


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    d = K.dims(cfg, tied_default=True, dtype_default="bfloat16")
    h = d.hidden
    types = K.layer_types(cfg, d.n_layers, ("full_attention", "conv"))
    if types is None:
        idx = cfg.get("full_attn_idxs")
        if idx is None:
            idx = list(range(d.n_layers))
        if not isinstance(idx, list) or not all(isinstance(i, int) for i in idx):
            raise C.ModelError("config field 'full_attn_idxs' must be a list of layer indices")
        types = ["full_attention" if i in idx else "conv" for i in range(d.n_layers)]
    l_cache = C.get_int(cfg, "conv_L_cache", default=3)
    inter = _ffn_width(cfg, d.inter)
    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    layers: list[Layer] = []
    for i, t in enumerate(types):
        p = f"layers.{i}."
        if t == "full_attention":
            attn = K.attention(p, h, d.n_heads, d.n_kv, d.head_dim, qk_norm="head")
            tensors += attn
            layers.append(K.attention_layer(FULL, d.n_kv, d.head_dim, d.n_heads))
        else:   # Lfm2ShortConv: in_proj -> B, C, x gates; depthwise conv; out_proj
            tensors += [K.linear(p + "conv.in_proj", 3 * h, h, K.COL), Tensor(p + "conv.conv", (h, 1, l_cache), OTHER, K.COL),
                        K.linear(p + "conv.out_proj", h, h, K.ROW)]
            if C.get_bool(cfg, "conv_bias", False):
                tensors += [K.vec(p + "conv.in_proj_bias", 3 * h, K.BIAS, K.COL), K.vec(p + "conv.conv_bias", h, K.BIAS, K.COL),
                            K.vec(p + "conv.out_proj_bias", h, K.BIAS)]
            layers.append(Layer(RECURRENT, state=(StateTensor("conv", (h, l_cache - 1)),)))
        tensors += K.gated_mlp(p, h, inter) + [K.vec(p + "norm0", h), K.vec(p + "norm1", h)]
    tensors += K.norm("norm", h) + K.lm_head(d.vocab, h, d.tied)
    return K.spec(cfg, name, source, d, layers, tensors)


def _ffn_width(cfg: Mapping[str, Any], inter: int) -> int:
    if not C.get_bool(cfg, "block_auto_adjust_ff_dim", True):
        return inter
    inter = int(2 * inter / 3)
    mult = cfg.get("block_ffn_dim_multiplier", 1.0)
    if mult is not None:
        if isinstance(mult, bool) or not isinstance(mult, (int, float)) or mult <= 0:
            raise C.ModelError(f"config field 'block_ffn_dim_multiplier' must be a positive number, got {mult!r}")
        m = C.get_int(cfg, "block_multiple_of", default=256)
        inter = m * ((int(mult * inter) + m - 1) // m)
    return inter
