"""GLM: ChatGLM2/3 and GLM-4-9B (`chatglm`, remote code), the HF ports `glm` / `glm4`, and
GLM-4.5/4.6/4.7 (`glm4_moe`: MoE with MTP).

Every layer is full GQA attention. ChatGLM names its fields its own way: `num_layers`,
`multi_query_group_num` (KV heads, when `multi_query_attention`), `kv_channels` (head_dim),
`ffn_hidden_size`, `padded_vocab_size`, `seq_length` (THUDM modeling_chatglm.py:
SelfAttention.query_key_value with bias `add_qkv_bias`, MLP dense_h_to_4h [2 x ffn, hidden]).
The HF ports: q/k/v with bias, o without (modeling_glm.py); GLM-4 adds a norm after attention
and after the MLP (modeling_glm4.py). GLM-4.5 (modeling_glm4_moe.py): optional q/k norm, dense
layers below first_k_dense_replace, then routed + shared experts; `num_nextn_predict_layers`
MTP blocks as in DeepSeek V3 (vLLM glm4_moe_mtp.py).
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import FULL, REP, ROUTER, ModelSpec, Tensor
from . import common as K
from .deepseek import mtp_wrapper


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    mt = C.get_str(cfg, "model_type")
    if mt == "chatglm":
        cfg = _chatglm_fields(cfg)
    d = K.dims(cfg, dtype_default="bfloat16")
    h = d.hidden
    if mt == "chatglm":
        bias = C.get_bool(cfg, "add_qkv_bias", False)
    else:   # GlmConfig / Glm4Config default attention_bias=True, Glm4MoeConfig False
        bias = C.get_bool(cfg, "attention_bias", mt in ("glm", "glm4"))
    o_bias = mt == "chatglm" and C.get_bool(cfg, "add_bias_linear", False)
    qk_norm = "head" if mt == "glm4_moe" and C.get_bool(cfg, "use_qk_norm", False) else None
    moe = mt == "glm4_moe"
    if moe:
        n_exp, top_k = C.get_int(cfg, "n_routed_experts"), C.get_int(cfg, "num_experts_per_tok")
        moe_inter = C.get_int(cfg, "moe_intermediate_size")
        n_shared = C.get_int(cfg, "n_shared_experts", default=0, minimum=0)
        first = C.get_int(cfg, "first_k_dense_replace", default=1, minimum=0)
    else:
        n_exp = top_k = moe_inter = n_shared = first = 0

    def block(i: int, part: str) -> list[Tensor]:
        p = f"layers.{i}."
        t = K.attention(p, h, d.n_heads, d.n_kv, d.head_dim, qkv_bias=bias, o_bias=o_bias, qk_norm=qk_norm, part=part)
        if moe and i >= first:
            t += K.router(p, n_exp, h, name="gate", part=part)
            t.append(Tensor(p + "gate.e_score_correction_bias", (n_exp,), ROUTER, REP, "float32", part))
            t += K.experts(p, n_exp, h, moe_inter, part=part)
            if n_shared:
                t += K.gated_mlp(p + "shared_experts.", h, moe_inter * n_shared, part=part)
        else:
            t += K.gated_mlp(p, h, d.inter, bias=o_bias, part=part)
        return t + [K.vec(p + f"norm{j}", h, part=part) for j in range(4 if mt == "glm4" else 2)]

    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    for i in range(d.n_layers):
        tensors += block(i, "text")
    tensors += K.norm("norm", h) + K.lm_head(d.vocab, h, d.tied)
    layers = [K.attention_layer(FULL, d.n_kv, d.head_dim, d.n_heads)] * d.n_layers
    notes = []
    n_mtp = K.mtp_layers(cfg, "num_nextn_predict_layers") if moe else 0
    for j in range(n_mtp):
        i = d.n_layers + j
        tensors += mtp_wrapper(f"layers.{i}.", d.vocab, h) + block(i, "mtp")
        layers.append(K.attention_layer(FULL, d.n_kv, d.head_dim, d.n_heads, is_mtp=True))
    if n_mtp:
        notes.append(f"{n_mtp} MTP block(s): weights in the checkpoint; llama.cpp gives them no KV, vLLM "
                     "and SGLang load them for speculative decoding")
    return K.spec(cfg, name, source, d, layers, tensors, num_experts=n_exp, experts_per_token=top_k, notes=notes)


def _chatglm_fields(cfg: Mapping[str, Any]) -> dict:
    """ChatGLM's names -> the common ones (configuration_chatglm.py ChatGLMConfig)."""
    out = dict(cfg)
    heads = C.get_int(cfg, "num_attention_heads")
    if C.get_bool(cfg, "multi_query_attention", False):
        out["num_key_value_heads"] = C.get_int(cfg, "multi_query_group_num")
    else:
        out["num_key_value_heads"] = heads
        out.pop("multi_query_group_num", None)
    if "kv_channels" in cfg:
        out["head_dim"] = C.get_int(cfg, "kv_channels")
    out.setdefault("tie_word_embeddings", False)
    return out
