"""What `kvcap inspect` shows about a ModelSpec, engine-neutral: layers grouped by what their
cache holds, KV elements and bytes per token for the common cache dtypes, the KV of one sequence
at a given length (sliding and chunked layers keep at most their window), the recurrent state
per sequence, and the parameters by dtype and part.

Each engine stores these with its own rules (paging, padding, which layers it skips); `kvcap
plan` prices that. The numbers here are the model's own.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ..model.spec import CHUNKED, MLA, NONE, RECURRENT, SLIDING, Layer, ModelSpec

# Cache dtypes: bytes per element, as a fraction for the block-quantized ones. q8_0 stores 32
# int8 values and one f16 scale in 34 bytes; q4_0 32 nibbles and one f16 scale in 18 bytes
# (ggml-common.h block_q8_0 / block_q4_0).
KV_DTYPES: dict[str, tuple[Fraction, int]] = {
    "fp16/bf16": (Fraction(2), 1), "fp8": (Fraction(1), 1),
    "q8_0": (Fraction(34, 32), 32), "q4_0": (Fraction(18, 32), 32),
}
ELEM_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "uint8": 1, "int8": 1}


def rows(layer: Layer) -> tuple[int, ...]:
    """The per-token rows a layer's cache holds: (K, V) widths, or the one MLA latent."""
    if layer.kv_elems_per_token == 0:
        return ()
    if layer.kind == MLA:
        return (layer.kv_lora_rank + layer.qk_rope_head_dim,)
    return (layer.num_kv_heads * layer.head_dim_k, layer.num_kv_heads * layer.head_dim_v)


def row_bytes(width: int, dtype: str) -> Fraction | None:
    per, block = KV_DTYPES[dtype]
    if width % block:
        return None          # a block type cannot store a row that is not whole blocks
    return per * width


def layer_bytes_per_token(layer: Layer, dtype: str) -> int | None:
    parts = [row_bytes(w, dtype) for w in rows(layer)]
    if any(p is None for p in parts):
        return None
    total = sum(parts, Fraction(0))
    return int(total) if total.denominator == 1 else None


def tokens_kept(layer: Layer, context: int) -> int:
    """Tokens a layer holds for one sequence of `context` tokens."""
    if layer.kind in (SLIDING, CHUNKED) and layer.window:
        return min(context, layer.window + layer.sinks)
    return context


def _times(b: int | None, n: int) -> int | None:
    return None if b is None else b * n


def _sum(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(values)   # type: ignore[arg-type]


def kv_summary(spec: ModelSpec, context: int) -> dict[str, Any]:
    main = [l for l in spec.layers if not l.is_mtp and l.kv_elems_per_token]
    mtp = [l for l in spec.layers if l.is_mtp and l.kv_elems_per_token]
    per_token = {dt: _sum([layer_bytes_per_token(l, dt) for l in main]) for dt in KV_DTYPES}
    seq = {dt: _sum([_times(layer_bytes_per_token(l, dt), tokens_kept(l, context)) for l in main]) for dt in KV_DTYPES}
    out: dict[str, Any] = {
        "layers_with_kv": len(main),
        "elems_per_token": sum(l.kv_elems_per_token for l in main),
        "bytes_per_token": per_token,
        "context": context,
        "sequence_bytes": seq,
        "sequence_bytes_all_full": {dt: None if b is None else b * context for dt, b in per_token.items()},
    }
    if mtp:
        out["mtp_elems_per_token"] = sum(l.kv_elems_per_token for l in mtp)
    index = sum(l.index_head_dim for l in main)
    if index:
        out["indexer_elems_per_token"] = index
    return out


def state_summary(spec: ModelSpec) -> dict[str, Any]:
    layers = [l for l in spec.layers if l.state and not l.is_mtp]
    if not layers:
        return {}
    declared: dict[str, int] = {}
    for l in layers:
        for s in l.state:
            dt = s.dtype or spec.dtype
            declared[dt] = declared.get(dt, 0) + s.numel * ELEM_BYTES[dt]
    elems = sum(l.state_elems for l in layers)
    return {"layers": len(layers), "elems_per_sequence": elems, "bytes_per_sequence": declared,
            "bytes_per_sequence_f32": elems * 4,
            "tensors": sorted({f"{s.name}{list(s.shape)}{':' + s.dtype if s.dtype else ''}" for l in layers for s in l.state})}


def param_summary(spec: ModelSpec) -> dict[str, Any]:
    by_dtype: dict[str, int] = {}
    by_part: dict[str, int] = {}
    for t in spec.tensors:
        dt = t.dtype or spec.dtype
        if dt not in ELEM_BYTES:
            continue
        by_dtype[dt] = by_dtype.get(dt, 0) + t.numel * ELEM_BYTES[dt]
        by_part[t.part] = by_part.get(t.part, 0) + t.numel
    out: dict[str, Any] = {"count": spec.num_params, "by_part": by_part, "bytes_by_dtype": by_dtype}
    if spec.quantization:
        out["quantization"] = dict(spec.quantization)
    if spec.stored_bytes:
        out["stored_bytes_by_dtype"] = dict(spec.stored_bytes)
    return out


def layer_groups(spec: ModelSpec) -> list[dict[str, Any]]:
    """Runs of layers that cache alike, in order of first appearance."""
    groups: dict[tuple, dict[str, Any]] = {}
    for i, l in enumerate(spec.layers):
        key = (l.kind, l.num_kv_heads, l.head_dim_k, l.head_dim_v, l.window, l.sinks, l.kv_lora_rank,
               l.qk_rope_head_dim, l.index_head_dim, l.kv_source is not None, l.is_mtp, l.state)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"kind": "shared" if l.kv_source is not None else l.kind, "count": 0, "first": i,
                               "kv_elems_per_token": l.kv_elems_per_token, **_geometry(l)}
        g["count"] += 1
    return list(groups.values())


def _geometry(l: Layer) -> dict[str, Any]:
    g: dict[str, Any] = {}
    if l.kind == MLA:
        g.update(kv_lora_rank=l.kv_lora_rank, qk_rope_head_dim=l.qk_rope_head_dim)
        if l.index_head_dim:
            g["index_head_dim"] = l.index_head_dim
    elif l.kind not in (RECURRENT, NONE):
        g.update(num_kv_heads=l.num_kv_heads, head_dim_k=l.head_dim_k, head_dim_v=l.head_dim_v)
    if l.window:
        g["window"] = l.window
    if l.sinks:
        g["sinks"] = l.sinks
    if l.kv_source is not None:
        g["kv_source"] = l.kv_source
    if l.is_mtp:
        g["mtp"] = True
    if l.state:
        g["state_elems"] = l.state_elems
    return g


def summary(spec: ModelSpec, context: int | None = None) -> dict[str, Any]:
    ctx = context or spec.context_window or 4096
    doc: dict[str, Any] = {
        "name": spec.name, "model_type": spec.model_type, "family": spec.family, "architecture": spec.architecture,
        "source": spec.source, "dtype": spec.dtype, "context_window": spec.context_window,
        "hidden_size": spec.hidden_size, "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads, "num_key_value_heads": spec.num_key_value_heads,
        "head_dim": spec.head_dim, "vocab_size": spec.vocab_size, "tie_word_embeddings": spec.tie_word_embeddings,
        "layer_kinds": spec.layer_kinds(), "layer_groups": layer_groups(spec),
        "kv": kv_summary(spec, ctx), "state": state_summary(spec), "params": param_summary(spec),
        "notes": list(spec.notes),
    }
    if spec.num_experts:
        doc["moe"] = {"num_experts": spec.num_experts, "experts_per_token": spec.experts_per_token,
                      "resident": "all experts"}
    if context is None and spec.context_window is None:
        doc["notes"].append("no context window declared: sequence figures use 4096 tokens")
    return doc
