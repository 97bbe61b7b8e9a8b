"""Gemma 4 text model: sliding and global layers with their own KV head counts and head dims,
optional cross-layer KV sharing, an optional MoE block beside the dense MLP.

From transformers configuration_gemma4.py / modeling_gemma4.py (Gemma4TextConfig,
Gemma4TextAttention, Gemma4TextDecoderLayer):
- sliding layers: `num_key_value_heads` x `head_dim`, window `sliding_window`; global layers
  (`full_attention`): `global_head_dim`, and `num_global_key_value_heads` KV heads where given.
  `attention_k_eq_v` drops the global layers' v_proj (V is computed from the K projection; the
  cache still holds K and V, which differ after their norms and RoPE).
- `num_kv_shared_layers`: the last N layers compute no K/V; each reuses the cache of the last
  earlier layer of its type (`kv_sharing_modes`): Layer.kv_source. Those layers have no
  k/v projections, and with `use_double_wide_mlp` an MLP twice as wide.
- `hidden_size_per_layer_input` > 0: per-layer embeddings (a second, packed embedding table).
"""

from __future__ import annotations

from typing import Any, Mapping

from ...errors import ModelError
from .. import config as C
from ..spec import EMBED, FULL, LINEAR, OTHER, REP, ROUTER, SLIDING, ModelSpec, Tensor
from . import common as K


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    d = K.dims(cfg, tied_default=True, dtype_default="bfloat16")
    h, n = d.hidden, d.n_layers
    types = K.layer_types(cfg, n, ("full_attention", "sliding_attention"))
    if types is None:
        types = K.every_nth_full(n, 6)
    types[-1] = "full_attention"   # Gemma4TextConfig.__post_init__ forces the last layer global
    g_hd = C.get_int(cfg, "global_head_dim", default=512)
    k_eq_v = C.get_bool(cfg, "attention_k_eq_v", False)
    g_kv = C.get_int(cfg, "num_global_key_value_heads", default=None) if k_eq_v else None
    g_kv = g_kv or d.n_kv
    shared = C.get_int(cfg, "num_kv_shared_layers", default=0, minimum=0)
    if shared > n:
        raise ModelError(f"num_kv_shared_layers {shared} exceeds num_hidden_layers {n}")
    sources = _kv_sources(types, shared)
    wide = C.get_bool(cfg, "use_double_wide_mlp", False)
    moe = C.get_bool(cfg, "enable_moe_block", False)
    n_exp = C.get_int(cfg, "num_experts") if moe else 0
    top_k = C.get_int(cfg, "top_k_experts") if moe else 0
    moe_inter = C.get_int(cfg, "moe_intermediate_size") if moe else 0
    ple = C.get_int(cfg, "hidden_size_per_layer_input", default=0, minimum=0)
    bias = C.get_bool(cfg, "attention_bias", False)

    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    layers = []
    for i, t in enumerate(types):
        p = f"layers.{i}."
        full = t == "full_attention"
        hd, kv = (g_hd, g_kv) if full else (d.head_dim, d.n_kv)
        reuse = sources[i] is not None
        attn = K.attention(p, h, d.n_heads, kv, hd, qkv_bias=bias, o_bias=bias, v_proj=not (full and k_eq_v),
                           qk_norm="head")
        if reuse:   # shared layers keep only q_proj, q_norm and o_proj
            attn = [x for x in attn if x.name.rsplit(".", 1)[1] in ("q_proj", "q_bias", "o_proj", "o_bias", "q_norm")]
        tensors += attn
        tensors += K.gated_mlp(p, h, d.inter * (2 if wide and reuse else 1))
        tensors += [K.vec(p + f"norm{j}", h) for j in range(4)] + [Tensor(p + "layer_scalar", (1,), OTHER, REP)]
        if ple:
            tensors += [K.linear(p + "per_layer_input_gate", ple, h, REP), K.linear(p + "per_layer_projection", h, ple, REP),
                        K.vec(p + "post_per_layer_input_norm", h)]
        if moe:
            tensors += [Tensor(p + "router.scale", (h,), ROUTER, REP), Tensor(p + "router.per_expert_scale", (n_exp,), ROUTER, REP),
                        *K.router(p, n_exp, h, name="router.proj"), *K.experts(p, n_exp, h, moe_inter),
                        *(K.vec(p + f"moe_norm{j}", h) for j in range(3))]
        layers.append(K.attention_layer(FULL if full else SLIDING, kv, hd, d.n_heads,
                                        window=None if full else K.window(cfg), kv_source=sources[i]))
    if ple:
        vocab_ple = C.get_int(cfg, "vocab_size_per_layer_input", default=d.vocab)
        tensors += [Tensor("embed_tokens_per_layer", (vocab_ple, n * ple), EMBED, REP),
                    Tensor("per_layer_model_projection", (n * ple, h), LINEAR, REP),
                    K.vec("per_layer_projection_norm", ple)]
    tensors += K.norm("norm", h) + K.lm_head(d.vocab, h, d.tied)
    notes = []
    if shared:
        notes.append(f"the last {shared} layers reuse earlier layers' KV (num_kv_shared_layers)")
    return K.spec(cfg, name, source, d, layers, tensors, num_experts=n_exp, experts_per_token=top_k, notes=notes)


def _kv_sources(types: list[str], shared: int) -> list[int | None]:
    """For each layer, the index whose cache it reuses (Gemma4TextConfig.kv_sharing_modes), or None."""
    n = len(types)
    first = n - shared
    if shared == 0:
        return [None] * n
    if first == 0:
        raise ModelError("num_kv_shared_layers equals num_hidden_layers: no layer would own a cache")
    last_of = {t: i for i, t in enumerate(types[:first])}
    out: list[int | None] = [None] * first
    for i in range(first, n):
        if types[i] not in last_of:
            raise ModelError(f"layer {i} ({types[i]}) shares KV but no earlier layer of its type owns one")
        out.append(last_of[types[i]])
    return out
