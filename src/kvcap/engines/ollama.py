"""Ollama: which num_ctx and parallelism it picks, which runner sizes the cache, with which KV type.

Ollama always asks its runner for `num_ctx x num_parallel` cells (llm/server.go NewLlamaServer:
`KvSize: opts.NumCtx * numParallel`; v0.30+ llm/llama_server.go: `-c NumCtx*numParallel -np
numParallel`). Three runners size the cache, by version (ollama_versions.runner_kind):
  - "llama": the CGO llama.cpp runner (libllama defaults: per-sequence streams, full-size SWA);
  - "ollama": Ollama's Go engine for the architectures it owns (ollama_engine);
  - "llama-server": from v0.30 an upstream llama-server, whose `--fit` places the layers.
The llama.cpp arithmetic is llamacpp's own: Ollama's choices become llama.cpp options.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..device.spec import DeviceSpec
from ..model.spec import ModelSpec
from ..plan import CONTEXT_WINDOW, MODE_DEFAULT, USER_OVERRIDE, Binding, Ledger, Plan
from ..units import parse_size
from . import llamacpp
from .base import check_options
from .llamacpp_fit import Placement, largest
from .llamacpp_kv import Cparams, n_layer, per_token_bytes
from .llamacpp_memory import weights
from .llamacpp_options import FA_BACKENDS, as_bool, as_int, settings
from .llamacpp_types import GGML_TYPES
from .ollama_engine import go_caches
from .ollama_versions import (FA_DEFAULT_ARCHS, GGUF_ARCH, LATEST, SINGLE_PARALLEL_ARCHS, auto_parallel,
                              default_num_ctx, default_parallel, llama_cpp_era, parse_version, runner_kind)

NAME = "ollama"
OPTIONS: dict[str, str] = {
    "num_ctx": "context per sequence (request/Modelfile option)",
    "num_batch": "batch size (default 512)",
    "num_gpu": "layers to offload (default: Ollama decides)",
    "OLLAMA_CONTEXT_LENGTH": "default num_ctx when a request does not set it",
    "OLLAMA_NUM_PARALLEL": "parallel sequences per model",
    "OLLAMA_KV_CACHE_TYPE": "f16 (default), q8_0 or q4_0; quantized types need flash attention",
    "OLLAMA_FLASH_ATTENTION": "true/false (unset: Ollama's per-model default)",
    "OLLAMA_GPU_OVERHEAD": "bytes of VRAM to leave unused per GPU",
    "version": f"Ollama version (default {LATEST})",
    "gguf_file_type": "the model file's GGUF type when it was not read from the file (default Q4_K_M)",
}
SRC_SERVER = "llm/server.go NewLlamaServer"
SRC_SCHED = "server/sched.go Scheduler.load"
# llm/memory.go: memory a GPU must keep beyond the model (457 MiB CUDA/ROCm, 512 MiB Metal)
MINIMUM_MEMORY = {"metal": 512 << 20}
DEFAULT_MINIMUM = 457 << 20


def _normalize(options: Mapping[str, Any]) -> dict[str, Any]:
    return {(k.upper() if k.upper().startswith("OLLAMA_") else k): v for k, v in options.items()}


def gguf_arch(model: ModelSpec) -> str:
    arch = model.config.get("general.architecture") if isinstance(model.config, Mapping) else None
    return str(arch or GGUF_ARCH.get(model.model_type, model.model_type))


def plan(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any]) -> Plan:
    o = _normalize(options)
    check_options(NAME, o, OPTIONS)
    v = parse_version(o.get("version", LATEST))
    arch = gguf_arch(model)
    runner = runner_kind(v, arch)
    led, warnings = Ledger(), []
    led.add("ollama_version", ".".join(map(str, v)), "", "", "")
    led.add("runner", runner, "", "llama: CGO llama.cpp runner; ollama: Go engine; llama-server: v0.30+",
            "fs/ggml/ggml.go KV.OllamaEngineRequired; PR #16031")

    overhead = parse_size(o["OLLAMA_GPU_OVERHEAD"], "OLLAMA_GPU_OVERHEAD") if o.get("OLLAMA_GPU_OVERHEAD") else 0
    vram = max(device.memory_bytes - overhead, 0) * device.count
    if "num_ctx" in o:
        num_ctx, why, bind = as_int("num_ctx", o["num_ctx"]), "num_ctx as given", USER_OVERRIDE
    elif o.get("OLLAMA_CONTEXT_LENGTH"):
        num_ctx, why, bind = as_int("OLLAMA_CONTEXT_LENGTH", o["OLLAMA_CONTEXT_LENGTH"]), "OLLAMA_CONTEXT_LENGTH", USER_OVERRIDE
    else:
        num_ctx, why = default_num_ctx(v, vram)
        bind = MODE_DEFAULT
    led.add("num_ctx_default_or_given", num_ctx, "tokens", why, "server/routes.go modelOptions / Serve")
    train = model.context_window
    if train and num_ctx > train:
        warnings.append(f"requested context size too large for model (num_ctx {num_ctx}, n_ctx_train {train})")
        num_ctx, bind = train, CONTEXT_WINDOW
    led.add("num_ctx", num_ctx, "tokens", "capped to the model's n_ctx_train", SRC_SERVER)

    flash_user = as_bool("OLLAMA_FLASH_ATTENTION", o["OLLAMA_FLASH_ATTENTION"]) if "OLLAMA_FLASH_ATTENTION" in o else None
    kvct = str(o.get("OLLAMA_KV_CACHE_TYPE", "") or "").lower()
    if kvct and v < (0, 5, 0):
        warnings.append("OLLAMA_KV_CACHE_TYPE does not exist before Ollama 0.5.0: f16")
        kvct = ""
    if kvct not in ("", "f16", "q8_0", "q4_0"):
        warnings.append(f"unsupported OLLAMA_KV_CACHE_TYPE {kvct!r}: f16")  # GGML.SupportsKVCacheType
        kvct = ""
    num_batch = as_int("num_batch", o.get("num_batch", 512))
    ft = o.get("gguf_file_type") or model.quantization.get("gguf_file_type")
    base = {"gguf_file_type": ft} if ft else {}

    fixed, why_np = default_parallel(v)
    if "OLLAMA_NUM_PARALLEL" in o and as_int("OLLAMA_NUM_PARALLEL", o["OLLAMA_NUM_PARALLEL"], minimum=0):
        fixed, why_np = as_int("OLLAMA_NUM_PARALLEL", o["OLLAMA_NUM_PARALLEL"]), "OLLAMA_NUM_PARALLEL"
    if arch in SINGLE_PARALLEL_ARCHS and (fixed is None or fixed > 1):
        warnings.append(f"model architecture does not currently support parallel requests ({arch}): 1")
        fixed, why_np = 1, "forced to 1 for this architecture"
    tries = [fixed] if fixed is not None else [auto_parallel(v), 1]

    for i, np_ in enumerate(tries):
        p = _runner_plan(model, device, o, v, arch, runner, num_ctx, np_, num_batch, flash_user, kvct, base,
                         vram, overhead, Ledger(), list(warnings))
        if p.fits and p.engine_config.get("n_gpu_layers", 0) > n_layer(model) or i == len(tries) - 1:
            break
    led.add("num_parallel", np_, "", why_np + (" (kvcap's fit check, an estimate)" if fixed is None else ""), SRC_SCHED,
            estimate=fixed is None)
    led.add("kv_cells_requested", num_ctx * np_, "cells", "num_ctx x num_parallel", SRC_SERVER)
    binding = p.binding
    if binding.name in (USER_OVERRIDE, MODE_DEFAULT):
        binding = Binding(bind, f"num_ctx {num_ctx} ({why if bind != CONTEXT_WINDOW else 'the model n_ctx_train'}) "
                          f"x num_parallel {np_}", SRC_SERVER)
    config = {"num_ctx": num_ctx, "num_parallel": np_, "runner": runner, **dict(p.engine_config)}
    return dataclasses.replace(p, engine=NAME, engine_config=config, binding=binding,
                               ledger=tuple(led.lines) + p.ledger, options=dict(options))


def _runner_plan(model, device, o, v, arch, runner, num_ctx, np_, num_batch, flash_user, kvct, base, vram,
                 overhead, led, warnings) -> Plan:
    era = llama_cpp_era(v)
    supports_fa = device.backend in FA_BACKENDS
    if runner == "llama-server":
        # llm/llama_server.go: -c, -np, --cache-type-k/v as set, --flash-attn on|off|auto, -b/-ub num_batch
        fa = "on" if flash_user else "off" if flash_user is False or not supports_fa else "auto"
        opts = {**base, "era": era, "frontend": "llama-server", "n_ctx": num_ctx * np_, "n_seq_max": np_,
                "kv_unified": False, "flash_attn": fa, "n_batch": num_batch, "n_ubatch": num_batch}
        if kvct:
            opts.update(type_k=kvct, type_v=kvct)
        if "num_gpu" in o:
            opts["n_gpu_layers"] = as_int("num_gpu", o["num_gpu"], minimum=0)
        return llamacpp.build(model, device, settings(opts, device), opts, NAME, led, warnings)
    model_fa = _model_supports_fa(model, arch)
    if runner == "ollama":
        fa = (flash_user if flash_user is not None else arch in FA_DEFAULT_ARCHS) and supports_fa and model_fa
        return _go_plan(model, device, v, arch, num_ctx, np_, num_batch, fa, kvct, base, vram, overhead, led, warnings)
    # the CGO runner: llama/llama.go NewContextParams over llama_context_default_params()
    if v >= (0, 12, 4):
        fa = "on" if flash_user and supports_fa and model_fa else "off" if flash_user is not None else "auto"
    else:
        fa = "on" if flash_user and supports_fa and model_fa else "off"
    if kvct in ("q8_0", "q4_0") and fa != "on":
        warnings.append("OLLAMA_FLASH_ATTENTION must be enabled to use a quantized OLLAMA_KV_CACHE_TYPE: f16")
        kvct = ""
    opts = {**base, "era": era, "frontend": "libllama", "n_ctx": num_ctx * np_, "n_seq_max": np_,
            "n_ubatch": min(num_batch, num_ctx), "n_batch": min(num_batch, num_ctx) * np_,
            "flash_attn": fa}
    if kvct:
        opts.update(type_k=kvct, type_v=kvct)
    s = settings(opts, device)
    if "num_gpu" in o:
        ngl, how = as_int("num_gpu", o["num_gpu"], minimum=0), "num_gpu as given"
    else:
        budget = vram - device.count * MINIMUM_MEMORY.get(device.backend, DEFAULT_MINIMUM)
        ngl, how = llamacpp.largest_offload(model, s, budget), "kvcap's estimate of Ollama's layer fit"
    led.add("num_gpu", ngl, "layers", how, "llm/memory.go estimateGPULayers", estimate="num_gpu" not in o)
    s = dataclasses.replace(s, n_gpu_layers=ngl)
    opts["n_gpu_layers"] = ngl
    return llamacpp.build(model, device, s, opts, NAME, led, warnings)


def _model_supports_fa(model: ModelSpec, arch: str) -> bool:
    """fs/ggml/ggml.go GGML.SupportsFlashAttention: not gemma2/grok, equal K and V head sizes."""
    if arch in ("qwen35", "qwen35moe", "qwen3next"):
        return True
    if arch in ("gemma2", "grok"):
        return False
    kv = [l for l in model.layers if l.kv_elems_per_token]
    return bool(kv) and all(l.head_dim_k == l.head_dim_v for l in kv)


def _go_plan(model, device, v, arch, num_ctx, np_, num_batch, fa, kvct, base, vram, overhead, led, warnings) -> Plan:
    """The Go engine: its own Causal caches; memory placed by trial (modelled as whole layers)."""
    if kvct in ("q8_0", "q4_0") and not fa:
        warnings.append(f"quantized kv cache requested but flash attention disabled: f16 ({kvct})")
        kvct = ""
    dtype = GGML_TYPES[kvct or "f16"]
    caches = go_caches(model, v, arch, num_ctx, np_, num_batch, fa, dtype)
    for c in caches:
        llamacpp.cache_lines(led, c)
    led.add("kv_bytes_per_token", per_token_bytes(caches), "bytes", "K+V bytes per cell of the full-attention cache",
            "kvcache/causal.go")
    s = settings({**base, "era": llama_cpp_era(v), "frontend": "libllama"}, device)
    w = weights(model, s.file_type)
    cells = max((c.cells for c in caches if c.kind == "kv"), default=num_ctx * np_)
    cp = Cparams(cells, cells, np_, False, min(num_batch, num_ctx), fa, dtype, dtype, False, s.era)
    n_layer = len(w.layers)
    budget = vram - device.count * MINIMUM_MEMORY.get(device.backend, DEFAULT_MINIMUM)
    ngl = largest(0, n_layer + 1, lambda k: sum(llamacpp.device_use(
        model, w, cp, caches, Placement(k, n_layer, 0)).values()) <= budget)
    use = llamacpp.device_use(model, w, cp, caches, Placement(ngl, n_layer, 0))
    led.add("num_gpu", ngl, "layers", "kvcap's estimate of the Go engine's layer placement", "ml/device.go", estimate=True)
    led.add("weights_device_bytes", use["weights"], "bytes", w.how, "", estimate=not w.exact)
    led.add("compute_bytes", use["compute"], "bytes", "largest live tensors of the worst-case graph", "", estimate=True)
    if ngl <= n_layer:
        warnings.append(f"only {ngl} of {n_layer} layers on the device; the rest run on the CPU")
    config = {"n_ctx": cells, "type_k": dtype.name, "type_v": dtype.name, "flash_attn": fa, "n_gpu_layers": ngl}
    memory = {"weights": use["weights"], "kv_cache": use["kv_cache"], "compute": use["compute"],
              "host_weights": w.total - use["weights"], "host_kv_cache": sum(c.total for c in caches) - use["kv_cache"]}
    return Plan(engine=NAME, model=model, device=device, engine_config=config, memory=memory,
                binding=Binding(MODE_DEFAULT, "", ""), ledger=tuple(led.lines), kv_tokens=cells,
                warnings=tuple(warnings))


__all__ = ["NAME", "OPTIONS", "plan"]
