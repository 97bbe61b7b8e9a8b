"""What one mlx-lm generation needs on the GPU at a given context: weights, cache arrays, activations.

`launch_from` reads the options once; `need_at(launch, context, batch)` prices one point, so the
engine can search contexts and batch sizes cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..device.spec import DeviceSpec
from ..errors import ModelError, OptionsError
from ..model.spec import CHUNKED, MLA, NONE, RECURRENT, SLIDING, ModelSpec
from ..plan import Ledger
from .base import whole
from .mlx_cache import (LayerArrays, kvcache_capacity, largest_chunk_scores, plain_arrays, quantized_arrays,
                        rotating_sizes)
from .mlx_weights import DTYPE_BYTES, WeightArrays, checkpoint_quant, page_round, weight_arrays

SOURCE_ALLOC = "mlx/backend/metal/allocator.cpp MetalAllocator::MetalAllocator"
# mlx/backend/metal/scaled_dot_product_attention.cpp `has_fused_kernel` / `use_fallback`: prompt
# chunks use the fused kernel only for these head dims (192 and 256 route to the unfused path).
FUSED_HEAD_DIMS = (64, 72, 80, 96, 128)
DEFAULT_QUANTIZED_KV_START = 5000   # mlx_lm/generate.py DEFAULT_QUANTIZED_KV_START
KV_BITS = (2, 3, 4, 5, 6, 8)


def _version(text: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?", str(text).strip())
    if not m:
        raise OptionsError(f"mlx: mlx_version {text!r} is not a version: write e.g. 0.32.4")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def _opt_int(options: Mapping[str, Any], name: str, default: int | None, minimum: int = 1) -> int | None:
    value = options.get(name)
    if value is None:           # an option passed as None is unset (not a None count)
        value = default
    return None if value is None else whole("mlx: " + name, value, minimum)


@dataclass(frozen=True)
class CacheLayer:
    """One attention layer's cache: its class in mlx-lm and its array geometry."""

    kind: str                 # "KVCache" or "RotatingKVCache"
    heads: int
    dk: int
    dv: int
    q_heads: int
    max_size: int | None      # RotatingKVCache only
    unfused: bool             # prompt chunks materialise [B, q_heads, L, kv] scores


@dataclass(frozen=True)
class Launch:
    model: ModelSpec
    working_set: int
    ram: int | None
    max_buffer: int | None
    memory_limit: int
    memory_limit_formula: str
    batch: int
    context: int | None
    max_kv_size: int | None
    kv_bits: int | None
    kv_group_size: int
    quantized_kv_start: int
    prefill_step: int
    dtype_bytes: int
    layers: tuple[CacheLayer, ...]
    weights: WeightArrays
    warnings: tuple[str, ...] = ()

    def describe(self, led: Ledger) -> None:
        w = self.weights
        led.add("working_set", self.working_set, "bytes", "recommendedMaxWorkingSetSize (the device's memory)",
                "mlx device_info max_recommended_working_set_size")
        led.add("memory_limit", self.memory_limit, "bytes", self.memory_limit_formula, SOURCE_ALLOC)
        if self.max_buffer is not None:
            led.add("max_buffer_length", self.max_buffer, "bytes", "MTLDevice.maxBufferLength: the largest single array",
                    "mlx/backend/metal/allocator.cpp MetalAllocator::malloc")
        q = f"{w.quant.bits}-bit, group {w.quant.group_size} ({w.quant.source})" if w.quant else "unquantized"
        led.add("weights", w.total, "bytes", f"one array per parameter, {q}, each page-rounded to 16 KiB",
                "mlx_lm utils.load; mlx/nn/layers/quantized.py", estimate=w.estimate, note=w.note)
        if w.skipped:
            led.add("weights_not_loaded", w.skipped, "params", "vision / audio / MTP parameters mlx-lm's sanitize drops")
        led.add("largest_weight_array", w.largest, "bytes", w.largest_name)
        kinds = {}
        for l in self.layers:
            key = l.kind if l.max_size is None else f"{l.kind}({l.max_size})"
            kinds[key] = kinds.get(key, 0) + 1
        led.add("cache_layers", ", ".join(f"{n} × {k}" for k, n in kinds.items()),
                formula="per layer, a K array and a V array; QuantizedKVCache once kv_bits applies",
                source="mlx_lm/models/cache.py make_prompt_cache / the model's make_cache")


def _cache_layers(model: ModelSpec, max_kv_size: int | None) -> tuple[tuple[CacheLayer, ...], list[str]]:
    warnings: list[str] = []
    layers = [l for l in model.layers if not l.is_mtp and l.kind != NONE]
    kinds = {l.kind for l in layers}
    if RECURRENT in kinds or CHUNKED in kinds:
        raise ModelError("mlx: kvcap does not model mlx-lm's ArraysCache (recurrent state) or ChunkedKVCache; "
                         "supported layer kinds: full, sliding, mla")
    if any(l.kv_source is not None for l in layers):
        raise ModelError("mlx: cross-layer KV sharing is not modelled for mlx-lm; supported: full, sliding, mla layers")
    # Models with sliding layers bring their own make_cache, which ignores --max-kv-size.
    own_cache = SLIDING in kinds
    if own_cache and max_kv_size:
        warnings.append("this model builds its own caches (make_cache); mlx-lm ignores --max-kv-size for it")
    out = []
    for l in layers:
        if l.kind == MLA:
            # deepseek_v3.py DeepseekV3Attention: the cache holds the latent [B, 1, L, kv_lora_rank]
            # as keys and the rope key [B, 1, L, qk_rope_head_dim] as values; scores are materialised.
            out.append(CacheLayer("KVCache", 1, l.kv_lora_rank, l.qk_rope_head_dim, l.num_q_heads or
                                  model.num_attention_heads, None, True))
            continue
        q_heads = l.num_q_heads or model.num_attention_heads
        unfused = l.head_dim_k != l.head_dim_v or l.head_dim_k not in FUSED_HEAD_DIMS
        if l.kind == SLIDING:
            out.append(CacheLayer("RotatingKVCache", l.num_kv_heads, l.head_dim_k, l.head_dim_v, q_heads,
                                  (l.window or 0) + l.sinks, unfused))
        elif max_kv_size and not own_cache:
            out.append(CacheLayer("RotatingKVCache", l.num_kv_heads, l.head_dim_k, l.head_dim_v, q_heads, max_kv_size, unfused))
        else:
            out.append(CacheLayer("KVCache", l.num_kv_heads, l.head_dim_k, l.head_dim_v, q_heads, None, unfused))
    return tuple(out), warnings


def launch_from(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any]) -> Launch:
    batch = _opt_int(options, "batch", 1)
    context = _opt_int(options, "context", None)
    max_kv_size = _opt_int(options, "max_kv_size", None)
    kv_bits = _opt_int(options, "kv_bits", None)
    if kv_bits is not None and kv_bits not in KV_BITS:
        raise OptionsError(f"mlx: --kv-bits must be one of {', '.join(map(str, KV_BITS))}, got {kv_bits}")
    group = _opt_int(options, "kv_group_size", 64)
    if group not in (32, 64, 128):
        raise OptionsError(f"mlx: --kv-group-size must be 32, 64 or 128, got {group}")
    start = _opt_int(options, "quantized_kv_start", DEFAULT_QUANTIZED_KV_START, minimum=0)
    step = _opt_int(options, "prefill_step_size", 2048)
    version = _version(options.get("mlx_version", "0.32.4"))
    if model.dtype not in DTYPE_BYTES:
        raise ModelError(f"mlx: dtype {model.dtype!r} is not priced; supported: {', '.join(DTYPE_BYTES)}")
    layers, warnings = _cache_layers(model, max_kv_size)
    if kv_bits is not None:
        if any(l.kind == "RotatingKVCache" for l in layers):
            raise OptionsError("mlx: RotatingKVCache Quantization NYI — --kv-bits cannot be used with --max-kv-size or "
                               "a sliding-window model (mlx_lm/models/cache.py RotatingKVCache.to_quantized)")
        for l in layers:
            if l.dk % group or l.dv % group:
                raise OptionsError(f"mlx: --kv-group-size {group} must divide the cache head dims {l.dk} and {l.dv}")
    quant, note = checkpoint_quant(model, options.get("q_bits"), options.get("q_group_size"))
    weights = weight_arrays(model, quant, note)
    ws = device.memory_bytes
    ram = device.ram_bytes
    if options.get("memory_limit") is not None:
        limit = _opt_int(options, "memory_limit", None)
        formula = "given with mx.set_memory_limit"
    elif version < (0, 13, 0) or ram is None:
        limit = int(1.5 * ws)
        formula = "1.5 × working set" + ("" if version < (0, 13, 0) else " (RAM unknown, so the 0.95 × RAM term is left out)")
    else:
        limit = int(min(1.5 * ws, 0.95 * ram))
        formula = "min(1.5 × working set, 0.95 × RAM)"
    return Launch(model, ws, ram, device.max_buffer_bytes, limit, formula, batch, context, max_kv_size, kv_bits, group,
                  start, step, DTYPE_BYTES[model.dtype], layers, weights, tuple(warnings))


@dataclass(frozen=True)
class Need:
    context: int
    batch: int
    kv: int
    activations: int
    weights: int
    largest_array: int
    largest_name: str
    tokens_per_layer: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.activations

    def describe(self, led: Ledger, launch: Launch) -> None:
        held = ", ".join(f"{k}: {v:,}" for k, v in self.tokens_per_layer.items())
        led.add("context", self.context, "tokens", "tokens per sequence")
        led.add("batch", self.batch, "sequences")
        led.add("cache_tokens", held, formula="tokens each layer's arrays hold at their peak (steps of 256)",
                source="mlx_lm/models/cache.py KVCache / RotatingKVCache update_and_fetch")
        led.add("kv_cache", self.kv, "bytes", "Σ layers K + V arrays (page-rounded)", "mlx_lm/models/cache.py")
        led.add("activations", self.activations, "bytes", "largest prefill chunk: attention scores when unfused + MLP",
                estimate=True, note="MLX frees a layer's intermediates as the lazy graph evaluates; kvcap counts one layer")
        led.add("total", self.total, "bytes", "weights + kv_cache + activations")
        led.add("largest_array", self.largest_array, "bytes", self.largest_name,
                "mlx/backend/metal/allocator.cpp MetalAllocator::malloc (one Metal buffer per array)")


def need_at(L: Launch, context: int, batch: int) -> Need:
    """Bytes one generation of `batch` sequences of `context` tokens needs at its peak."""
    kv_total = 0
    rotating: dict[int, tuple[int, int]] = {}
    largest, largest_name = L.weights.largest, f"weight {L.weights.largest_name}"
    held: dict[str, int] = {}
    quantized = L.kv_bits is not None and context > L.quantized_kv_start
    scores = 0
    for l in L.layers:
        if l.kind == "KVCache":
            tokens = kvcache_capacity(context, L.prefill_step)
            arrays = (quantized_arrays(batch, l.heads, tokens, l.dk, l.dv, L.dtype_bytes, L.kv_bits, L.kv_group_size)
                      if quantized else plain_arrays("KVCache", batch, l.heads, tokens, l.dk, l.dv, L.dtype_bytes))
            if quantized and L.quantized_kv_start > 0:
                # maybe_quantize_kv_cache: the fp16 arrays and their quantized copy live together once
                start_tokens = kvcache_capacity(L.quantized_kv_start + 1, L.prefill_step)
                plain = plain_arrays("KVCache", batch, l.heads, start_tokens, l.dk, l.dv, L.dtype_bytes)
                q0 = quantized_arrays(batch, l.heads, start_tokens, l.dk, l.dv, L.dtype_bytes, L.kv_bits, L.kv_group_size)
                if plain.total + q0.total > arrays.total:
                    arrays = LayerArrays("QuantizedKVCache", start_tokens, plain.k_bytes + q0.k_bytes, plain.v_bytes + q0.v_bytes)
            kv_len = context
        else:
            if l.max_size not in rotating:
                rotating[l.max_size] = rotating_sizes(context, L.prefill_step, l.max_size)
            tokens = rotating[l.max_size][0]
            arrays = plain_arrays("RotatingKVCache", batch, l.heads, tokens, l.dk, l.dv, L.dtype_bytes)
            kv_len = min(context, l.max_size - 1 + L.prefill_step)
        key = arrays.kind if l.max_size is None else f"{arrays.kind}({l.max_size})"
        held[key] = tokens
        kv_total += sum(page_round(a) for a in arrays.k_bytes + arrays.v_bytes)
        if arrays.largest > largest:
            largest, largest_name = arrays.largest, f"a {arrays.kind} array of {tokens:,} tokens"
        if l.unfused or quantized:
            # the biggest [B, q_heads, L, kv] scores array over the prompt chunks
            s = batch * l.q_heads * largest_chunk_scores(context, L.prefill_step, kv_len) * L.dtype_bytes
            scores = max(scores, s)
            if s > largest:
                largest, largest_name = s, "the attention scores of a prompt chunk (no fused kernel for this shape)"
    step = min(L.prefill_step, max(context - 1, 1))
    m = L.model
    mlp = batch * step * (3 * m.intermediate_size + 4 * m.hidden_size) * L.dtype_bytes
    activations = page_round(2 * scores) + page_round(mlp)
    return Need(context, batch, kv_total, activations, L.weights.total, largest, largest_name, held)
