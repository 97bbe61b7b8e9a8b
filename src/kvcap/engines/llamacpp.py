"""llama.cpp: how many KV cells a context gets, where they live, and what `--fit` does to them.

plan() resolves the options the way the chosen frontend and era do (llamacpp_options), pads and
splits n_ctx (llamacpp_kv.resolve_cells), builds the memory module llama.cpp would build
(llamacpp_kv.memory_module), places layers and KV on the device (n_gpu_layers, offload_kqv) and,
where the build has it, runs `--fit` (llamacpp_fit). Every number lands in the Plan's ledger.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..device.spec import DeviceSpec
from ..errors import OptionsError
from ..model.spec import ModelSpec
from ..plan import CONTEXT_WINDOW, INSUFFICIENT, MEMORY, MODE_DEFAULT, USER_OVERRIDE, Binding, Ledger, Plan
from ..units import fmt_bytes
from .llamacpp_era import has
from .llamacpp_fit import Placement, fit, largest
from .llamacpp_kv import Cache, Cparams, kv_padding, memory_module, n_layer as layer_count, pad, per_token_bytes, resolve_cells
from .llamacpp_memory import Weights, compute_estimate, weights
from .llamacpp_options import OPTIONS, Settings, settings
from .llamacpp_types import file_type
from .llamacpp_whatif import what_ifs

NAME = "llamacpp"
__all__ = ["NAME", "OPTIONS", "plan", "build", "context_params", "largest_offload", "device_use", "cache_lines"]

CTX = "src/llama-context.cpp llama_context::llama_context"
MEM = "src/llama-model.cpp llama_model::create_memory"
KVC = "src/llama-kv-cache.cpp llama_kv_cache::llama_kv_cache"
FIT = "src/llama.cpp llama_params_fit_impl"


def plan(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any]) -> Plan:
    base = _plan(model, device, options)
    return dataclasses.replace(base, what_if=what_ifs(base, _plan, options))


def _plan(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any]) -> Plan:
    return build(model, device, settings(options, device, file_type_hint=file_type_hint(model)), options, NAME)


def file_type_hint(model: ModelSpec) -> str | None:
    """The GGUF file type the model was read with, when kvcap prices it (else None: the default)."""
    q = model.quantization or {}
    name = q.get("gguf_file_type") or (q.get("file_type") if q.get("format") == "gguf" else None)
    try:
        return file_type(name).name if name else None
    except OptionsError:
        return None


def n_ctx_train(model: ModelSpec) -> int:
    if not model.context_window:
        raise OptionsError(f"{model.name}: n_ctx and the model's n_ctx_train cannot both be zero; give n_ctx")
    return model.context_window


def context_params(model: ModelSpec, s: Settings, n_ctx: int) -> Cparams:
    """cparams for a requested n_ctx (0 = training context), as llama_context's constructor makes them."""
    n_ctx = n_ctx or n_ctx_train(model)
    n_batch = min(n_ctx, s.n_batch)                   # causal models: n_batch <= n_ctx
    n_ubatch = min(n_batch, s.n_ubatch)
    hybrid = any(l.state for l in model.layers) and any(l.kv_elems_per_token for l in model.layers)
    if hybrid and not has(s.era, "pad_256"):
        total = seq = pad(n_ctx, kv_padding(s.flash_attn))   # create_memory: hybrid pads n_ctx, no per-stream split
    else:
        total, seq = resolve_cells(n_ctx, s.n_seq_max, s.kv_unified, s.flash_attn, s.era)
    return Cparams(total, seq, s.n_seq_max, s.kv_unified, n_ubatch, s.flash_attn, s.type_k, s.type_v, s.swa_full,
                   s.era, gguf_mla=s.gguf_mla, mla_v_less=s.mla_v_less, offload_kqv=s.offload_kqv)


def _on_device(n_layer: int, p: Placement) -> range:
    return range(n_layer - min(p.n_gpu_layers, n_layer), n_layer)


def device_use(model: ModelSpec, w: Weights, cp: Cparams, caches: tuple[Cache, ...], p: Placement) -> dict[str, int]:
    """Bytes on the device for a placement: weights of offloaded layers, their KV, the compute buffer."""
    n_layer = len(w.layers)
    on = _on_device(n_layer, p)
    first = on.start
    dev_w = sum(w.layers[i] for i in on) + sum(w.experts[first:first + p.experts_on_device])
    output = p.n_gpu_layers > n_layer
    dev_w += w.output if output else 0
    dev_kv = sum(b for c in caches for il, b in c.per_layer() if il >= first) if cp.offload_kqv else 0
    compute = compute_estimate(model, caches, cp.n_ubatch, cp.n_ctx, cp.flash_attn, output)
    return {"weights": dev_w, "kv_cache": dev_kv, "compute": compute}


def largest_offload(model: ModelSpec, s: Settings, budget: int) -> int:
    """The largest -ngl whose weights, KV and compute fit `budget` bytes (n_layer + 1: everything)."""
    n_layer = layer_count(model)
    w = weights(model, s.file_type)
    cp = context_params(model, s, s.n_ctx)
    caches = memory_module(model, cp)
    return largest(0, n_layer + 1, lambda k: sum(device_use(model, w, cp, caches, Placement(k, n_layer, 0)).values()) <= budget)


def build(model: ModelSpec, device: DeviceSpec, s: Settings, options: Mapping[str, Any], engine: str,
          led: Ledger | None = None, warnings: list[str] | None = None) -> Plan:
    """The plan for resolved settings; Ollama calls this with the settings its runner passes."""
    led = led or Ledger()
    warnings = warnings if warnings is not None else []
    warnings += list(s.notes)
    n_layer = layer_count(model)
    w = weights(model, s.file_type)
    led.add("era", s.era, "", "builds of this month; rules that changed follow it", "llamacpp_era.RULES")
    led.add("frontend", s.frontend, "", "whose defaults apply (libllama, llama-cli, llama-server)")
    led.add("weights_bytes", w.total, "bytes", w.how, "src/llama-model.cpp load_tensors", estimate=not w.exact,
            note=f"gguf_file_type {s.file_type.name} is a default; set it to your file's type" if s.file_type_default and not w.exact else "")
    free = (s.free_memory or device.memory_bytes) * device.count
    default_p = Placement(n_layer + 1, n_layer, 0) if s.n_gpu_layers is None else Placement(s.n_gpu_layers, n_layer, 0)
    memo: dict[int, tuple[Cparams, tuple[Cache, ...]]] = {}

    def context(n_ctx: int) -> tuple[Cparams, tuple[Cache, ...]]:
        if n_ctx not in memo:
            cp = context_params(model, s, n_ctx)
            memo[n_ctx] = (cp, memory_module(model, cp))
        return memo[n_ctx]

    def probe(n_ctx: int, p: Placement) -> tuple[int, int]:
        cp, caches = context(n_ctx)
        use = device_use(model, w, cp, caches, p)
        return sum(use.values()), use["kv_cache"]

    requested = s.n_ctx
    led.add("n_ctx_requested", requested, "cells", "-c as given" if not s.n_ctx_default else
            ("0 = the model's n_ctx_train" if requested == 0 else f"the {s.frontend} default"), "common/common.h common_params")
    placement, fitted = default_p, None
    if s.fit:
        res = fit(probe, n_layer=n_layer, n_ctx_train=n_ctx_train(model), n_ctx_user=requested or None,
                  ngl_user=s.n_gpu_layers, full=default_p, is_moe=w.is_moe, free=free,
                  margin=s.fit_target, n_ctx_min=s.fit_ctx, n_devices=device.count,
                  total=device.memory_bytes * device.count)
        for i, text in enumerate(res.log):
            led.add(f"fit_{i}", text, "", "llama_params_fit_impl log", FIT)
        if not res.ok:
            warnings.append(f"failed to fit params to free device memory: {res.reason}")
        fitted = res.n_ctx
        placement = res.placement or placement
    n_ctx_in = fitted if fitted is not None else requested
    cp, caches = context(n_ctx_in)
    led.add("n_ctx", cp.n_ctx, "cells", "GGML_PAD(n_ctx, 256); per stream GGML_PAD(n_ctx / n_seq_max, 256) x n_seq_max"
            if has(s.era, "pad_256") else f"padded to {kv_padding(s.flash_attn)} (256 with flash attention, else 32)", CTX)
    led.add("n_ctx_seq", cp.n_ctx_seq, "cells", "cells one sequence may use", CTX)
    led.add("n_seq_max", cp.n_seq_max, "", "-np", CTX)
    led.add("n_stream", cp.n_stream, "", "1 with kv_unified, else one per sequence", KVC)
    if cp.n_ctx_seq > (model.context_window or cp.n_ctx_seq):
        warnings.append(f"n_ctx_seq ({cp.n_ctx_seq}) > n_ctx_train ({model.context_window}) -- possible training context overflow")
    for c in caches:
        cache_lines(led, c)
    if any(c.kind == "rs" for c in caches) and any(c.kind == "kv" and c.n_stream > 1 for c in caches):
        warnings.append("hybrid model with per-sequence streams: the Dec-2025 source gives each stream the whole "
                        "n_ctx (create_memory passes cparams.n_ctx); not yet checked against a log")
    led.add("kv_bytes_per_token", per_token_bytes(caches), "bytes",
                        "K+V bytes one more cell costs in the context-sized cache", KVC)
    use = device_use(model, w, cp, caches, placement)
    led.add("n_gpu_layers", placement.n_gpu_layers, "layers", "-ngl (n_layer + 1 = every layer and the output)",
            FIT if s.fit and placement is not default_p else "common/common.h n_gpu_layers")
    if w.is_moe and placement.overflowing:
        led.add("overflowing_layers", placement.overflowing, "layers", "offloaded layers whose experts stay in system memory", FIT)
    led.add("weights_device_bytes", use["weights"], "bytes", "offloaded layers (+ output when -ngl > n_layer)",
            "src/llama-model.cpp load_tensors", estimate=not w.exact,
            note="" if w.exact else "the offloaded share of the estimated weights_bytes (see its note)")
    led.add("kv_device_bytes", use["kv_cache"], "bytes", "KV/RS of offloaded layers (0 with -nkvo)", KVC)
    led.add("compute_bytes", use["compute"], "bytes", "largest live tensors of the worst-case graph", "llama_context::graph_reserve",
            estimate=True, note="ggml-alloc measures this at load; kvcap's estimate is within about ±30 %")
    used = led.add("device_used_bytes", sum(use.values()), "bytes", "weights + KV + compute on the device")
    free_estimated = s.free_memory is None and device.backend != "metal"
    led.add("device_free_bytes", free, "bytes", "free memory llama.cpp sees at load" + ("" if s.free_memory else " (taken as the device's memory)"),
            "ggml_backend_dev_memory", estimate=free_estimated,
            note="an upper bound: the driver, other processes and the display take some of the device's memory "
                 "before llama.cpp asks; give free_memory (nvidia-smi's free) for the real figure" if free_estimated else "")

    binding, kv_tokens = _binding(model, device, s, cp, caches, fitted, used, free, placement, n_layer, warnings)
    config = {"n_ctx": cp.n_ctx, "n_ctx_seq": cp.n_ctx_seq, "n_seq_max": cp.n_seq_max, "kv_unified": cp.kv_unified,
              "type_k": cp.type_k.name, "type_v": cp.type_v.name, "flash_attn": s.flash_attn, "swa_full": s.swa_full,
              "n_batch": min(s.n_batch, cp.n_ctx), "n_ubatch": cp.n_ubatch, "n_gpu_layers": placement.n_gpu_layers,
              "offload_kqv": s.offload_kqv, "fit": s.fit}
    kv_total = sum(c.total for c in caches)
    memory = {"weights": use["weights"], "kv_cache": use["kv_cache"], "compute": use["compute"],
              "host_weights": w.total - use["weights"], "host_kv_cache": kv_total - use["kv_cache"]}
    return Plan(engine=engine, model=model, device=device, engine_config=config, memory=memory, binding=binding,
                ledger=tuple(led.lines), kv_tokens=kv_tokens, warnings=tuple(warnings), options=dict(options))


def cache_lines(led: Ledger, c: Cache) -> None:
    what = {"kv": "KV cache", "kv_swa": "SWA KV cache", "rs": "recurrent state"}[c.kind]
    src = {"kv": KVC, "kv_swa": "src/llama-kv-cache-iswa.cpp llama_kv_cache_iswa", "rs": "src/llama-memory-recurrent.cpp"}[c.kind]
    led.add(f"{c.kind}_cells", c.cells, "cells", f"{what}: cells per stream (the log's 'cells')", src)
    led.add(f"{c.kind}_layers", len(c.rows), "layers", f"layers holding a {what}", src)
    led.add(f"{c.kind}_streams", c.n_stream, "", "streams (RS: 1)", src)
    led.add(f"{c.kind}_k_bytes", c.k_bytes, "bytes", f"sum over layers of row_bytes({c.type_k.name}, width) x cells x streams", src)
    led.add(f"{c.kind}_v_bytes", c.v_bytes, "bytes", f"sum over layers of row_bytes({c.type_v.name}, width) x cells x streams", src)
    led.add(f"{c.kind}_bytes", c.total, "bytes", f"{what}: K + V" if c.kind != "rs" else "R + S (F32, per sequence)", src)


def _binding(model, device, s: Settings, cp: Cparams, caches, fitted, used, free, placement, n_layer, warnings):
    biggest = max((t.row_bytes(w) * c.cells * c.n_stream for c in caches for _, k, v in c.rows
                   for t, w in ((c.type_k, k), (c.type_v, v))), default=0)
    if device.max_buffer_bytes and biggest > device.max_buffer_bytes:
        return Binding(INSUFFICIENT, f"one KV tensor needs {fmt_bytes(biggest)}, more than the device's largest buffer "
                       f"({fmt_bytes(device.max_buffer_bytes)}, maxBufferLength)", "ggml/src/ggml-alloc.c"), 0
    if used > free:
        where = ("macOS pages or fails command buffers above recommendedMaxWorkingSetSize" if device.backend == "metal"
                 else "the allocation fails (out of device memory)")
        return Binding(INSUFFICIENT, f"needs {fmt_bytes(used)} on the device but {fmt_bytes(free)} is free; {where}",
                       "ggml_backend_buft_alloc_buffer"), 0
    if placement.n_gpu_layers < n_layer:
        warnings.append(f"only {placement.n_gpu_layers} of {n_layer} layers on the device; the rest run on the CPU")
    if fitted is not None:
        return Binding(MEMORY, f"--fit cut n_ctx from n_ctx_train {model.context_window} to {fitted} to keep "
                       f"{s.fit_target >> 20} MiB free (not below -fitc {s.fit_ctx})", FIT), cp.n_ctx
    if not s.n_ctx_default:
        return Binding(USER_OVERRIDE, f"-c {s.n_ctx}" + (f" (padded to {cp.n_ctx})" if cp.n_ctx != s.n_ctx else ""), CTX), cp.n_ctx
    if s.n_ctx == 0:
        return Binding(CONTEXT_WINDOW, f"-c 0: the model's n_ctx_train {model.context_window}", CTX), cp.n_ctx
    return Binding(MODE_DEFAULT, f"the {s.frontend} default -c {s.n_ctx}", "common/common.h common_params"), cp.n_ctx
