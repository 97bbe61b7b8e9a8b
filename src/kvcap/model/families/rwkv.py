"""RWKV: recurrent on every layer, no attention cache, no context window.

RWKV-5 (`rwkv5`, MLC preset rwkv5_3b; mlc-llm python/mlc_llm/model/rwkv5/rwkv5_model.py): per
layer and sequence, the attention's token shift (hidden), its WKV state (heads x head_size x
head_size, always float32 in MLC) and the FFN's token shift (hidden) — RWKV5_ForCasualLM
.create_rnn_state. RWKV-4 (`rwkv`, transformers modeling_rwkv.py): the two token shifts plus
the WKV numerator, denominator and max (3 x hidden, float32).
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import config as C
from ..spec import OTHER, RECURRENT, REP, Layer, ModelSpec, StateTensor, Tensor
from . import common as K


def build(cfg: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    mt = C.get_str(cfg, "model_type")
    h = C.get_int(cfg, "hidden_size")
    attn = C.get_int(cfg, "attention_hidden_size", default=h)
    # MLC RWKV5Config / transformers RwkvConfig: intermediate_size null -> 3.5x (v5) or 4x (v4) hidden
    inter = C.get_int(cfg, "intermediate_size", default=(int(h * 3.5) // 32 * 32) if mt == "rwkv5" else 4 * h)
    cfg2 = {**cfg, "num_attention_heads": 1, "intermediate_size": inter, "max_position_embeddings": None}
    d = K.dims(cfg2, tied_default=False)
    v5 = mt == "rwkv5"
    if v5:
        head = C.get_int(cfg, "head_size", default=64)
        if attn % head:
            raise C.ModelError(f"attention_hidden_size {attn} is not a multiple of head_size {head}")
        heads = attn // head
        state = (StateTensor("att_shift", (h,)), StateTensor("wkv", (heads, head, head), "float32"),
                 StateTensor("ffn_shift", (h,)))
    else:
        state = (StateTensor("att_shift", (h,)), StateTensor("wkv", (3, attn), "float32"), StateTensor("ffn_shift", (h,)))

    tensors: list[Tensor] = [K.embedding(d.vocab, h)]
    for i in range(d.n_layers):
        p = f"layers.{i}."
        if i == 0:
            tensors += K.norm(p + "pre_ln", h, bias=True)
        tensors += K.norm(p + "ln1", h, bias=True) + K.norm(p + "ln2", h, bias=True)
        mixes = ("key", "value", "receptance", "gate") if v5 else ("key", "value", "receptance")
        tensors += [Tensor(p + f"attention.time_mix_{m}", (1, 1, h), OTHER, REP) for m in mixes]
        if v5:
            tensors += [Tensor(p + "attention.time_decay", (heads, head), OTHER, REP, "float32"),
                        Tensor(p + "attention.time_faaaa", (heads, head), OTHER, REP, "float32"),
                        Tensor(p + "attention.ln_x", (attn,), K.NORM, REP, "float32"),
                        Tensor(p + "attention.ln_x_bias", (attn,), K.NORM, REP, "float32")]
        else:
            tensors += [Tensor(p + "attention.time_decay", (attn,), OTHER, REP),
                        Tensor(p + "attention.time_first", (attn,), OTHER, REP)]
        for proj in mixes:
            tensors.append(K.linear(p + f"attention.{proj}", attn, h, K.COL))
        tensors.append(K.linear(p + "attention.output", h, attn, K.ROW))
        tensors += [Tensor(p + "feed_forward.time_mix_key", (1, 1, h), OTHER, REP),
                    Tensor(p + "feed_forward.time_mix_receptance", (1, 1, h), OTHER, REP),
                    K.linear(p + "feed_forward.key", inter, h, K.COL), K.linear(p + "feed_forward.receptance", h, h, REP),
                    K.linear(p + "feed_forward.value", h, inter, K.ROW)]
    tensors += K.norm("norm", h, bias=True)
    tensors.append(Tensor("lm_head", (d.vocab, h), K.LM_HEAD, REP))   # RWKV's `head` is never tied
    layers = [Layer(RECURRENT, state=state)] * d.n_layers
    notes = ["recurrent on every layer: no context window; the state is constant per sequence"]
    return K.spec(cfg, name, source, d, layers, tensors, notes=notes, num_attention_heads=0,
                  num_key_value_heads=0, head_dim=0, context_window=None, tie_word_embeddings=False)
