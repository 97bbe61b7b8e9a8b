"""Gated DeltaNet hybrids: Qwen3-Next, Qwen3.5 / Qwen3.6 (dense and MoE text models).

Three of every four layers are linear attention (Gated DeltaNet) with a constant per-sequence
state; every fourth is gated full attention (`layer_types`, or `full_attention_interval`:
transformers configuration_qwen3_next.py / configuration_qwen3_5.py, `__post_init__`).

A linear-attention layer's state (vLLM `MambaStateShapeCalculator.gated_delta_net_state_shape`;
llama.cpp `n_embd_r` / `n_embd_s` of qwen3next):
- conv: the causal conv's last (kernel - 1) inputs over conv_dim = 2 x key_dim + value_dim;
- ssm: one [head_k_dim, head_v_dim] matrix per value head.
The config's `mamba_ssm_dtype` (Qwen3.5: float32) is recorded as the ssm state's dtype.

Full-attention layers are gated: q_proj also emits the output gate (2 x heads x head_dim).
`mtp_num_hidden_layers` MTP blocks (Qwen3.5; vLLM qwen3_5_mtp.py) add fc, two pre-fc norms, a
full-attention decoder layer and a norm, sharing the main embedding and head.
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import FULL, OTHER, RECURRENT, REP, Layer, ModelSpec, StateTensor, Tensor
from . import common as K


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    model_type = C.get_str(cfg, "model_type")
    d = K.dims(cfg, dtype_default="bfloat16")
    h, n = d.hidden, d.n_layers
    types = K.layer_types(cfg, n, ("full_attention", "linear_attention"))
    if types is None:
        interval = C.get_int(cfg, "full_attention_interval", default=4)
        types = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(n)]

    nk, nv = C.get_int(cfg, "linear_num_key_heads"), C.get_int(cfg, "linear_num_value_heads")
    dk, dv = C.get_int(cfg, "linear_key_head_dim"), C.get_int(cfg, "linear_value_head_dim")
    kernel = C.get_int(cfg, "linear_conv_kernel_dim", default=4)
    if nv % nk:
        raise C.ModelError(f"linear_num_value_heads {nv} is not a multiple of linear_num_key_heads {nk}")
    key_dim, value_dim = nk * dk, nv * dv
    conv_dim = 2 * key_dim + value_dim
    ssm_dtype = C.get_str(cfg, "mamba_ssm_dtype")
    if ssm_dtype:
        ssm_dtype = C.dtype({"torch_dtype": ssm_dtype})
    state = (StateTensor("conv", (conv_dim, kernel - 1)), StateTensor("ssm", (nv, dk, dv), ssm_dtype))

    n_exp = C.get_int(cfg, "num_experts", default=0, minimum=0)
    top_k = C.get_int(cfg, "num_experts_per_tok", default=0, minimum=0) if n_exp else 0
    only = cfg.get("mlp_only_layers") or []
    if not isinstance(only, list):      # as moe.py checks it: `i in 3.5` is a TypeError
        raise C.ModelError("config field 'mlp_only_layers' must be a list")
    step = C.get_int(cfg, "decoder_sparse_step", default=1)

    def mlp(p: str, i: int, part: str) -> list[Tensor]:
        # Qwen3NextDecoderLayer: MoE unless in mlp_only_layers, every decoder_sparse_step-th layer
        if n_exp and i not in only and (i + 1) % step == 0:
            shared = C.get_int(cfg, "shared_expert_intermediate_size", default=0, minimum=0)
            t = K.router(p, n_exp, h, name="gate", part=part)
            t += K.experts(p, n_exp, h, C.get_int(cfg, "moe_intermediate_size"), part=part)
            if shared:
                t += K.gated_mlp(p + "shared_expert.", h, shared, part=part)
                t.append(K.linear(p + "shared_expert_gate", 1, h, REP, part))
            return t
        return K.gated_mlp(p, h, d.inter, part=part)

    def full_attention(p: str, part: str) -> list[Tensor]:
        t = K.attention(p, h, d.n_heads, d.n_kv, d.head_dim, qk_norm="head", part=part)
        # the output gate doubles q_proj's rows
        return [K.linear(x.name, 2 * x.shape[0], h, K.COL, part) if x.name.endswith("q_proj") else x for x in t]

    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    layers: list[Layer] = []
    for i, t in enumerate(types):
        p = f"layers.{i}."
        if t == "full_attention":
            tensors += full_attention(p, "text")
            layers.append(K.attention_layer(FULL, d.n_kv, d.head_dim, d.n_heads))
        else:
            tensors += _gated_delta(p, h, model_type, key_dim, value_dim, conv_dim, nv, dv, kernel)
            layers.append(Layer(RECURRENT, state=state))
        tensors += mlp(p, i, "text") + K.norm(p + "norm0", h) + K.norm(p + "norm1", h)
    tensors += K.norm("norm", h) + K.lm_head(d.vocab, h, d.tied)

    n_mtp = K.mtp_layers(cfg, "mtp_num_hidden_layers")
    for j in range(n_mtp):
        p = f"layers.{n + j}."
        tensors += [K.linear(p + "fc", h, 2 * h, REP, "mtp"), K.vec(p + "pre_fc_norm_hidden", h, part="mtp"),
                    K.vec(p + "pre_fc_norm_embedding", h, part="mtp"), K.vec(p + "mtp_norm", h, part="mtp")]
        tensors += full_attention(p, "mtp") + mlp(p, n + j, "mtp")
        tensors += K.norm(p + "norm0", h, part="mtp") + K.norm(p + "norm1", h, part="mtp")
        layers.append(K.attention_layer(FULL, d.n_kv, d.head_dim, d.n_heads, is_mtp=True))
    notes = [f"{n_mtp} MTP block(s): full attention, loaded only for speculative decoding"] if n_mtp else []
    return K.spec(cfg, name, source, d, layers, tensors, num_experts=n_exp, experts_per_token=top_k, notes=notes)


def _gated_delta(p: str, h: int, model_type: str, key_dim: int, value_dim: int, conv_dim: int, nv: int,
                 dv: int, kernel: int) -> list[Tensor]:
    """Gated DeltaNet weights (modeling_qwen3_next.py Qwen3NextGatedDeltaNet; Qwen3.5 splits the
    fused in_proj_qkvz / in_proj_ba into in_proj_qkv, in_proj_z, in_proj_b, in_proj_a)."""
    q = p + "linear_attn."
    if model_type == "qwen3_next":
        t = [K.linear(q + "in_proj_qkvz", 2 * key_dim + 2 * value_dim, h, K.COL),
             K.linear(q + "in_proj_ba", 2 * nv, h, K.COL)]
    else:
        t = [K.linear(q + "in_proj_qkv", conv_dim, h, K.COL), K.linear(q + "in_proj_z", value_dim, h, K.COL),
             K.linear(q + "in_proj_b", nv, h, K.COL), K.linear(q + "in_proj_a", nv, h, K.COL)]
    return t + [Tensor(q + "conv1d", (conv_dim, 1, kernel), OTHER, K.COL),
                Tensor(q + "dt_bias", (nv,), OTHER, K.COL), Tensor(q + "A_log", (nv,), OTHER, K.COL),
                K.vec(q + "norm", dv), K.linear(q + "out_proj", h, value_dim, K.ROW)]
