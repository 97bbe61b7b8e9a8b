"""Dense decoder-only transformers with MHA, GQA or MQA (Llama and its kin).

Every layer is full attention, or slides over a window of W tokens: on every layer (Mistral
v0.1, Phi-3-mini-4k, StarCoder2), on the layers from `max_window_layers` on (Qwen2/Qwen3 with
`use_sliding_window`), or per a `layer_types` list / pattern (Cohere 2: three sliding, one full).

The tensors are listed the way the HF checkpoint stores them (unfused q/k/v, gate/up), which
prices the same as an engine's fused layout: fusing concatenates along the output dimension, and
every scheme here quantizes row by row along the input dimension.
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import COL, FULL, LINEAR, NORM, SLIDING, ModelSpec, Tensor
from . import common as K
from .vision import vision_tensors

# Families that put a bias on q/k/v (and on o where noted), whatever their config says.
_QKV_BIAS = {"qwen2"}
# Families with a plain (not gated) MLP: up -> act -> down.
_PLAIN_MLP = {"starcoder2"}
# Families whose norms are LayerNorm with a bias.
_LAYERNORM_BIAS = {"stablelm", "starcoder2", "orion"}
# Families with one norm per layer (parallel attention + MLP block).
_ONE_NORM = {"cohere", "cohere2"}
# Families with q/k RMSNorm: "head" = over head_dim (Qwen3), "full" = over all heads (OLMo-2).
_QK_NORM = {"qwen3": "head", "olmo2": "full"}
# Families whose embeddings are tied unless the config says otherwise (their transformers
# configuration_*.py default tie_word_embeddings=True).
_TIED_DEFAULT = {"gemma", "cohere", "cohere2", "starcoder2"}
# Qwen's split: layers from max_window_layers on slide when use_sliding_window is set
# (transformers configuration_qwen2.py / configuration_qwen3.py, Qwen2Config.__post_init__).
_MAX_WINDOW_LAYERS = {"qwen2", "qwen3", "qwen2_moe", "qwen3_moe"}
# Cohere 2 (Command R7B): sliding_window_pattern 4, the 4th layer full
# (transformers configuration_cohere2.py, Cohere2Config.__post_init__).
_PATTERN_DEFAULT = {"cohere2": 4}


def linear(name: str, out: int, inp: int, shard: str, part: str = "text") -> Tensor:
    return Tensor(name, (out, inp), LINEAR, shard, part=part)


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    model_type = C.get_str(cfg, "model_type")
    if model_type == "minicpm" and C.get_int(cfg, "num_experts", default=0, minimum=0):
        from .moe import build as build_moe
        return build_moe(cfg, name, source)
    d = K.dims(cfg, tied_default=model_type in _TIED_DEFAULT)
    hidden, n_layers, n_heads, n_kv, hd, inter = d.hidden, d.n_layers, d.n_heads, d.n_kv, d.head_dim, d.inter

    attn_bias = model_type in _QKV_BIAS or any(
        C.get_bool(cfg, k, False) for k in ("attention_bias", "use_qkv_bias", "qkv_bias", "use_bias", "bias")
    )
    out_bias = (C.get_bool(cfg, "use_bias", False) or C.get_bool(cfg, "bias", False)
                or C.get_bool(cfg, "attention_bias", False) and model_type != "qwen2")
    mlp_bias = C.get_bool(cfg, "mlp_bias", False) or C.get_bool(cfg, "use_bias", False)
    ln_bias = model_type in _LAYERNORM_BIAS
    qk_norm = _QK_NORM.get(model_type)

    tensors: list[Tensor] = [K.embedding(d.vocab, hidden)]
    for i in range(n_layers):
        p = f"layers.{i}."
        tensors += K.attention(p, hidden, n_heads, n_kv, hd, qkv_bias=attn_bias, o_bias=out_bias, qk_norm=qk_norm)
        if C.get_bool(cfg, "qk_layernorm", False) or C.get_bool(cfg, "use_qk_norm", False):
            # StableLM-2-12B / Command R+: a LayerNorm per head over head_dim (no bias)
            tensors += [Tensor(p + "q_norm", (n_heads, hd), NORM, COL), Tensor(p + "k_norm", (n_kv, hd), NORM, COL)]
        if model_type in _PLAIN_MLP:
            tensors += K.plain_mlp(p, hidden, inter, bias=mlp_bias)
        else:
            tensors += K.gated_mlp(p, hidden, inter, bias=mlp_bias)
        one_norm = model_type in _ONE_NORM or (model_type == "stablelm" and C.get_bool(cfg, "use_parallel_residual", False))
        for j in range(1 if one_norm else 2):
            tensors += K.norm(p + f"norm{j}", hidden, bias=ln_bias)
    tensors += K.norm("norm", hidden, bias=ln_bias)
    tensors += K.lm_head(d.vocab, hidden, d.tied)
    tensors += vision_tensors(cfg, hidden)

    sinks = K.optional(cfg, "attention_sink_size") or 0
    layers = []
    for kind, window in _schedule(cfg, model_type, n_layers, d.context):
        layers.append(K.attention_layer(kind, n_kv, hd, n_heads, window=window, sinks=sinks))
    return K.spec(cfg, name, source, d, layers, tensors)


def _schedule(cfg: Mapping[str, Any], model_type: str, n_layers: int,
              context: int | None) -> list[tuple[str, int | None]]:
    """(kind, window) per layer."""
    types = K.layer_types(cfg, n_layers, ("full_attention", "sliding_attention"))
    if types is None and model_type in _PATTERN_DEFAULT:
        pattern = C.get_int(cfg, "sliding_window_pattern", default=_PATTERN_DEFAULT[model_type])
        types = K.every_nth_full(n_layers, pattern)
    if types is not None:
        w = K.window(cfg) if "sliding_attention" in types else None
        return [(FULL, None) if t == "full_attention" else (SLIDING, w) for t in types]
    window = _sliding_window(cfg, context)
    if window is None:
        return [(FULL, None)] * n_layers
    if model_type in _MAX_WINDOW_LAYERS:
        start = C.get_int(cfg, "max_window_layers", default=n_layers, minimum=0)
        return [(SLIDING, window) if i >= start else (FULL, None) for i in range(n_layers)]
    return [(SLIDING, window)] * n_layers


def _sliding_window(cfg: Mapping[str, Any], context: int | None) -> int | None:
    """A sliding window that really limits attention, or None.

    Qwen2 configs carry `sliding_window` with `use_sliding_window: false`; Phi-3.5 carries a
    window larger than its context. Neither limits anything. MLC presets name it
    `sliding_window_size` (Mistral v0.1).
    """
    if cfg.get("use_sliding_window") is False:
        return None
    window = K.optional(cfg, "sliding_window", "sliding_window_size")
    if window is None or (context is not None and window >= context):
        return None
    return window
