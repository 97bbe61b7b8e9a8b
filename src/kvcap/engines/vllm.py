"""vLLM: how many KV-cache blocks a model gets on a GPU, and the lines vLLM logs about them.

The chain (V1, v1/engine/core.py: EngineCore._initialize_kv_caches):
  requested   = total memory x gpu_memory_utilization          (v1/worker/utils.py: request_memory)
  available   = requested - weights - activation peak - non-torch [- CUDA graphs]
                                                                (gpu_worker.py: determine_available_memory)
  num_blocks  = min over workers of available // bytes per block (kv_cache_utils.py: get_kv_cache_configs)
  tokens, concurrency                                           (kv_cache_utils.py: _report_kv_cache_config)
V0 (before 0.8) divides the same budget by CacheEngine.get_cache_block_size. Everything after
`available` is exact; the profiled terms are estimates (vllm_memory.py, docs/vllm-estimate.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..device.spec import DeviceSpec
from ..model.spec import ModelSpec
from ..errors import KvcapError
from ..plan import INSUFFICIENT, MEMORY, USER_OVERRIDE, Binding, Ledger, Plan, WhatIf
from .vllm_check import WorkerKV, auto_fit, check, v0_error
from .vllm_layers import LayerSetup, kv_elem_bytes, layer_specs
from .vllm_memory import (Placement, ProfileInputs, activation_peak, cudagraph_memory, error_bars, mxfp4_layout,
                          non_torch, quant_method, weights_bytes)
from .vllm_options import OPTIONS, Resolved, resolve
from .vllm_pages import Layout, group_layers, num_blocks, pp_partition, report

NAME = "vllm"
MAX_MODEL_LEN = "max_model_len"
GiB = 1 << 30
# How far the loader's "Model loading took" may sit from the tensors' bytes (see _memory_lines).
WEIGHTS_REL_BAR = 0.015
__all__ = ["NAME", "OPTIONS", "plan"]


@dataclass(frozen=True)
class Worker:
    """One pipeline stage (its TP ranks are alike)."""

    stage: int
    layers: range
    weights: int
    activation: int
    non_torch: int
    cudagraph: int
    available: int
    layout: Layout
    blocks: int


def plan(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any], *, available: int | None = None,
         what_if: bool = True) -> Plan:
    """The engine policy. `available` replaces the profiled 'Available KV cache memory' of every
    worker with a known value (validate's from-given replay): everything after it is exact."""
    r = resolve(model, device, options)
    e = r.era
    led = Ledger()
    total = device.memory_bytes
    led.add("engine", f"vLLM {e.text} ({e.engine})", "", "rules of this release", "kvcap.engines.vllm_era")
    led.add("total_memory", total, "bytes", "cudaMemGetInfo total", "utils/mem_utils.py: MemorySnapshot")
    led.add("gpu_memory_utilization", r.utilization, "", "" if "gpu_memory_utilization" in options
            else f"vLLM {e.text} default", "config/cache.py: CacheConfig")
    exact = total * r.utilization
    requested = math.ceil(exact) if e.at_least(0, 14) else math.floor(exact)
    led.add("requested_memory", requested, "bytes", "total_memory x gpu_memory_utilization" +
            (" (rounded up)" if e.at_least(0, 14) else ""),
            "v1/worker/utils.py: request_memory" if e.v1 else "worker/worker.py: determine_num_available_blocks")

    setup = LayerSetup(r.tp, r.block_size, r.kv_cache_dtype, r.dtype_bytes, r.hybrid_allocator and e.v1,
                       r.mla_backend, e, r.mamba_cache_mode)
    global_layout = group_layers(layer_specs(model, setup), e)
    prof = ProfileInputs(tokens=r.max_num_batched_tokens, requests=min(r.max_num_seqs, r.max_num_batched_tokens),
                         sampler=r.sampler, tp=r.tp, world=r.tp * r.pp, v1=e.v1, cudagraphs=r.cudagraphs)
    workers = _workers(model, r, options, requested, global_layout, available, prof)
    lim = min(workers, key=lambda w: w.blocks)
    bars = error_bars(model, prof, not e.at_least(0, 14))
    _memory_lines(led, r, lim, len(workers), available is not None, bars)
    block = min((g.spec.block_size for g in global_layout.groups), default=r.block_size)
    _page_lines(led, r, global_layout, lim, kv_elem_bytes(setup))

    max_len, binding, error = r.max_model_len, None, None
    views = [WorkerKV(w.layout, w.available) for w in workers]
    if e.v1 and r.auto_fit:
        fitted, limiting, error = auto_fit(e, global_layout, views, r.derived_max_model_len, r.max_num_batched_tokens)
        if error is None and fitted < r.derived_max_model_len:
            max_len = fitted
            binding = Binding(MAX_MODEL_LEN, f"Auto-fit max_model_len: reduced from {r.derived_max_model_len} to "
                              f"{fitted} to fit in available GPU memory ({limiting / GiB:.2f} GiB available for KV cache)",
                              "v1/core/kv_cache_utils.py: _auto_fit_max_model_len")
    led.add("max_model_len", max_len, "tokens", "auto-fit" if r.auto_fit else
            ("set" if "max_model_len" in options else "derived from the model config"),
            "config/model.py: _get_and_verify_max_len")
    blocks = lim.blocks if r.num_gpu_blocks_override is None else r.num_gpu_blocks_override
    if e.v1 and error is None:
        error, need, avail, est = check(e, global_layout, views, max_len, r.max_num_batched_tokens)
        if need:
            led.add("kv_cache_needed_for_one_request", need, "bytes", "max_memory_usage_bytes at max_model_len",
                    "v1/core/kv_cache_utils.py: check_enough_kv_cache_memory")
            led.add("estimated_max_model_len", est, "tokens", "binary search for the longest request that fits",
                    "v1/core/kv_cache_utils.py: estimate_max_model_len")
    elif not e.v1:
        error = v0_error(max_len, blocks, block, r.pp)
    led.add("num_gpu_blocks", blocks, "blocks", "min over workers of available // bytes_per_block",
            "v1/core/kv_cache_utils.py: get_kv_cache_configs" if e.v1 else "worker/worker.py: determine_num_available_blocks")
    tokens, concurrency = report(global_layout, blocks, max_len, r.max_num_batched_tokens, e)
    led.add("kv_cache_tokens", tokens, "tokens", _tokens_formula(e), "GPU KV cache size line")
    led.add("max_concurrency", concurrency, "x", f"for {max_len} tokens per request", "Maximum concurrency line")
    if not e.v1:
        cpu = r.swap_space_bytes // lim.layout.bytes_per_block if lim.layout.bytes_per_block else 0
        led.add("num_cpu_blocks", cpu, "blocks", "swap_space // cache_block_size", "worker/worker.py")

    if error is not None:
        binding = Binding(INSUFFICIENT, error, "v1/core/kv_cache_utils.py" if e.v1 else "worker/worker.py")
    elif binding is None and (r.kv_cache_memory_bytes is not None or r.num_gpu_blocks_override is not None):
        binding = Binding(USER_OVERRIDE, "kv_cache_memory_bytes sets the KV cache size; gpu_memory_utilization is not used"
                          if r.num_gpu_blocks_override is None else "num_gpu_blocks_override sets the block count",
                          "v1/worker/gpu_worker.py: determine_available_memory")
    elif binding is None:
        binding = Binding(MEMORY, f"{blocks:,} blocks of {block} tokens: the available KV memory of the smallest "
                          f"worker ({lim.available / GiB:.2f} GiB) // {lim.layout.bytes_per_block:,} bytes a block",
                          "v1/core/kv_cache_utils.py: get_num_blocks" if e.v1
                          else "worker/worker.py: determine_num_available_blocks")
    engine_config = _engine_config(r, blocks, block, max_len)
    memory = {"weights": lim.weights, "activation_peak": lim.activation, "non_torch": lim.non_torch,
              "cudagraph": lim.cudagraph, "kv_cache": max(0, blocks) * lim.layout.bytes_per_block,
              "unbudgeted": total - requested}
    warnings = []
    if r.tp * r.pp > device.count:
        warnings.append(f"{r.tp * r.pp} GPUs needed (tensor x pipeline parallel) but the device lists {device.count}")
    kv_tokens = tokens if error is None else 0
    ifs = _what_ifs(model, device, options, r, kv_tokens, led) if what_if and available is None else ()
    return Plan(engine=NAME, model=model, device=device, engine_config=engine_config, memory=memory,
                binding=binding, ledger=tuple(led.lines), kv_tokens=kv_tokens, what_if=ifs,
                warnings=tuple(warnings), options=dict(options))


def _what_ifs(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any], r: Resolved, tokens: int,
              led: Ledger) -> tuple[WhatIf, ...]:
    """The cheapest knobs that buy KV capacity: fp8 KV, a higher utilization, a shorter request."""
    tries: list[tuple[str, str, dict]] = []
    if r.kv_cache_dtype in ("auto", "float16", "bfloat16"):
        tries.append(("fp8 KV cache", "--kv-cache-dtype fp8", {"kv_cache_dtype": "fp8"}))
    if r.utilization < 0.95 and r.kv_cache_memory_bytes is None:
        tries.append(("95 % of GPU memory", "--gpu-memory-utilization 0.95", {"gpu_memory_utilization": 0.95}))
    try:
        est = led.get("estimated_max_model_len")
    except KeyError:
        est = 0
    if tokens == 0 and est > 0:
        tries.append((f"requests of {est} tokens", f"--max-model-len {est}", {"max_model_len": est}))
    out = []
    for change, knob, delta in tries:
        try:
            alt = plan(model, device, {**options, **delta}, what_if=False)
        except KvcapError:
            continue
        out.append(WhatIf(change, knob, alt.engine_config, alt.binding.name, alt.kv_tokens,
                          alt.kv_tokens / tokens if tokens else None))
    return tuple(out)


def _workers(model: ModelSpec, r: Resolved, options: Mapping[str, Any], requested: int,
             global_layout: Layout, given: int | None, prof: ProfileInputs) -> list[Worker]:
    e = r.era
    quant = quant_method(model, options)
    out = []
    stages = pp_partition(model.num_hidden_layers, r.pp, r.pp_partition)
    for s, layers in enumerate(stages):
        where = Placement(r.tp, layers, s == 0, s == len(stages) - 1, r.pp)
        weights = max(0, weights_bytes(model, where, r.dtype_bytes, quant, mxfp4_layout(r.gpu_arch, e.version))
                      - r.cpu_offload_bytes)
        act = activation_peak(model, prof, r.dtype_bytes, where.last)
        nt, cg = non_torch(prof), cudagraph_memory(prof)
        if given is not None:
            available = given
        elif r.kv_cache_memory_bytes is not None:
            available = r.kv_cache_memory_bytes
        else:
            available = requested - (weights + act + nt + cg)
        layout = global_layout.project(set(layers))
        out.append(Worker(s, layers, weights, act, nt, cg, available, layout, num_blocks(available, layout)))
    return out


def _memory_lines(led: Ledger, r: Resolved, w: Worker, n: int, given: bool, bar: Mapping[str, int]) -> None:
    src = "v1/worker/gpu_worker.py: determine_available_memory" if r.era.v1 else "worker/worker.py: determine_num_available_blocks"
    who = f" (stage {w.stage} of {n}, the smallest)" if n > 1 else ""
    # 'Model loading took X GiB' is measured by the loader and carries buffers beside the
    # parameters; on the public logs it lies within ±1.2 % of the tensors' bytes, stated as ±1.5 %.
    led.add("weights", w.weights, "bytes", f"parameters one rank loads{who}", "'Model loading took X GiB'",
            estimate=True, note="± 1.5 % (loader buffers beside the parameters)", error_bar=w.weights * WEIGHTS_REL_BAR)
    led.add("activation_peak", w.activation, "bytes", "profile run: max(forward at max_num_batched_tokens, "
            "dummy sampler over max_num_seqs x vocab)", src, estimate=True, note=f"± {bar['activation'] / GiB:.2f} GiB",
            error_bar=bar["activation"])
    led.add("non_torch_memory", w.non_torch, "bytes", "NCCL, cuBLAS and driver memory growth", src, estimate=True,
            note=f"± {bar['non_torch'] / GiB:.2f} GiB", error_bar=bar["non_torch"])
    if r.cudagraphs:
        led.add("cudagraph_memory_estimate", w.cudagraph, "bytes", "profile_cudagraph_memory", src, estimate=True,
                note=f"± {bar['cudagraph'] / GiB:.2f} GiB", error_bar=bar["cudagraph"])
    total_bar = sum(bar.values()) + w.weights * WEIGHTS_REL_BAR
    formula = ("given (the logged value)" if given else "kv_cache_memory_bytes" if r.kv_cache_memory_bytes is not None else
               "requested_memory - weights - activation_peak - non_torch_memory" +
               (" - cudagraph_memory_estimate" if r.cudagraphs else ""))
    led.add("available_kv_cache_memory", w.available, "bytes", formula, src,
            estimate=r.kv_cache_memory_bytes is None and not given,
            note="'Available KV cache memory: X GiB'" + ("" if given or r.kv_cache_memory_bytes is not None
                                                         else f"; ± {total_bar / GiB:.2f} GiB"),
            error_bar=None if given or r.kv_cache_memory_bytes is not None else total_bar)


def _page_lines(led: Ledger, r: Resolved, layout: Layout, w: Worker, elem: int) -> None:
    led.add("kv_cache_dtype", r.kv_cache_dtype, "", f"{elem} byte(s) an element", "config/cache.py: CacheDType")
    if layout.mode == "none":
        return
    led.add("block_size", min(g.spec.block_size for g in layout.groups), "tokens", "", "platforms/cuda.py")
    led.add("kv_cache_groups", len(layout.groups), "", f"{layout.mode} layout", "v1/core/kv_cache_utils.py: get_kv_cache_groups")
    led.add("page_size_bytes", layout.page, "bytes", "one block of one layer (uniform_type: all layers)",
            "v1/kv_cache_interface.py: page_size_bytes")
    led.add("bytes_per_block", w.layout.bytes_per_block, "bytes", "page_size_bytes x layers a pool serves",
            "v1/core/kv_cache_utils.py: get_num_blocks")


def _tokens_formula(e) -> str:
    return {"v0": "num_gpu_blocks x block_size", "blocks": "num_blocks x block_size",
            "groups": "num_blocks // groups x min block_size",
            "concurrency": "int(max_concurrency x max_model_len)"}[e.tokens_line]


def _engine_config(r: Resolved, blocks: int, block: int, max_len: int) -> dict[str, Any]:
    cfg = {"engine_version": r.era.text, "num_gpu_blocks": blocks, "block_size": block, "max_model_len": max_len,
           "gpu_memory_utilization": r.utilization, "kv_cache_dtype": r.kv_cache_dtype,
           "tensor_parallel_size": r.tp, "pipeline_parallel_size": r.pp, "max_num_seqs": r.max_num_seqs,
           "max_num_batched_tokens": r.max_num_batched_tokens, "enforce_eager": r.enforce_eager}
    if r.kv_cache_memory_bytes is not None:
        cfg["kv_cache_memory_bytes"] = r.kv_cache_memory_bytes
    return cfg
