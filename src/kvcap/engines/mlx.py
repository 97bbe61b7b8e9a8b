"""MLX-LM (ml-explore/mlx-lm on ml-explore/mlx): KV cache arrays on an Apple GPU.

mlx-lm has no KV pool: each layer keeps its own K and V arrays, grown 256 tokens at a time
(mlx_cache.py), and MLX gives every array its own Metal buffer. So three limits apply, from
mlx/backend/metal/allocator.cpp `MetalAllocator`:

- the working set (`recommendedMaxWorkingSetSize`, DeviceSpec.memory_bytes): beyond it memory is
  not kept resident and pages — it runs, slowly ("fits but will page");
- the memory limit, min(1.5 × working set, 0.95 × RAM) since MLX 0.13 (1.5 × working set
  before): beyond it evaluation waits for memory to free and the system swaps;
- `maxBufferLength` per array (DeviceSpec.max_buffer_bytes): a larger single allocation throws
  "[metal::malloc] Attempting to allocate N bytes which is greater than the maximum allowed buffer
  size of M bytes." — a per-layer KV array, a stacked expert weight, or the attention scores a
  prefill chunk materialises when no fused kernel takes the shape.

Given `context` (tokens per sequence) and `batch`, the plan checks that launch; without `context`
it finds the largest context that stays inside the working set.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..device.spec import DeviceSpec
from ..errors import DeviceError, OptionsError
from ..model.spec import ModelSpec
from ..plan import CONTEXT_WINDOW, INSUFFICIENT, MEMORY, USER_OVERRIDE, Binding, Ledger, Plan, WhatIf
from ..units import fmt_bytes
from .base import check_options
from .mlx_memory import Launch, Need, SOURCE_ALLOC, launch_from, need_at

NAME = "mlx"
MAX_BUFFER = "max_buffer_length"
PAGING = "fits_but_will_page"
MAX_KV_SIZE = "max_kv_size"
NEWEST_MLX = "0.32.4"
OPTIONS: dict[str, str] = {
    "context": "kvcap: tokens per sequence (prompt + generation); default: the largest that fits",
    "batch": "kvcap: sequences generated together (mlx_lm batch_generate); default 1",
    "max_kv_size": "--max-kv-size: a rotating cache of this many tokens per layer",
    "kv_bits": "--kv-bits: quantize the KV cache to 2, 3, 4, 5, 6 or 8 bits",
    "kv_group_size": "--kv-group-size: values per scale and bias (default 64)",
    "quantized_kv_start": "--quantized-kv-start: tokens before the cache is quantized (default 5000)",
    "prefill_step_size": "--prefill-step-size: prompt tokens per forward pass (default 2048)",
    "q_bits": "mlx_lm.convert --q-bits: quantize an unquantized checkpoint's weights (default 4 with q_group_size)",
    "q_group_size": "mlx_lm.convert --q-group-size (default 64)",
    "memory_limit": "mx.set_memory_limit: bytes (default min(1.5 × working set, 0.95 × RAM))",
    "mlx_version": f"kvcap: the MLX release whose allocator applies (default {NEWEST_MLX})",
}
SEARCH_CEILING = 1 << 24  # tokens, where a model declares no context window


def _largest(ok, lo: int, hi: int) -> int:
    """The largest x in [lo, hi] with ok(x), given ok is monotone (true then false); lo − 1 if none."""
    if hi < lo or not ok(lo):
        return lo - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def plan(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any]) -> Plan:
    return _plan(model, device, options, with_what_ifs=True)


def _plan(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any], with_what_ifs: bool) -> Plan:
    check_options(NAME, options, OPTIONS)
    if device.backend != "metal":
        raise DeviceError(f"mlx: kvcap models MLX-LM on Apple Metal devices; {device.name} is {device.backend}")
    L = launch_from(model, device, options)
    led = Ledger()
    L.describe(led)
    window = model.context_window
    warnings: list[str] = list(L.warnings)

    def fits(limit: int, context: int, batch: int) -> bool:
        n = need_at(L, context, batch)
        return n.total <= limit and (L.max_buffer is None or n.largest_array <= L.max_buffer)

    if L.context is not None:
        n = need_at(L, L.context, L.batch)
        n.describe(led, L)
        binding, kv_tokens = _given(L, n, warnings)
        ctx = L.context
        max_batch = _largest(lambda b: fits(L.working_set, ctx, b), 1, 1 << 16)
        led.add("max_batch", max(max_batch, 0), "sequences", f"the most sequences of {ctx:,} tokens inside the working set")
    else:
        ceiling = window or SEARCH_CEILING
        c_ws = _largest(lambda c: need_at(L, c, L.batch).total <= L.working_set, 1, ceiling)
        c_buf = (_largest(lambda c: need_at(L, c, L.batch).largest_array <= L.max_buffer, 1, ceiling)
                 if L.max_buffer is not None else ceiling)
        c_lim = _largest(lambda c: need_at(L, c, L.batch).total <= L.memory_limit, 1, ceiling)
        led.add("context_in_working_set", max(c_ws, 0), "tokens", "largest context whose arrays stay inside the working set")
        if L.max_buffer is not None:
            led.add("context_under_max_buffer", max(c_buf, 0), "tokens", "largest context whose largest array ≤ maxBufferLength")
        led.add("context_in_memory_limit", max(c_lim, 0), "tokens", "largest context under MLX's memory limit (pages past the working set)")
        ctx = min(c_ws, c_buf)
        if ctx >= 1:
            binding = _solved_binding(L, ctx, c_ws, c_buf, ceiling, window)
        elif min(c_lim, c_buf) >= 1:
            ctx = min(c_lim, c_buf)
            binding = Binding(PAGING, f"the weights alone exceed the working set {fmt_bytes(L.working_set)}; up to "
                              f"{ctx:,} tokens fit under MLX's memory limit {fmt_bytes(L.memory_limit)} but every step pages",
                              SOURCE_ALLOC)
            warnings.append("fits but will page: expect decoding many times slower than from resident memory")
        else:
            ctx = 0
            binding = Binding(INSUFFICIENT, _too_big_reason(L, need_at(L, 1, L.batch)), SOURCE_ALLOC)
        if ctx >= 1:
            need_at(L, ctx, L.batch).describe(led, L)
        kv_tokens = ctx * L.batch if ctx >= 1 else 0
        max_batch = L.batch
    held = min(ctx, L.max_kv_size) if (L.max_kv_size and ctx) else ctx
    engine_config = {"context": ctx, "batch": L.batch, "max_kv_size": L.max_kv_size, "kv_bits": L.kv_bits,
                     "kv_group_size": L.kv_group_size, "prefill_step_size": L.prefill_step,
                     "memory_limit": L.memory_limit, "max_batch": max_batch}
    final = need_at(L, max(ctx, 1), L.batch)
    memory = {"weights": L.weights.total, "kv_cache": final.kv if ctx else 0, "activations": final.activations if ctx else 0,
              "working_set": L.working_set, "memory_limit": L.memory_limit}
    if L.weights.total > 0.9 * L.working_set:
        warnings.append(f"[WARNING] Generating with a model that requires {L.weights.total // 2**20} MB which is close to "
                        f"the maximum recommended size of {L.working_set // 2**20} MB. This can be slow. "
                        "(mlx_lm generate.py wired_limit)")
    if L.max_kv_size and held < ctx:
        warnings.append(f"max_kv_size {L.max_kv_size}: the cache keeps the last {L.max_kv_size:,} tokens; older ones are dropped")
    return Plan(engine=NAME, model=model, device=device, engine_config=engine_config, memory=memory, binding=binding,
                ledger=tuple(led.lines), kv_tokens=kv_tokens, warnings=tuple(warnings), options=dict(options),
                what_if=_what_ifs(model, device, options, kv_tokens) if with_what_ifs else ())


def _too_big_reason(L: Launch, n: Need) -> str:
    if L.max_buffer is not None and n.largest_array > L.max_buffer:
        return (f"[metal::malloc] Attempting to allocate {n.largest_array} bytes which is greater than the maximum "
                f"allowed buffer size of {L.max_buffer} bytes. ({n.largest_name})")
    return (f"needs {fmt_bytes(n.total)}, over MLX's memory limit {fmt_bytes(L.memory_limit)} "
            f"(min(1.5 × working set, 0.95 × RAM)); beyond it MLX waits on memory and the system swaps")


def _given(L: Launch, n: Need, warnings: list[str]) -> tuple[Binding, int]:
    if L.max_buffer is not None and n.largest_array > L.max_buffer:
        return Binding(INSUFFICIENT, _too_big_reason(L, n), "mlx/backend/metal/allocator.cpp MetalAllocator::malloc"), 0
    if n.total > L.memory_limit:
        return Binding(INSUFFICIENT, _too_big_reason(L, n), SOURCE_ALLOC), 0
    tokens = L.context * L.batch
    if n.total > L.working_set:
        warnings.append("fits but will page: expect decoding many times slower than from resident memory")
        return Binding(PAGING, f"needs {fmt_bytes(n.total)}, more than the working set {fmt_bytes(L.working_set)} "
                       f"but under MLX's memory limit {fmt_bytes(L.memory_limit)}: it runs, and pages", SOURCE_ALLOC), tokens
    return Binding(USER_OVERRIDE, f"context {L.context:,} × batch {L.batch} fits the working set with "
                   f"{fmt_bytes(L.working_set - n.total)} to spare", "given context and batch"), tokens


def _solved_binding(L: Launch, ctx: int, c_ws: int, c_buf: int, ceiling: int, window: int | None) -> Binding:
    if ctx >= ceiling:
        if window:
            return Binding(CONTEXT_WINDOW, f"the model's context window {window:,} fits (mlx-lm does not enforce it)",
                           "config.json max_position_embeddings")
        return Binding(MAX_KV_SIZE if L.max_kv_size else MEMORY, f"memory allows more than {ceiling:,} tokens", "")
    if c_buf < c_ws:
        n = need_at(L, c_buf + 1, L.batch)
        return Binding(MAX_BUFFER, f"at {c_buf + 1:,} tokens {n.largest_name} would need {n.largest_array:,} bytes, over "
                       f"maxBufferLength {L.max_buffer:,}", "mlx/backend/metal/allocator.cpp MetalAllocator::malloc")
    return Binding(MEMORY, f"weights + KV arrays + activations reach the working set {fmt_bytes(L.working_set)} at "
                   f"{c_ws:,} tokens", SOURCE_ALLOC)


def _what_ifs(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any], base: int) -> tuple[WhatIf, ...]:
    out: list[WhatIf] = []

    def attempt(change: str, knob: str, extra: dict[str, Any]) -> None:
        try:
            p = _plan(model, device, {**options, **extra}, with_what_ifs=False)
        except (OptionsError, DeviceError):
            return
        out.append(WhatIf(change, knob, {k: p.engine_config.get(k) for k in ("context", "batch", *extra)},
                          p.binding.name, p.kv_tokens, p.kv_tokens / base if base else None))

    if options.get("kv_bits") is None:
        attempt("a 4-bit KV cache (its attention materialises the prompt chunk's scores)", "--kv-bits 4",
                {"kv_bits": 4, "quantized_kv_start": 0})
    if (options.get("prefill_step_size") or 2048) > 512:     # checked an int by launch_from
        attempt("smaller prompt chunks (smaller attention-score arrays)", "--prefill-step-size 512",
                {"prefill_step_size": 512})
    if options.get("q_bits") is None and not (model.config or {}).get("quantization"):
        attempt("4-bit weights", "mlx_lm.convert -q", {"q_bits": 4})
    return tuple(out)
