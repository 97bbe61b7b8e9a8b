"""State-space models and their hybrids: Mamba, Mamba-2, Jamba, Falcon-H1, Nemotron-H,
Granite-4.0-H (`granitemoehybrid`).

A Mamba layer keeps, per sequence, whatever the sequence length:
- conv: the causal conv1d's last (d_conv - 1) inputs over its channels;
- ssm: Mamba-1 one [d_inner, d_state] matrix; Mamba-2 one [head_dim, d_state] per head.
(vLLM `MambaStateShapeCalculator.mamba1_state_shape` / `mamba2_state_shape`; llama.cpp
`n_embd_r` = (d_conv - 1) x (d_inner + 2 x n_group x d_state), `n_embd_s` = d_state x d_inner.)
A config's `mamba_ssm_cache_dtype` is recorded as the ssm state's dtype.

Which layers attend: Jamba every attn_layer_period-th from attn_layer_offset; Nemotron-H per
`hybrid_override_pattern` (M mamba, * attention, - MLP, E MoE: one block per character);
Granite-4.0-H per `layer_types`; Falcon-H1 runs attention and Mamba-2 side by side in every
layer (two Layer entries per layer, attention first).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ...errors import ModelError
from .. import config as C
from ..spec import FULL, NONE, OTHER, RECURRENT, REP, ROUTER, Layer, ModelSpec, StateTensor, Tensor
from . import common as K


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    mt = C.get_str(cfg, "model_type")
    return _BUILD[mt](cfg, name, source)


# ---- mixers -----------------------------------------------------------------------------------
def _ssm_dtype(cfg: Mapping[str, Any]) -> str:
    raw = C.get_str(cfg, "mamba_ssm_cache_dtype") or C.get_str(cfg, "mamba_ssm_dtype")
    return C.dtype({"torch_dtype": raw}) if raw and raw != "auto" else ""


def mamba1(cfg: Mapping[str, Any], p: str, h: int, inner: int, d_state: int, d_conv: int, dt_rank: int, *,
           conv_bias: bool, proj_bias: bool, inner_norms: bool = False) -> tuple[list[Tensor], Layer]:
    """Mamba-1 mixer (modeling_mamba.py MambaMixer; Jamba adds dt/b/c RMSNorms)."""
    t = [K.linear(p + "in_proj", 2 * inner, h, K.COL), Tensor(p + "conv1d", (inner, 1, d_conv), OTHER, K.COL),
         K.linear(p + "x_proj", dt_rank + 2 * d_state, inner, K.ROW), K.linear(p + "dt_proj", inner, dt_rank, K.COL),
         Tensor(p + "dt_proj_bias", (inner,), K.BIAS, K.COL), Tensor(p + "A_log", (inner, d_state), OTHER, K.COL),
         Tensor(p + "D", (inner,), OTHER, K.COL), K.linear(p + "out_proj", h, inner, K.ROW)]
    if conv_bias:
        t.append(Tensor(p + "conv1d_bias", (inner,), K.BIAS, K.COL))
    if proj_bias:
        t += [K.vec(p + "in_proj_bias", 2 * inner, K.BIAS, K.COL), K.vec(p + "out_proj_bias", h, K.BIAS)]
    if inner_norms:
        t += [K.vec(p + "dt_layernorm", dt_rank), K.vec(p + "b_layernorm", d_state), K.vec(p + "c_layernorm", d_state)]
    state = (StateTensor("conv", (inner, d_conv - 1)), StateTensor("ssm", (inner, d_state), _ssm_dtype(cfg)))
    return t, Layer(RECURRENT, state=state)


def mamba2(cfg: Mapping[str, Any], p: str, h: int, inner: int, n_heads: int, head_dim: int, n_groups: int,
           d_state: int, d_conv: int, *, conv_bias: bool, proj_bias: bool, out_bias: bool | None = None,
           norm: bool = True) -> tuple[list[Tensor], Layer]:
    """Mamba-2 mixer (modeling_mamba2.py Mamba2Mixer; Falcon-H1, Nemotron-H, Granite-4.0-H alike)."""
    if n_heads * head_dim != inner:
        raise ModelError(f"Mamba-2 heads {n_heads} x head dim {head_dim} = {n_heads * head_dim} does not match "
                         f"its inner size {inner}")
    if n_heads % n_groups:
        raise ModelError(f"Mamba-2 heads {n_heads} are not a multiple of n_groups {n_groups}")
    conv_dim = inner + 2 * n_groups * d_state
    t = [K.linear(p + "in_proj", inner + conv_dim + n_heads, h, K.COL),
         Tensor(p + "conv1d", (conv_dim, 1, d_conv), OTHER, K.COL),
         Tensor(p + "dt_bias", (n_heads,), OTHER, K.COL), Tensor(p + "A_log", (n_heads,), OTHER, K.COL),
         Tensor(p + "D", (n_heads,), OTHER, K.COL), K.linear(p + "out_proj", h, inner, K.ROW)]
    if conv_bias:
        t.append(Tensor(p + "conv1d_bias", (conv_dim,), K.BIAS, K.COL))
    if proj_bias:
        t.append(K.vec(p + "in_proj_bias", inner + conv_dim + n_heads, K.BIAS, K.COL))
    if proj_bias if out_bias is None else out_bias:
        t.append(K.vec(p + "out_proj_bias", h, K.BIAS))
    if norm:
        t.append(K.vec(p + "norm", inner, shard=K.COL))
    state = (StateTensor("conv", (conv_dim, d_conv - 1)), StateTensor("ssm", (n_heads, head_dim, d_state), _ssm_dtype(cfg)))
    return t, Layer(RECURRENT, state=state)


def _attention(cfg: Mapping[str, Any], p: str, d: K.Dims, hd: int | None = None) -> tuple[list[Tensor], Layer]:
    hd = hd or d.head_dim
    bias = C.get_bool(cfg, "attention_bias", False)
    return (K.attention(p, d.hidden, d.n_heads, d.n_kv, hd, qkv_bias=bias, o_bias=bias),
            K.attention_layer(FULL, d.n_kv, hd, d.n_heads))


def _finish(cfg, name, source, d, layers, tensors, **kw) -> ModelSpec:
    tensors += K.norm("norm", d.hidden) + K.lm_head(d.vocab, d.hidden, d.tied)
    return K.spec(cfg, name, source, d, layers, tensors, **kw)


# ---- families ---------------------------------------------------------------------------------
# pure SSMs have no attention heads; the spec says so with zeros
_NO_ATTENTION = dict(num_attention_heads=0, num_key_value_heads=0, head_dim=0)


def _mamba(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    """Pure Mamba (state-spaces/mamba-*; falcon-mamba): every layer recurrent, one norm each."""
    cfg = {"num_attention_heads": 1, **cfg}   # no attention: dims needs a head count
    d = K.dims(cfg, tied_default=True, dtype_default="float32")
    h = d.hidden
    inner = C.get_int(cfg, "intermediate_size", default=C.get_int(cfg, "expand", default=2) * h)
    d_state, d_conv = C.get_int(cfg, "state_size", default=16), C.get_int(cfg, "conv_kernel", default=4)
    rank = cfg.get("time_step_rank", "auto")
    rank = math.ceil(h / 16) if rank == "auto" else C.get_int(cfg, "time_step_rank")
    tensors, layers = [K.embedding(d.vocab, h)], []
    for i in range(d.n_layers):
        t, layer = mamba1(cfg, f"layers.{i}.mixer.", h, inner, d_state, d_conv, rank,
                          conv_bias=C.get_bool(cfg, "use_conv_bias", True), proj_bias=C.get_bool(cfg, "use_bias", False))
        tensors += t + [K.vec(f"layers.{i}.norm0", h)]
        layers.append(layer)
    return _finish(cfg, name, source, d, layers, tensors, **_NO_ATTENTION)


def _mamba2(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    cfg = {"num_attention_heads": 1, **cfg}
    d = K.dims(cfg, dtype_default="float32")
    h = d.hidden
    n_heads, head_dim = C.get_int(cfg, "num_heads"), C.get_int(cfg, "head_dim", default=64)
    inner = C.get_int(cfg, "expand", default=2) * h
    tensors, layers = [K.embedding(d.vocab, h)], []
    for i in range(d.n_layers):
        t, layer = mamba2(cfg, f"layers.{i}.mixer.", h, inner, n_heads, head_dim, C.get_int(cfg, "n_groups", default=1),
                          C.get_int(cfg, "state_size", default=128), C.get_int(cfg, "conv_kernel", default=4),
                          conv_bias=C.get_bool(cfg, "use_conv_bias", True), proj_bias=C.get_bool(cfg, "use_bias", False))
        tensors += t + [K.vec(f"layers.{i}.norm0", h)]
        layers.append(layer)
    return _finish(cfg, name, source, d, layers, tensors, **_NO_ATTENTION)


def _jamba(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    d = K.dims(cfg, dtype_default="bfloat16")
    h = d.hidden
    a_period, a_off = C.get_int(cfg, "attn_layer_period", default=8), C.get_int(cfg, "attn_layer_offset", default=4, minimum=0)
    e_period, e_off = C.get_int(cfg, "expert_layer_period", default=2), C.get_int(cfg, "expert_layer_offset", default=1, minimum=0)
    n_exp, top_k = C.get_int(cfg, "num_experts", default=16), C.get_int(cfg, "num_experts_per_tok", default=2)
    inner = C.get_int(cfg, "mamba_expand", default=2) * h
    rank = cfg.get("mamba_dt_rank", "auto")
    rank = math.ceil(h / 16) if rank == "auto" else C.get_int(cfg, "mamba_dt_rank")
    tensors, layers = [K.embedding(d.vocab, h)], []
    for i in range(d.n_layers):
        p = f"layers.{i}."
        if i % a_period == a_off:     # JambaModel: attention layers at attn_layer_offset mod period
            t, layer = _attention(cfg, p, d)
        else:
            t, layer = mamba1(cfg, p + "mamba.", h, inner, C.get_int(cfg, "mamba_d_state", default=16),
                              C.get_int(cfg, "mamba_d_conv", default=4), rank,
                              conv_bias=C.get_bool(cfg, "mamba_conv_bias", True),
                              proj_bias=C.get_bool(cfg, "mamba_proj_bias", False), inner_norms=True)
        tensors += t
        layers.append(layer)
        if n_exp > 1 and i % e_period == e_off:
            tensors += K.router(p, n_exp, h) + K.experts(p, n_exp, h, d.inter)
        else:
            tensors += K.gated_mlp(p, h, d.inter)
        tensors += [K.vec(p + "norm0", h), K.vec(p + "norm1", h)]
    return _finish(cfg, name, source, d, layers, tensors, num_experts=n_exp, experts_per_token=top_k)


def _falcon_h1(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    d = K.dims(cfg, dtype_default="bfloat16")
    h = d.hidden
    if cfg.get("attn_layer_indices") is not None:
        raise ModelError("Falcon-H1 with attn_layer_indices (attention on some layers only) is not supported")
    n_heads, head_dim = C.get_int(cfg, "mamba_n_heads"), C.get_int(cfg, "mamba_d_head")
    # FalconH1Mixer: intermediate size = mamba_d_ssm, or mamba_expand x hidden_size
    inner = C.get_int(cfg, "mamba_d_ssm", default=None)
    if inner is None:
        inner = C.get_int(cfg, "mamba_expand", default=2) * h
        if inner != n_heads * head_dim:
            raise ModelError(
                f"mamba_n_heads {n_heads} x mamba_d_head {head_dim} = {n_heads * head_dim}, but without mamba_d_ssm "
                f"the mixer is mamba_expand x hidden_size = {inner} wide; the config needs mamba_d_ssm")
    tensors, layers = [K.embedding(d.vocab, h)], []
    for i in range(d.n_layers):
        p = f"layers.{i}."
        t, attn = _attention(cfg, p, d)
        m, ssm = mamba2(cfg, p + "mamba.", h, inner, n_heads, head_dim, C.get_int(cfg, "mamba_n_groups", default=1),
                        C.get_int(cfg, "mamba_d_state", default=256), C.get_int(cfg, "mamba_d_conv", default=4),
                        conv_bias=C.get_bool(cfg, "mamba_conv_bias", True), proj_bias=C.get_bool(cfg, "mamba_proj_bias", False),
                        out_bias=C.get_bool(cfg, "projectors_bias", False), norm=C.get_bool(cfg, "mamba_rms_norm", False))
        tensors += t + m + K.gated_mlp(p, h, d.inter, bias=C.get_bool(cfg, "mlp_bias", False))
        tensors += [K.vec(p + "norm0", h), K.vec(p + "norm1", h)]
        layers += [attn, ssm]
    notes = ["parallel hybrid: each layer is an attention entry and a recurrent entry"]
    return _finish(cfg, name, source, d, layers, tensors, notes=notes)


def _nemotron_h(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    d = K.dims(cfg, dtype_default="bfloat16")
    h = d.hidden
    pattern = C.get_str(cfg, "hybrid_override_pattern")
    if len(pattern) != d.n_layers or set(pattern) - set("M*-E"):
        raise ModelError(f"hybrid_override_pattern must have one of M * - E for each of {d.n_layers} layers, got {pattern!r}")
    hd = C.get_int(cfg, "attention_head_dim", "head_dim", default=d.head_dim)
    n_heads, head_dim = C.get_int(cfg, "mamba_num_heads"), C.get_int(cfg, "mamba_head_dim")
    mlp_bias = C.get_bool(cfg, "mlp_bias", False)
    n_exp = C.get_int(cfg, "n_routed_experts", default=0, minimum=0) if "E" in pattern else 0
    top_k = C.get_int(cfg, "num_experts_per_tok") if n_exp else 0
    tensors, layers = [K.embedding(d.vocab, h)], []
    for i, c in enumerate(pattern):
        p = f"layers.{i}.mixer."
        if c == "M":
            t, layer = mamba2(cfg, p, h, n_heads * head_dim, n_heads, head_dim, C.get_int(cfg, "n_groups", default=8),
                              C.get_int(cfg, "ssm_state_size"), C.get_int(cfg, "conv_kernel", default=4),
                              conv_bias=C.get_bool(cfg, "use_conv_bias", True), proj_bias=C.get_bool(cfg, "use_bias", False))
        elif c == "*":
            t, layer = _attention(cfg, p, d, hd)
        elif c == "-":   # NemotronHMLP: up -> relu2 -> down
            t, layer = K.plain_mlp(p, h, d.inter, bias=mlp_bias), Layer(NONE)
        else:            # NemotronHMoE: routed + shared experts, ungated
            moe_inter = C.get_int(cfg, "moe_intermediate_size")
            shared = C.get_int(cfg, "moe_shared_expert_intermediate_size", default=0, minimum=0)
            t = K.router(p, n_exp, h, name="gate") + [Tensor(p + "gate.e_score_correction_bias", (n_exp,), ROUTER, REP, "float32")]
            t += K.experts(p, n_exp, h, moe_inter, gated=False)
            t += K.plain_mlp(p + "shared_experts.", h, shared) if shared else []
            layer = Layer(NONE)
        tensors += t + [K.vec(f"layers.{i}.norm0", h)]
        layers.append(layer)
    return _finish(cfg, name, source, d, layers, tensors, num_experts=n_exp, experts_per_token=top_k)


def _granite_hybrid(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    d = K.dims(cfg, dtype_default="bfloat16")
    h = d.hidden
    types = K.layer_types(cfg, d.n_layers, ("mamba", "linear_attention", "attention", "full_attention"))
    if types is None:
        raise ModelError("a granitemoehybrid config needs layer_types (mamba / attention per layer)")
    n_exp = C.get_int(cfg, "num_local_experts", default=0, minimum=0)
    top_k = C.get_int(cfg, "num_experts_per_tok", default=0, minimum=0) if n_exp else 0
    shared = C.get_int(cfg, "shared_intermediate_size", default=0, minimum=0)
    n_heads, head_dim = C.get_int(cfg, "mamba_n_heads"), C.get_int(cfg, "mamba_d_head")
    tensors, layers = [K.embedding(d.vocab, h)], []
    for i, t_ in enumerate(types):
        p = f"layers.{i}."
        if t_ in ("mamba", "linear_attention"):
            t, layer = mamba2(cfg, p + "mamba.", h, C.get_int(cfg, "mamba_expand", default=2) * h, n_heads, head_dim,
                              C.get_int(cfg, "mamba_n_groups", default=1), C.get_int(cfg, "mamba_d_state", default=256),
                              C.get_int(cfg, "mamba_d_conv", default=4), conv_bias=C.get_bool(cfg, "mamba_conv_bias", True),
                              proj_bias=C.get_bool(cfg, "mamba_proj_bias", False))
        else:
            t, layer = _attention(cfg, p, d)
        tensors += t
        layers.append(layer)
        if n_exp:
            tensors += K.router(p, n_exp, h) + K.experts(p, n_exp, h, d.inter)
        if shared:   # GraniteMoeHybridMLP: input_linear [2 x shared, hidden], output_linear
            tensors += [K.linear(p + "shared_mlp.input_linear", 2 * shared, h, K.COL),
                        K.linear(p + "shared_mlp.output_linear", h, shared, K.ROW)]
        tensors += [K.vec(p + "norm0", h), K.vec(p + "norm1", h)]
    return _finish(cfg, name, source, d, layers, tensors, num_experts=n_exp, experts_per_token=top_k)


_BUILD = {"mamba": _mamba, "mamba2": _mamba2, "jamba": _jamba, "falcon_h1": _falcon_h1,
          "nemotron_h": _nemotron_h, "granitemoehybrid": _granite_hybrid}
