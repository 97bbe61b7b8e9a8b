"""SGLang (sgl-project/sglang): the KV pool `python -m sglang.launch_server` allocates.

The rule (model_runner.py `profile_max_num_token`; mem_cache/kv_cache_configurator.py
`_profile_available_bytes` in 0.5.23):

    pre   = free GPU memory before the weights load (GiB)        "Load weight begin. avail mem"
    avail = free GPU memory after they load                      "Load weight end. avail mem"
    rest  = avail − pre × (1 − mem_fraction_static)
    max_total_num_tokens = int(rest · 2^30) // cell_size, then ≤ --max-total-tokens, then a
                           multiple of --page-size

`mem_fraction_static` defaults by GPU memory and release (sglang_defaults.py). `pre` is the device
total less what CUDA, NCCL and the libraries took first: kvcap estimates that term.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from ..device.spec import DeviceSpec
from ..errors import DeviceError, ModelError, OptionsError
from ..model.spec import ModelSpec
from ..plan import INSUFFICIENT, MEMORY, USER_OVERRIDE, Binding, Ledger, Plan, WhatIf
from ..units import GiB, MiB
from .base import check_options, whole
from .sglang_defaults import NEWEST, check_version, memory_defaults, read_wheel
from .sglang_pool import build_pool, kv_dtype_bytes
from .sglang_weights import weights_per_rank

NAME = "sglang"
OPTIONS: dict[str, str] = {
    "mem_fraction_static": "fraction of GPU memory for weights + KV pool (default: by GPU memory and release)",
    "context_length": "--context-length: max tokens of one request (default: the model's, SGLang's rule)",
    "tp_size": "--tp-size: tensor-parallel ranks (default 1)",
    "tensor_parallel_size": "--tensor-parallel-size: alias of tp_size",
    "pp_size": "--pp-size: pipeline stages (only 1 is modelled)",
    "page_size": "--page-size: tokens per KV page (default 1)",
    "kv_cache_dtype": "--kv-cache-dtype: auto | fp8_e5m2 | fp8_e4m3 | bf16 | bfloat16",
    "dtype": "--dtype: auto | half | float16 | bfloat16 | float | float32",
    "max_running_requests": "--max-running-requests",
    "max_total_tokens": "--max-total-tokens: cap on the KV pool in tokens",
    "chunked_prefill_size": "--chunked-prefill-size (default: by GPU memory)",
    "max_prefill_tokens": "--max-prefill-tokens (default 16384)",
    "cuda_graph_max_bs": "--cuda-graph-max-bs (default: by GPU memory and tp)",
    "disable_cuda_graph": "--disable-cuda-graph",
    "disable_piecewise_cuda_graph": "--disable-piecewise-cuda-graph (0.5.10 – 0.5.13)",
    "swa_full_tokens_ratio": "--swa-full-tokens-ratio: SWA pool size over the full pool (default 0.8)",
    "engine_version": f"kvcap: the SGLang release whose defaults apply (default {NEWEST})",
    "startup_overhead": "kvcap: bytes CUDA, NCCL and libraries take before the weights load (default: an estimate)",
    "weights_memory": "kvcap: weight bytes per rank, e.g. the 'mem usage' of SGLang's 'Load weight end' line",
}
DTYPES = {"auto": None, "half": "float16", "float16": "float16", "bfloat16": "bfloat16",
          "float": "float32", "float32": "float32"}
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
# Memory gone before "Load weight begin. avail mem=…" in public SGLang logs (CUDA context, NCCL,
# kernel libraries): H100 80GB (81,559 MiB = 79.65 GiB) showed 78.81 GiB free in Jan 2025 and
# 78.32 – 78.77 GiB in 2026; 4 × L4 (23,034 MiB) at TP 4 showed 21.63 GiB free in Mar 2025.
STARTUP_OVERHEAD_04 = int(0.85 * GiB)   # 0.4.x
STARTUP_OVERHEAD_05 = int(1.2 * GiB)    # 0.5.x
SRC_PROFILE = "sglang model_runner.py profile_max_num_token / kv_cache_configurator.py _profile_available_bytes"


def _int(options: Mapping[str, Any], name: str, default: int | None, minimum: int = 1) -> int | None:
    value = options.get(name)
    if value is None:           # an option passed as None is unset (not a None count)
        value = default
    return None if value is None else whole("sglang: --" + name.replace('_', '-'), value, minimum)


def _bool(options: Mapping[str, Any], name: str) -> bool:
    value = options.get(name, False)
    if not isinstance(value, bool):
        raise OptionsError(f"sglang: --{name.replace('_', '-')} is a flag (true or false), got {value!r}")
    return value


def _fraction(options: Mapping[str, Any], name: str) -> float | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise OptionsError(f"sglang: --{name.replace('_', '-')} must be in (0, 1], got {value!r}")
    return float(value)


def derived_context_length(model: ModelSpec) -> int:
    """utils/hf_transformers_utils.py `get_context_length`: the first of SGLang's keys, times the
    rope-scaling factor unless the scaling is llama3 or names original_max_position_embeddings."""
    cfg = model.config or {}
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    scaling = text.get("rope_scaling") or {}
    factor = 1
    if isinstance(scaling, dict) and scaling:
        factor = scaling.get("factor", 1) or 1
        if "original_max_position_embeddings" in scaling or scaling.get("rope_type") == "llama3":
            factor = 1
        # The config's own numbers: a list, string or NaN here is a corrupt config, not a length.
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1e6:
            raise ModelError(f"{model.name}: rope_scaling.factor must be a positive number below 1e6, got {factor!r}")
    for key in ("max_sequence_length", "seq_length", "max_seq_len", "model_max_length", "max_position_embeddings"):
        value = text.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not 0 < value < 1e12:           # NaN, infinity, negative: no context length
                raise ModelError(f"{model.name}: config field {key!r} must be a positive length, got {value!r}")
            return int(factor * value)
    return model.context_window or 2048


def load_dtype(model: ModelSpec, option: str) -> str:
    """configs/model_config.py `_get_and_verify_dtype`: 'auto' keeps the checkpoint dtype but casts
    float32 to bfloat16 for Gemma and to float16 otherwise."""
    if option not in DTYPES:
        raise OptionsError(f"sglang: --dtype {option!r} is not a choice; choose from {', '.join(DTYPES)}")
    if DTYPES[option] is not None:
        return DTYPES[option]
    if model.dtype == "float32":
        return "bfloat16" if model.model_type.startswith("gemma") else "float16"
    return model.dtype


def _resolve(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    """Every number of the launch, without the ledger: used for the plan and for its what-ifs."""
    check_options(NAME, options, OPTIONS)
    if device.backend not in ("cuda", "rocm"):
        raise DeviceError(f"sglang: kvcap models SGLang on cuda and rocm GPUs; {device.name} is {device.backend}")
    version = str(options.get("engine_version", NEWEST))
    v = check_version(version)
    if "tp_size" in options and "tensor_parallel_size" in options and options["tp_size"] != options["tensor_parallel_size"]:
        raise OptionsError("sglang: give --tp-size or --tensor-parallel-size, not two different values")
    tp = _int(options, "tp_size", _int(options, "tensor_parallel_size", 1))
    pp = _int(options, "pp_size", 1)
    if pp != 1:
        raise OptionsError("sglang: pipeline parallelism (--pp-size > 1) is not modelled; supported: 1")
    if tp > device.count:
        raise OptionsError(f"sglang: --tp-size {tp} needs {tp} GPUs; {device.name} has {device.count} (use --count)")
    if model.num_attention_heads % tp:
        raise OptionsError(f"sglang: num_attention_heads {model.num_attention_heads} is not divisible by --tp-size {tp}")
    n_kv = model.num_key_value_heads
    # n_kv == 0: no attention KV to split (an attention-free model; build_pool refuses its layers).
    if n_kv and ((tp <= n_kv and n_kv % tp) or (tp > n_kv and tp % n_kv)):
        raise OptionsError(f"sglang: {n_kv} KV heads cannot be split or replicated over --tp-size {tp}")
    page = _int(options, "page_size", 1)
    ratio = _fraction(options, "swa_full_tokens_ratio") or 0.8
    dtype = load_dtype(model, str(options.get("dtype", "auto")))
    dtype_bytes = DTYPE_BYTES[dtype]
    kv_dtype = str(options.get("kv_cache_dtype", "auto"))
    kv_bytes = kv_dtype_bytes(kv_dtype, dtype_bytes, v)
    pool = build_pool(model, tp, kv_bytes)

    derived = derived_context_length(model)
    context = _int(options, "context_length", None)
    if context is not None and context > derived:
        raise OptionsError(
            f"sglang: User-specified context_length ({context}) is greater than the derived context_length ({derived}). "
            "To allow overriding this maximum, set the env var SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1")
    context_len = context or derived
    max_total = _int(options, "max_total_tokens", None)
    max_running = _int(options, "max_running_requests", None)
    cps = options.get("chunked_prefill_size")
    if cps is not None and (isinstance(cps, bool) or not isinstance(cps, int)):
        raise OptionsError(f"sglang: --chunked-prefill-size must be an integer, got {cps!r}")
    if isinstance(cps, int) and cps > 0 and cps % page:
        raise OptionsError(f"sglang: --chunked-prefill-size {cps} must be a multiple of --page-size {page}")
    gpu_mib = device.memory_bytes / MiB  # get_nvgpu_memory_capacity: nvidia-smi memory.total, MiB
    d = memory_defaults(version, gpu_mib, device.backend, tp, mla=pool.kind == "mla",
                        chunked_prefill_size=cps, cuda_graph_max_bs=_int(options, "cuda_graph_max_bs", None),
                        mem_fraction_static=_fraction(options, "mem_fraction_static"),
                        max_prefill_tokens=_int(options, "max_prefill_tokens", 16384),
                        max_running_requests=max_running, max_total_tokens=max_total, context_length=context,
                        disable_cuda_graph=_bool(options, "disable_cuda_graph"),
                        disable_piecewise_cuda_graph=_bool(options, "disable_piecewise_cuda_graph"),
                        model_path=model.name)
    overhead = _int(options, "startup_overhead", STARTUP_OVERHEAD_04 if v < (0, 5, 0, -1) else STARTUP_OVERHEAD_05,
                    minimum=0)
    w = weights_per_rank(model, dtype_bytes, dtype, tp)
    given_weights = _int(options, "weights_memory", None, minimum=0)
    if given_weights is not None:
        w = replace(w, per_rank=given_weights, formula="given with weights_memory", estimate=False, note="")

    # Everything in GiB floats, as SGLang computes it.
    pre = (device.memory_bytes - overhead) / GiB
    avail = pre - w.per_rank / GiB
    rest = avail - pre * (1 - d.mem_fraction_static)
    budget = int(rest * (1 << 30))
    cell = pool.cell_size(ratio)
    profiled = int(budget // cell) if budget > 0 else 0
    tokens = min(profiled, max_total) if max_total is not None else profiled
    tokens = tokens // page * page
    swa_tokens = int(tokens * ratio) // page * page if pool.kind == "hybrid_swa" and pool.full_layers else 0
    if pool.kind == "hybrid_swa" and not pool.full_layers:
        swa_tokens = tokens
    return dict(version=version, v=v, wheel=read_wheel(v), tp=tp, page=page, ratio=ratio, dtype=dtype,
                kv_dtype=kv_dtype, kv_bytes=kv_bytes, pool=pool, derived=derived, context_len=context_len,
                context=context, max_total=max_total, max_running=max_running, d=d, overhead=overhead, w=w,
                gpu_mib=gpu_mib, pre=pre, avail=avail, rest=rest, budget=budget, cell=cell, profiled=profiled,
                tokens=tokens, swa_tokens=swa_tokens)


def max_running_requests(r: dict[str, Any]) -> int:
    """The scheduler's max_running_requests.

    Before 0.5.10: managers/tp_worker.py takes min(tokens // 2 or the user's value, the
    req_to_token pool size), the pool holding max_num_reqs + 1 slots (model_runner.py
    init_memory_pool). From 0.5.10 the runner resolves it (`_resolve_max_num_reqs`).
    """
    tokens, v, user = r["tokens"], r["v"], r["max_running"]
    estimated = max(min(int(tokens / r["context_len"] * 512), 4096), 2048)
    if v < (0, 5, 10, 0):
        pool = (user if user is not None else estimated) + 1
        return min(tokens // 2 if user is None else user, pool)
    if user is not None:
        return min(user, estimated) if v < (0, 5, 14, 0) else min(user, tokens // 2)
    return min(estimated, tokens // 2)


def plan(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any]) -> Plan:
    r = _resolve(model, device, options)
    d, w, pool = r["d"], r["w"], r["pool"]
    led = Ledger()
    src_defaults = d.source
    led.add("engine_version", r["version"], formula=f"SGLang rules read from the {r['wheel']} wheel")
    led.add("gpu_mem", round(r["gpu_mib"], 2), "MiB", "the device total as nvidia-smi / rocm-smi reports it",
            "sglang utils get_nvgpu_memory_capacity")
    led.add("chunked_prefill_size", d.chunked_prefill_size, "tokens", "by GPU memory" if "chunked_prefill_size"
            not in options else "given", src_defaults)
    led.add("cuda_graph_max_bs", d.cuda_graph_max_bs, "", "by GPU memory and tp_size" if "cuda_graph_max_bs"
            not in options else "given", src_defaults)
    fraction_formula = d.formula
    if d.reserved_mib is not None and ", reserved = " in d.formula:
        fraction_formula, reserved_words = d.formula.split(", reserved = ", 1)
        led.add("reserved_mem", round(d.reserved_mib, 1), "MiB", reserved_words, src_defaults)
    led.add("mem_fraction_static", d.mem_fraction_static, "", fraction_formula, src_defaults)
    led.add("dtype", r["dtype"], formula="the checkpoint dtype (float32 cast down)", source="configs/model_config.py _get_and_verify_dtype")
    led.add("startup_overhead", r["overhead"], "bytes", "CUDA context, NCCL and libraries before the weights load",
            estimate="startup_overhead" not in options,
            note="public SGLang logs show 0.84 – 1.33 GiB (H100 80GB), 0.86 GiB (L4, TP 4)"
            if "startup_overhead" not in options else "")
    led.add("pre_model_load_memory", round(r["pre"], 4), "GiB", "(device total − startup overhead) / 2^30",
            "model_runner.py init_torch_distributed: get_available_gpu_memory", estimate="startup_overhead" not in options,
            note="from the estimated startup_overhead (see its note)" if "startup_overhead" not in options else "")
    led.add("weights", w.per_rank, "bytes", w.formula, w.source, estimate=w.estimate, note=w.note)
    led.add("post_model_load_memory", round(r["avail"], 4), "GiB", "pre − weights / 2^30", "model_runner.py load_model")
    led.add("rest_memory", round(r["rest"], 4), "GiB", f"post − pre × (1 − {d.mem_fraction_static})", SRC_PROFILE)
    led.add("kv_cache_dtype", r["kv_dtype"], formula=f"{r['kv_bytes']} B per element")
    led.add("cell_size", round(r["cell"], 3), "bytes/token", pool.formula
            + (f" (+ {r['ratio']} × SWA)" if pool.kind == "hybrid_swa" else ""),
            "pool_configurator.py _compute_cell_size / HybridSWAPoolConfigurator")
    led.add("profiled_tokens", r["profiled"], "tokens", "int(rest_memory · 2^30) // cell_size", SRC_PROFILE)
    if r["max_total"] is not None:
        led.add("max_total_tokens", r["max_total"], "tokens", "given with --max-total-tokens",
                "kv_cache_configurator.py _apply_token_constraints")
    led.add("max_total_num_tokens", r["tokens"], "tokens", f"min(profiled, --max-total-tokens) // page_size {r['page']} × page_size",
            "pool_configurator.py calculate_pool_sizes")
    if pool.kind == "hybrid_swa":
        led.add("swa_max_total_num_tokens", r["swa_tokens"], "tokens", f"full tokens × swa_full_tokens_ratio {r['ratio']}",
                "pool_configurator.py HybridSWAPoolConfigurator._solve_pool_sizes")
    led.add("context_len", r["context_len"], "tokens", "given with --context-length" if r["context"] else
            "SGLang's derived context length", "configs/model_config.py _derive_context_length")

    warnings: list[str] = []
    engine_config = {"mem_fraction_static": d.mem_fraction_static, "max_total_num_tokens": r["tokens"],
                     "context_len": r["context_len"], "page_size": r["page"], "kv_cache_dtype": r["kv_dtype"],
                     "tp_size": r["tp"], "chunked_prefill_size": d.chunked_prefill_size,
                     "cuda_graph_max_bs": d.cuda_graph_max_bs}
    memory = {"weights": w.per_rank, "kv_cache": int(r["tokens"] * r["cell"]),
              "runtime_reserve": int(r["pre"] * (1 - d.mem_fraction_static) * GiB), "startup_overhead": r["overhead"]}
    if r["tokens"] <= 0:
        if r["avail"] <= 0:
            reason = (f"the weights ({w.per_rank / GiB:.2f} GiB per rank) do not fit the {r['pre']:.2f} GiB free before "
                      "loading: CUDA runs out of memory while loading them (use more --tp-size or a quantized checkpoint)")
        else:
            need = 1 - r["avail"] / r["pre"]
            reason = ("Not enough memory. Please try to increase --mem-fraction-static. The weights leave no KV pool at "
                      f"mem_fraction_static={d.mem_fraction_static}; it must exceed {need:.3f} (1 − post/pre)")
        binding = Binding(INSUFFICIENT, reason, SRC_PROFILE)
        engine_config["max_total_num_tokens"] = 0
    else:
        slots = max_running_requests(r)
        max_req_len = min(r["context_len"] - 1, r["tokens"] - 1)
        engine_config.update(max_running_requests=slots, max_req_len=max_req_len)
        led.add("max_running_requests", slots, "", "from max(int(tokens / context_len × 512), 2048) ≤ 4096 "
                "and tokens / 2", "managers/tp_worker.py (< 0.5.10) / kv_cache_configurator.py resolve_max_num_reqs")
        led.add("max_req_len", max_req_len, "tokens", "min(context_len − 1, max_total_num_tokens − 1)",
                "managers/tp_worker.py TpModelWorker")
        full_requests = r["tokens"] // r["context_len"]
        led.add("full_length_requests", full_requests, "", "max_total_num_tokens // context_len")
        if r["max_total"] is not None and r["max_total"] < r["profiled"]:
            binding = Binding(USER_OVERRIDE, f"--max-total-tokens {r['max_total']} caps the pool below the "
                              f"{r['profiled']:,} tokens memory allows", "kv_cache_configurator.py _apply_token_constraints")
        else:
            binding = Binding(MEMORY, f"mem_fraction_static {d.mem_fraction_static} leaves {r['rest']:.2f} GiB after "
                              f"the weights for {r['tokens']:,} tokens", SRC_PROFILE)
        if r["max_total"] is not None and r["max_total"] > r["profiled"]:
            warnings.append(f"max_total_tokens={r['max_total']} is larger than the profiled value {r['profiled']}. "
                            "Use the profiled value instead.")
        if r["tokens"] < r["context_len"]:
            warnings.append(f"KV pool holds {r['tokens']} tokens, fewer than --context-length {r['context_len']}. "
                            "One full-length request cannot fit, so long requests will be refused or truncated.")
    if pool.kind == "hybrid_swa" and pool.window and 0 < r["swa_tokens"] <= pool.window + r["page"]:
        binding = Binding(INSUFFICIENT, f"SWA pool ({r['swa_tokens']} tokens) cannot hold even one request: the prefill "
                          f"admission floor is sliding_window_size ({pool.window}) + page_size ({r['page']}). "
                          "Increase --swa-full-tokens-ratio or the total KV budget.", "pool_configurator.py validate_swa_pool_size")
    if any(t.part in ("vision", "audio", "projector") for t in model.tensors) and "mem_fraction_static" not in options:
        warnings.append("multimodal model: SGLang lowers mem_fraction_static for the image processor "
                        "(adjust_mem_fraction_for_vlm), which kvcap does not model")
    return Plan(engine=NAME, model=model, device=device, engine_config=engine_config, memory=memory,
                binding=binding, ledger=tuple(led.lines), kv_tokens=max(r["tokens"], 0),
                what_if=_what_ifs(model, device, options, r), warnings=tuple(warnings), options=dict(options))


def _what_ifs(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any], r: dict[str, Any]) -> tuple[WhatIf, ...]:
    base = r["tokens"]
    out: list[WhatIf] = []

    def attempt(change: str, knob: str, extra: dict[str, Any], dev: DeviceSpec = device) -> None:
        merged = {k: v for k, v in options.items() if not (k == "tensor_parallel_size" and "tp_size" in extra)}
        try:
            alt = _resolve(model, dev, {**merged, **extra})
        except (OptionsError, DeviceError):
            return
        if alt["tokens"] <= 0:
            return
        gain = alt["tokens"] / base if base > 0 else None
        out.append(WhatIf(change, knob, {"max_total_num_tokens": alt["tokens"],
                                          "mem_fraction_static": alt["d"].mem_fraction_static, **extra},
                          MEMORY if alt["tokens"] > 0 else INSUFFICIENT, alt["tokens"], gain))

    mfs = r["d"].mem_fraction_static
    if mfs < 0.95:
        higher = round(min(0.95, mfs + 0.05), 3)
        attempt(f"mem_fraction_static {higher} (less room for activations and cuda graphs)",
                f"--mem-fraction-static {higher}", {"mem_fraction_static": higher})
    if r["kv_bytes"] > 1:
        attempt("an fp8 KV cache", "--kv-cache-dtype fp8_e4m3", {"kv_cache_dtype": "fp8_e4m3"})
    if r["max_total"] is not None and r["max_total"] < r["profiled"]:
        rest = {k: v for k, v in options.items() if k != "max_total_tokens"}
        try:
            alt = _resolve(model, device, rest)
            out.append(WhatIf("no --max-total-tokens cap", "drop --max-total-tokens", {"max_total_num_tokens": alt["tokens"]},
                              MEMORY, alt["tokens"], alt["tokens"] / base if base else None))
        except (OptionsError, DeviceError):
            pass
    before = len(out)
    for times in (2, 4, 8):  # the smallest tensor-parallel size that helps (or that fits at all)
        tp = r["tp"] * times
        attempt(f"tensor parallel over {tp} GPUs", f"--tp-size {tp}", {"tp_size": tp},
                replace(device, count=max(device.count, tp)))
        if len(out) > before:
            break
    return tuple(out)
