"""Pieces the family builders share: the text dims read once, the standard tensors, the layer
schedule, and the ModelSpec constructor.

Tensor names follow one convention so that readers and engines can match them: `embed_tokens`,
`layers.{i}.<HF leaf name>` (q_proj, gate_proj, …; a submodule that is neither attention nor MLP
keeps its HF name: `layers.{i}.linear_attn.in_proj_qkv`), `norm`, `lm_head`; MTP blocks continue
the layer numbering (`layers.{n_layers + j}.…`) with part "mtp", as DeepSeek's checkpoints do.
Shapes are [out, in] for a linear and [experts, out, in] for MoE experts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ...errors import ModelError
from .. import config as C
from ..spec import (BIAS, CHUNKED, COL, EMBED, FULL, LINEAR, LM_HEAD, NORM, REP, ROUTER, ROW, SLIDING,
                    Layer, ModelSpec, Tensor)


# No released model comes near these; a config beyond them is corrupt, and building one Layer and
# a dozen Tensors per layer for it would take unbounded time and memory.
MAX_LAYERS = 1024
MAX_MTP_LAYERS = 16


@dataclass(frozen=True)
class Dims:
    """The text model's shape as its config declares it (validated)."""

    hidden: int
    n_layers: int
    n_heads: int
    n_kv: int
    head_dim: int
    vocab: int
    inter: int
    context: int | None
    tied: bool
    dtype: str


def dims(cfg: Mapping[str, Any], *, tied_default: bool = False, dtype_default: str = "float16",
         inter_required: bool = False, head_dim_key: str = "head_dim") -> Dims:
    hidden = C.get_int(cfg, "hidden_size", "n_embd", "d_model")
    n_layers = C.get_int(cfg, "num_hidden_layers", "n_layer", "num_layers")
    if n_layers > MAX_LAYERS:
        raise ModelError(f"{n_layers} layers is beyond any real model (limit {MAX_LAYERS}); the config is corrupt")
    n_heads = C.get_int(cfg, "num_attention_heads", "n_head", "num_heads")
    n_kv = C.get_int(cfg, "num_key_value_heads", "multi_query_group_num", "n_head_kv", default=n_heads)
    if n_heads % n_kv:
        raise ModelError(f"num_attention_heads {n_heads} is not a multiple of num_key_value_heads {n_kv}")
    explicit = C.get_int(cfg, head_dim_key, default=None)
    hd = explicit if explicit is not None else C.head_dim(cfg, hidden, n_heads)
    vocab = C.get_int(cfg, "vocab_size", "padded_vocab_size")
    if inter_required:
        inter = C.get_int(cfg, "intermediate_size", "ffn_hidden_size", "n_inner")
    else:
        inter = C.get_int(cfg, "intermediate_size", "ffn_hidden_size", "n_inner", default=4 * hidden)
    context = C.get_int(cfg, "max_position_embeddings", "max_sequence_length", "seq_length", "n_positions",
                        default=None)
    tied = C.get_bool(cfg, "tie_word_embeddings", tied_default)
    return Dims(hidden, n_layers, n_heads, n_kv, hd, vocab, inter, context, tied,
                C.dtype(cfg) if (cfg.get("torch_dtype") or cfg.get("dtype")) else dtype_default)


# ---- tensors ---------------------------------------------------------------------------------
def mtp_layers(cfg: Mapping[str, Any], *names: str) -> int:
    """How many MTP / next-n blocks the config declares (0 when none)."""
    n = C.get_int(cfg, *names, default=0, minimum=0)
    if n > MAX_MTP_LAYERS:
        raise ModelError(f"{n} MTP layers is beyond any real model (limit {MAX_MTP_LAYERS})")
    return n


def linear(name: str, out: int, inp: int, shard: str, part: str = "text") -> Tensor:
    return Tensor(name, (out, inp), LINEAR, shard, part=part)


def vec(name: str, n: int, role: str = NORM, shard: str = REP, part: str = "text") -> Tensor:
    return Tensor(name, (n,), role, shard, part=part)


def attention(p: str, hidden: int, n_heads: int, n_kv: int, hd: int, *, hd_v: int | None = None,
              qkv_bias: bool = False, o_bias: bool = False, qk_norm: str | None = None,
              v_proj: bool = True, part: str = "text") -> list[Tensor]:
    """q/k/v/o projections. qk_norm: "head" (RMSNorm over head_dim: Qwen3, Gemma 3) or "full"
    (over all heads: OLMo-2)."""
    hd_v = hd if hd_v is None else hd_v
    q, k, v = n_heads * hd, n_kv * hd, n_kv * hd_v
    t = [linear(p + "q_proj", q, hidden, COL, part), linear(p + "k_proj", k, hidden, COL, part)]
    if v_proj:
        t.append(linear(p + "v_proj", v, hidden, COL, part))
    t.append(linear(p + "o_proj", hidden, n_heads * hd_v, ROW, part))
    if qkv_bias:
        t += [vec(p + "q_bias", q, BIAS, COL, part), vec(p + "k_bias", k, BIAS, COL, part)]
        if v_proj:
            t.append(vec(p + "v_bias", v, BIAS, COL, part))
    if o_bias:
        t.append(vec(p + "o_bias", hidden, BIAS, REP, part))
    if qk_norm == "head":
        t += [vec(p + "q_norm", hd, part=part), vec(p + "k_norm", hd, part=part)]
    elif qk_norm == "full":
        t += [vec(p + "q_norm", q, NORM, COL, part), vec(p + "k_norm", k, NORM, COL, part)]
    return t


def gated_mlp(p: str, hidden: int, inter: int, *, bias: bool = False, part: str = "text") -> list[Tensor]:
    t = [linear(p + "gate_proj", inter, hidden, COL, part), linear(p + "up_proj", inter, hidden, COL, part),
         linear(p + "down_proj", hidden, inter, ROW, part)]
    if bias:
        t += [vec(p + "gate_bias", inter, BIAS, COL, part), vec(p + "up_bias", inter, BIAS, COL, part),
              vec(p + "down_bias", hidden, BIAS, REP, part)]
    return t


def plain_mlp(p: str, hidden: int, inter: int, *, bias: bool = False, part: str = "text",
              names: tuple[str, str] = ("up_proj", "down_proj")) -> list[Tensor]:
    up, down = names
    t = [linear(p + up, inter, hidden, COL, part), linear(p + down, hidden, inter, ROW, part)]
    if bias:
        t += [vec(p + up + "_bias", inter, BIAS, COL, part), vec(p + down + "_bias", hidden, BIAS, REP, part)]
    return t


def experts(p: str, n: int, hidden: int, inter: int, *, gated: bool = True, bias: bool = False,
            part: str = "text") -> list[Tensor]:
    """All `n` routed experts, resident (every engine loads them all)."""
    t = []
    if gated:
        t.append(Tensor(p + "experts.gate_proj", (n, inter, hidden), LINEAR, COL, part=part))
    t += [Tensor(p + "experts.up_proj", (n, inter, hidden), LINEAR, COL, part=part),
          Tensor(p + "experts.down_proj", (n, hidden, inter), LINEAR, ROW, part=part)]
    if bias:
        if gated:
            t.append(Tensor(p + "experts.gate_bias", (n, inter), BIAS, COL, part=part))
        t += [Tensor(p + "experts.up_bias", (n, inter), BIAS, COL, part=part),
              Tensor(p + "experts.down_bias", (n, hidden), BIAS, REP, part=part)]
    return t


def router(p: str, n: int, hidden: int, *, bias: bool = False, name: str = "router",
           part: str = "text") -> list[Tensor]:
    t = [Tensor(p + name, (n, hidden), ROUTER, REP, part=part)]
    if bias:
        t.append(Tensor(p + name + "_bias", (n,), ROUTER, REP, part=part))
    return t


def norm(name: str, dim: int, *, bias: bool = False, part: str = "text") -> list[Tensor]:
    t = [vec(name, dim, part=part)]
    if bias:
        t.append(vec(name + "_bias", dim, part=part))
    return t


def embedding(vocab: int, hidden: int, part: str = "text") -> Tensor:
    return Tensor("embed_tokens", (vocab, hidden), EMBED, REP, part=part)


def lm_head(vocab: int, hidden: int, tied: bool, *, bias: bool = False) -> list[Tensor]:
    if tied:
        return []
    t = [Tensor("lm_head", (vocab, hidden), LM_HEAD, REP)]
    if bias:
        t.append(Tensor("lm_head_bias", (vocab,), BIAS, REP))
    return t


# ---- the layer schedule ----------------------------------------------------------------------
ATTENTION_TYPES = {"full_attention": FULL, "sliding_attention": SLIDING, "chunked_attention": CHUNKED}


def layer_types(cfg: Mapping[str, Any], n_layers: int, allowed: Iterable[str],
                key: str = "layer_types") -> list[str] | None:
    """The config's per-layer type list, checked: one known entry per layer; None when absent."""
    raw = cfg.get(key)
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ModelError(f"config field {key!r} must be a list of strings")
    if len(raw) != n_layers:
        raise ModelError(f"config field {key!r} has {len(raw)} entries for num_hidden_layers {n_layers}")
    allowed = tuple(allowed)
    bad = sorted({x for x in raw if x not in allowed})
    if bad:
        raise ModelError(f"layer type {bad[0]!r} is not supported here; supported: {', '.join(allowed)}")
    return list(raw)


def every_nth_full(n_layers: int, n: int) -> list[str]:
    """Layer i is full attention iff (i + 1) % n == 0, else sliding (Gemma 2/3, Cohere 2 configs)."""
    return ["full_attention" if (i + 1) % n == 0 else "sliding_attention" for i in range(n_layers)]


def attention_layer(kind: str, n_kv: int, hd: int, n_heads: int, *, hd_v: int | None = None,
                    window: int | None = None, sinks: int = 0, kv_source: int | None = None,
                    is_mtp: bool = False) -> Layer:
    if kind in (SLIDING, CHUNKED) and not window:
        raise ModelError(f"a {kind} layer needs a window; the config gives none")
    return Layer(kind, num_kv_heads=n_kv, head_dim_k=hd, head_dim_v=hd if hd_v is None else hd_v,
                 num_q_heads=n_heads, window=window if kind in (SLIDING, CHUNKED) else None,
                 sinks=sinks if kind == SLIDING else 0, kv_source=kv_source, is_mtp=is_mtp)


def optional(cfg: Mapping[str, Any], *names: str) -> int | None:
    """A positive int field, or None where absent, null, zero or negative (MLC writes -1 for "off")."""
    for n in names:
        v = cfg.get(n)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
            return None
        if v is not None:
            return C.get_int(cfg, n)
    return None


def window(cfg: Mapping[str, Any], *names: str) -> int:
    names = names or ("sliding_window",)
    w = C.get_int(cfg, *names, default=None)
    if w is None:
        raise ModelError(f"config declares sliding layers but no {' or '.join(repr(n) for n in names)}")
    return w


# ---- the spec --------------------------------------------------------------------------------
def architecture(cfg: Mapping[str, Any]) -> str:
    archs = cfg.get("architectures")
    return archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else ""


def spec(cfg: Mapping[str, Any], name: str, source: str, d: Dims, layers: Sequence[Layer],
         tensors: Sequence[Tensor], *, num_experts: int = 0, experts_per_token: int = 0,
         notes: Sequence[str] = (), model_type: str | None = None, **overrides: Any) -> ModelSpec:
    from . import family_of
    mt = model_type or C.get_str(cfg, "model_type")
    fields = dict(
        name=name, model_type=mt, source=source, hidden_size=d.hidden, num_hidden_layers=d.n_layers,
        num_attention_heads=d.n_heads, num_key_value_heads=d.n_kv, head_dim=d.head_dim, vocab_size=d.vocab,
        intermediate_size=d.inter, context_window=d.context, dtype=d.dtype, tie_word_embeddings=d.tied,
        layers=tuple(layers), tensors=tuple(tensors), architecture=architecture(cfg), family=family_of(mt),
        num_experts=num_experts, experts_per_token=experts_per_token, config=cfg, notes=tuple(notes),
    )
    fields.update(overrides)
    return ModelSpec(**fields)
