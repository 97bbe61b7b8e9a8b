"""Multi-head latent attention (MLA): DeepSeek V2/V3/V3.1/V3.2/R1, Kimi K2, GLM-4.7-Flash.

An MLA layer caches one latent per token: the compressed KV (kv_lora_rank) and the shared
rotary key (qk_rope_head_dim) — 512 + 64 = 576 values for V3/R1/K2 — whatever the head count
(vLLM `MLAAttentionSpec`, llama.cpp `n_embd_k_gqa` of MLA GGUFs). DeepSeek V3.2 adds a
lightning indexer whose key cache holds `index_head_dim` values per token besides the latent
(vLLM `DeepseekV32IndexerCache`); it is priced apart (Layer.index_head_dim).

Weights: first_k_dense_replace dense layers, then MoE every moe_layer_freq-th layer with all
routed experts resident plus the shared experts. `num_nextn_predict_layers` MTP blocks follow the
main layers (model.layers.61 in V3's checkpoint): enorm, hnorm, eh_proj, their own embedding and
shared head, and a full decoder layer (vLLM `deepseek_mtp.py`, DeepSeekMultiTokenPredictorLayer).
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import MLA, NORM, REP, ROUTER, Layer, ModelSpec, Tensor
from . import common as K

# model_type -> index of the first MoE layer when the config does not say (transformers defaults)
_FIRST_DENSE_DEFAULT = {"deepseek_v2": 0, "deepseek_v3": 3, "deepseek_v32": 3, "kimi_k2": 3, "glm4_moe_lite": 1}
# Routers with a selection bias (topk_method noaux_tc) store it in float32
# (transformers modeling_deepseek_v3.py DeepseekV3TopkRouter.e_score_correction_bias).
_NOAUX = "noaux_tc"


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    model_type = C.get_str(cfg, "model_type")
    kv_rank = C.get_int(cfg, "kv_lora_rank")
    rope = C.get_int(cfg, "qk_rope_head_dim")
    nope = C.get_int(cfg, "qk_nope_head_dim")
    # MLA heads are qk_nope + qk_rope wide, whatever hidden / heads is (GLM-4.7-Flash: 2048 / 20)
    d = K.dims({"head_dim": nope + rope, **cfg}, dtype_default="bfloat16")
    h, n_heads = d.hidden, d.n_heads
    v_dim = C.get_int(cfg, "v_head_dim")
    q_rank = C.get_int(cfg, "q_lora_rank", default=None)
    notes = []
    if "q_lora_rank" not in cfg:
        notes.append("q_lora_rank absent: taken as none (a plain q_proj), as MLC's DeepseekV2Config does")
    index_dim = C.get_int(cfg, "index_head_dim", default=0, minimum=0) if model_type == "deepseek_v32" else 0
    if model_type == "deepseek_v32":
        notes.append(f"sparse attention: the indexer caches {index_dim} more values per token per layer "
                     "(vLLM stores them as fp8 with one fp32 scale per 128)")

    n_exp = C.get_int(cfg, "n_routed_experts")
    top_k = C.get_int(cfg, "num_experts_per_tok")
    moe_inter = C.get_int(cfg, "moe_intermediate_size")
    n_shared = C.get_int(cfg, "n_shared_experts", default=0, minimum=0)
    noaux = cfg.get("topk_method") == _NOAUX or model_type == "glm4_moe_lite"
    n_mtp = K.mtp_layers(cfg, "num_nextn_predict_layers")
    dense_layers = _dense_layers(cfg, model_type, d.n_layers)

    def block(i: int, part: str) -> list[Tensor]:
        p = f"layers.{i}."
        t = _mla(cfg, p, h, n_heads, q_rank, kv_rank, rope, nope, v_dim, part)
        if index_dim:
            t += _indexer(cfg, p, h, q_rank or h, index_dim, part)
        if i in dense_layers:
            t += K.gated_mlp(p, h, d.inter, part=part)
        else:
            t += K.router(p, n_exp, h, name="gate", part=part)
            if noaux:
                t.append(Tensor(p + "gate.e_score_correction_bias", (n_exp,), ROUTER, REP, "float32", part))
            t += K.experts(p, n_exp, h, moe_inter, part=part)
            if n_shared:
                t += K.gated_mlp(p + "shared_experts.", h, moe_inter * n_shared, part=part)
        return t + K.norm(p + "norm0", h, part=part) + K.norm(p + "norm1", h, part=part)

    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    for i in range(d.n_layers):
        tensors += block(i, "text")
    tensors += K.norm("norm", h) + K.lm_head(d.vocab, h, d.tied)
    for j in range(n_mtp):
        i = d.n_layers + j
        tensors += mtp_wrapper(f"layers.{i}.", d.vocab, h) + block(i, "mtp")

    layer = Layer(MLA, num_kv_heads=1, head_dim_k=nope + rope, head_dim_v=v_dim, num_q_heads=n_heads,
                  kv_lora_rank=kv_rank, qk_rope_head_dim=rope, index_head_dim=index_dim)
    layers = [layer] * d.n_layers + [Layer(MLA, num_kv_heads=1, head_dim_k=nope + rope, head_dim_v=v_dim,
                                           num_q_heads=n_heads, kv_lora_rank=kv_rank, qk_rope_head_dim=rope,
                                           index_head_dim=index_dim, is_mtp=True)] * n_mtp
    if n_mtp:
        notes.append(f"{n_mtp} MTP block(s) after the {d.n_layers} layers: weights in the checkpoint; "
                     "engines load and cache them only for speculative decoding")
    return K.spec(cfg, name, source, d, layers, tensors, num_experts=n_exp, experts_per_token=top_k,
                  notes=notes)


def _dense_layers(cfg: Mapping[str, Any], model_type: str, n_layers: int) -> set[int]:
    types = cfg.get("mlp_layer_types")
    if types is not None:
        if not isinstance(types, list) or len(types) != n_layers or not set(types) <= {"dense", "sparse"}:
            raise C.ModelError(f"config field 'mlp_layer_types' must list 'dense'/'sparse' for each of {n_layers} layers")
        return {i for i, t in enumerate(types) if t == "dense"}
    first = C.get_int(cfg, "first_k_dense_replace", default=_FIRST_DENSE_DEFAULT[model_type], minimum=0)
    freq = C.get_int(cfg, "moe_layer_freq", default=1)
    # DeepseekV2DecoderLayer: MoE iff i >= first_k_dense_replace and i % moe_layer_freq == 0;
    # MTP blocks (i >= n_layers) are MoE layers too.
    return {i for i in range(n_layers) if not (i >= first and i % freq == 0)}


def _mla(cfg: Mapping[str, Any], p: str, h: int, n_heads: int, q_rank: int | None, kv_rank: int, rope: int,
         nope: int, v_dim: int, part: str) -> list[Tensor]:
    bias = C.get_bool(cfg, "attention_bias", False)
    q_out = n_heads * (nope + rope)
    if q_rank is None:
        t = [K.linear(p + "q_proj", q_out, h, K.COL, part)]
    else:
        t = [K.linear(p + "q_a_proj", q_rank, h, K.REP, part), K.vec(p + "q_a_layernorm", q_rank, part=part),
             K.linear(p + "q_b_proj", q_out, q_rank, K.COL, part)]
    t += [K.linear(p + "kv_a_proj_with_mqa", kv_rank + rope, h, K.REP, part),
          K.vec(p + "kv_a_layernorm", kv_rank, part=part),
          K.linear(p + "kv_b_proj", n_heads * (nope + v_dim), kv_rank, K.COL, part),
          K.linear(p + "o_proj", h, n_heads * v_dim, K.ROW, part)]
    if bias:
        if q_rank is not None:
            t.append(K.vec(p + "q_a_proj_bias", q_rank, K.BIAS, part=part))
        t += [K.vec(p + "kv_a_proj_bias", kv_rank + rope, K.BIAS, part=part), K.vec(p + "o_bias", h, K.BIAS, part=part)]
    return t


def _indexer(cfg: Mapping[str, Any], p: str, h: int, q_in: int, index_dim: int, part: str) -> list[Tensor]:
    """DeepSeek V3.2's lightning indexer (transformers modeling_deepseek_v32.py DeepseekV32Indexer)."""
    heads = C.get_int(cfg, "index_n_heads")
    return [K.linear(p + "indexer.wq_b", heads * index_dim, q_in, K.REP, part),
            K.linear(p + "indexer.wk", index_dim, h, K.REP, part),
            K.vec(p + "indexer.k_norm", index_dim, part=part), K.vec(p + "indexer.k_norm_bias", index_dim, part=part),
            K.linear(p + "indexer.weights_proj", heads, h, K.REP, part)]


def mtp_wrapper(p: str, vocab: int, h: int) -> list[Tensor]:
    """What an MTP block holds besides its decoder layer (DeepSeek V3, GLM-4.5 checkpoints)."""
    return [Tensor(p + "embed_tokens", (vocab, h), K.EMBED, REP, part="mtp"),
            Tensor(p + "enorm", (h,), NORM, REP, part="mtp"), Tensor(p + "hnorm", (h,), NORM, REP, part="mtp"),
            K.linear(p + "eh_proj", h, 2 * h, K.REP, "mtp"),
            Tensor(p + "shared_head.norm", (h,), NORM, REP, part="mtp"),
            Tensor(p + "shared_head.head", (vocab, h), K.LM_HEAD, REP, part="mtp")]
