"""Dense decoder-only transformers with MHA, GQA or MQA on every layer (Llama and its kin).

The tensors are listed the way the HF checkpoint stores them (unfused q/k/v, gate/up), which
prices the same as an engine's fused layout: fusing concatenates along the output dimension, and
every scheme here quantizes row by row along the input dimension.
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import BIAS, COL, EMBED, FULL, LINEAR, LM_HEAD, NORM, OTHER, REP, ROW, Layer, ModelSpec, Tensor
from .vision import vision_tensors

# Families that put a bias on q/k/v (and on o where noted), whatever their config says.
_QKV_BIAS = {"qwen2", "qwen"}
# Families with a plain (not gated) MLP: up -> act -> down.
_PLAIN_MLP = {"starcoder2"}
# Families whose norms are LayerNorm with a bias.
_LAYERNORM_BIAS = {"stablelm", "starcoder2"}
# Families with one norm per layer (parallel attention + MLP block).
_ONE_NORM = {"cohere"}
# Families with q/k RMSNorm: "head" = over head_dim (Qwen3), "full" = over all heads (OLMo-2).
_QK_NORM = {"qwen3": "head", "olmo2": "full"}
# Families whose embeddings are tied unless the config says otherwise.
_TIED_DEFAULT = {"gemma"}


def linear(name: str, out: int, inp: int, shard: str, part: str = "text") -> Tensor:
    return Tensor(name, (out, inp), LINEAR, shard, part=part)


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    model_type = C.get_str(cfg, "model_type")
    hidden = C.get_int(cfg, "hidden_size", "n_embd", "d_model")
    n_layers = C.get_int(cfg, "num_hidden_layers", "n_layer", "num_layers")
    n_heads = C.get_int(cfg, "num_attention_heads", "n_head", "num_heads")
    n_kv = C.get_int(cfg, "num_key_value_heads", "multi_query_group_num", default=n_heads)
    if n_heads % n_kv:
        raise C.ModelError(f"num_attention_heads {n_heads} is not a multiple of num_key_value_heads {n_kv}")
    hd = C.head_dim(cfg, hidden, n_heads)
    vocab = C.get_int(cfg, "vocab_size", "padded_vocab_size")
    inter = C.get_int(cfg, "intermediate_size", "ffn_hidden_size", "n_inner", default=4 * hidden)
    context = C.get_int(cfg, "max_position_embeddings", "max_sequence_length", "seq_length", default=None)
    tied = C.get_bool(cfg, "tie_word_embeddings", model_type in _TIED_DEFAULT)

    window = _sliding_window(cfg, context)
    if window is not None:
        raise C.ModelError(
            f"{name}: a sliding window of {window} tokens on every layer needs the sliding-window "
            f"layer support of the Models work; full-attention models only for now"
        )

    attn_bias = model_type in _QKV_BIAS or any(
        C.get_bool(cfg, k, False) for k in ("attention_bias", "use_qkv_bias", "qkv_bias", "use_bias", "bias")
    )
    out_bias = C.get_bool(cfg, "use_bias", False) or C.get_bool(cfg, "attention_bias", False) and model_type != "qwen2"
    mlp_bias = C.get_bool(cfg, "mlp_bias", False) or C.get_bool(cfg, "use_bias", False)

    q, kv = n_heads * hd, n_kv * hd
    tensors: list[Tensor] = [Tensor("embed_tokens", (vocab, hidden), EMBED, REP)]
    for i in range(n_layers):
        p = f"layers.{i}."
        tensors += [linear(p + "q_proj", q, hidden, COL), linear(p + "k_proj", kv, hidden, COL),
                    linear(p + "v_proj", kv, hidden, COL), linear(p + "o_proj", hidden, q, ROW)]
        if attn_bias:
            tensors += [Tensor(p + "q_bias", (q,), BIAS, COL), Tensor(p + "k_bias", (kv,), BIAS, COL),
                        Tensor(p + "v_bias", (kv,), BIAS, COL)]
        if out_bias:
            tensors.append(Tensor(p + "o_bias", (hidden,), BIAS, REP))
        qk_norm = _QK_NORM.get(model_type)
        if qk_norm == "head":
            tensors += [Tensor(p + "q_norm", (hd,), NORM, REP), Tensor(p + "k_norm", (hd,), NORM, REP)]
        elif qk_norm == "full":
            tensors += [Tensor(p + "q_norm", (q,), NORM, COL), Tensor(p + "k_norm", (kv,), NORM, COL)]
        if model_type in _PLAIN_MLP:
            tensors += [linear(p + "up_proj", inter, hidden, COL), linear(p + "down_proj", hidden, inter, ROW)]
            if mlp_bias:
                tensors += [Tensor(p + "up_bias", (inter,), BIAS, COL), Tensor(p + "down_bias", (hidden,), BIAS, REP)]
        else:
            tensors += [linear(p + "gate_proj", inter, hidden, COL), linear(p + "up_proj", inter, hidden, COL),
                        linear(p + "down_proj", hidden, inter, ROW)]
            if mlp_bias:
                tensors += [Tensor(p + "gate_bias", (inter,), BIAS, COL), Tensor(p + "up_bias", (inter,), BIAS, COL),
                            Tensor(p + "down_bias", (hidden,), BIAS, REP)]
        n_norms = 1 if model_type in _ONE_NORM else 2
        for j in range(n_norms):
            tensors.append(Tensor(p + f"norm{j}", (hidden,), NORM, REP))
            if model_type in _LAYERNORM_BIAS:
                tensors.append(Tensor(p + f"norm{j}_bias", (hidden,), NORM, REP))
    tensors.append(Tensor("norm", (hidden,), NORM, REP))
    if model_type in _LAYERNORM_BIAS:
        tensors.append(Tensor("norm_bias", (hidden,), NORM, REP))
    if not tied:
        tensors.append(Tensor("lm_head", (vocab, hidden), LM_HEAD, REP))
    tensors += vision_tensors(cfg, hidden)

    layer = Layer(FULL, num_kv_heads=n_kv, head_dim_k=hd, head_dim_v=hd, num_q_heads=n_heads)
    return ModelSpec(
        name=name, model_type=model_type, source=source, hidden_size=hidden, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, num_key_value_heads=n_kv, head_dim=hd, vocab_size=vocab,
        intermediate_size=inter, context_window=context, dtype=C.dtype(cfg), tie_word_embeddings=tied,
        layers=(layer,) * n_layers, tensors=tuple(tensors),
        architecture=(cfg.get("architectures") or [""])[0] if isinstance(cfg.get("architectures"), list) else "",
        config=cfg,
    )


def _sliding_window(cfg: Mapping[str, Any], context: int | None) -> int | None:
    """A sliding window that really limits attention, or None.

    Qwen2 configs carry `sliding_window` with `use_sliding_window: false`; Phi-3.5 carries a
    window larger than its context. Neither limits anything.
    """
    if cfg.get("use_sliding_window") is False:
        return None
    window = C.get_int(cfg, "sliding_window", default=None)
    if window is None or (context is not None and window >= context):
        return None
    return window
