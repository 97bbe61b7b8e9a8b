"""Mixture-of-experts transformers with standard attention: Mixtral, Qwen2-MoE, Qwen3-MoE,
Phi-3.5-MoE, DeepSeek-MoE (v1), MiniCPM-MoE.

All experts are resident (every engine loads every expert; only compute is sparse), so each
routed expert's gate/up/down is a tensor here, stacked as [experts, out, in]. The attention and
its cache are the dense family's; the KV cache does not depend on the experts at all.
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import ModelSpec, Tensor
from . import common as K
from .dense import _schedule

# model_type -> (experts key, active key, expert width key or "" for intermediate_size)
_EXPERTS = {
    "mixtral": ("num_local_experts", "num_experts_per_tok", ""),
    "phimoe": ("num_local_experts", "num_experts_per_tok", ""),
    "minicpm": ("num_experts", "num_experts_per_tok", ""),
    "qwen2_moe": ("num_experts", "num_experts_per_tok", "moe_intermediate_size"),
    "qwen3_moe": ("num_experts", "num_experts_per_tok", "moe_intermediate_size"),
    "deepseek": ("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size"),
}


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    model_type = C.get_str(cfg, "model_type")
    n_key, k_key, w_key = _EXPERTS[model_type]
    d = K.dims(cfg)
    n_exp = C.get_int(cfg, n_key)
    top_k = C.get_int(cfg, k_key)
    if top_k > n_exp:
        raise C.ModelError(f"{k_key} {top_k} exceeds {n_key} {n_exp}")
    width = C.get_int(cfg, w_key) if w_key else d.inter
    h = d.hidden

    qkv_bias = model_type == "qwen2_moe" or C.get_bool(cfg, "attention_bias", False)
    o_bias = model_type == "phimoe" and C.get_bool(cfg, "attention_bias", False)
    ln_bias = model_type == "phimoe"           # PhiMoE uses LayerNorm with a bias
    qk_norm = "head" if model_type == "qwen3_moe" else None

    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    for i in range(d.n_layers):
        p = f"layers.{i}."
        tensors += K.attention(p, h, d.n_heads, d.n_kv, d.head_dim, qkv_bias=qkv_bias, o_bias=o_bias, qk_norm=qk_norm)
        if _is_moe_layer(cfg, model_type, i):
            tensors += K.router(p, n_exp, h, name="router" if model_type == "phimoe" else "gate")
            tensors += K.experts(p, n_exp, h, width)
            tensors += _shared(cfg, model_type, p, h, width)
        else:
            tensors += K.gated_mlp(p, h, d.inter)
        tensors += K.norm(p + "norm0", h, bias=ln_bias) + K.norm(p + "norm1", h, bias=ln_bias)
    tensors += K.norm("norm", h, bias=ln_bias)
    tensors += K.lm_head(d.vocab, h, d.tied, bias=C.get_bool(cfg, "lm_head_bias", False))

    sinks = K.optional(cfg, "attention_sink_size") or 0
    layers = [K.attention_layer(kind, d.n_kv, d.head_dim, d.n_heads, window=w, sinks=sinks)
              for kind, w in _schedule(cfg, model_type, d.n_layers, d.context)]
    return K.spec(cfg, name, source, d, layers, tensors, num_experts=n_exp, experts_per_token=top_k)


def _is_moe_layer(cfg: Mapping[str, Any], model_type: str, i: int) -> bool:
    if model_type in ("qwen2_moe", "qwen3_moe"):
        # Qwen2MoeDecoderLayer: MoE unless listed in mlp_only_layers, every decoder_sparse_step-th
        only = cfg.get("mlp_only_layers") or []
        if not isinstance(only, list):
            raise C.ModelError("config field 'mlp_only_layers' must be a list")
        step = C.get_int(cfg, "decoder_sparse_step", default=1)
        return i not in only and (i + 1) % step == 0
    if model_type == "deepseek":
        # DeepseekDecoderLayer (modeling_deepseek.py): dense below first_k_dense_replace, then
        # MoE every moe_layer_freq-th layer
        first = C.get_int(cfg, "first_k_dense_replace", default=0, minimum=0)
        freq = C.get_int(cfg, "moe_layer_freq", default=1)
        return i >= first and i % freq == 0
    return True


def _shared(cfg: Mapping[str, Any], model_type: str, p: str, h: int, width: int) -> list[Tensor]:
    if model_type == "qwen2_moe":
        inter = C.get_int(cfg, "shared_expert_intermediate_size", default=0, minimum=0)
        if not inter:
            return []
        return K.gated_mlp(p + "shared_expert.", h, inter) + [K.linear(p + "shared_expert_gate", 1, h, K.REP)]
    if model_type == "deepseek":
        n = C.get_int(cfg, "n_shared_experts", default=0, minimum=0)
        return K.gated_mlp(p + "shared_experts.", h, width * n) if n else []
    return []
