"""vLLM's options as users type them, checked the way vLLM checks them, with its defaults.

Defaults follow the release named by `engine_version` (vllm_era.py) and the device
(engine/arg_utils.py: EngineArgs._set_default_args for the batch sizes).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..device.spec import DeviceSpec
from ..errors import ModelError, OptionsError
from ..model.spec import MLA as M_MLA, SLIDING as M_SLIDING, ModelSpec
from .base import check_options, truth, whole
from .vllm_era import Era, era as make_era
from .vllm_layers import DTYPE_BYTES, KV_CACHE_DTYPES, MLA_BACKEND_BLOCK

GiB = 1 << 30

OPTIONS: dict[str, str] = {
    "engine_version": "vLLM release whose rules apply (default 0.21.0; before 0.8 the V0 engine)",
    "gpu_memory_utilization": "fraction of total GPU memory vLLM budgets (default 0.90; 0.92 from 0.20)",
    "max_model_len": "max tokens of one request (default: the model's; -1 = auto-fit, 0.14+)",
    "block_size": "tokens per KV block (default 16 on CUDA; MLA backends force 64 or 128)",
    "kv_cache_dtype": "auto | float16 | bfloat16 | fp8 | fp8_e4m3 | fp8_e5m2 | fp8_ds_mla",
    "tensor_parallel_size": "GPUs splitting each layer (KV heads divided, replicated past the head count)",
    "pipeline_parallel_size": "GPUs splitting the layers (the smallest stage's blocks win)",
    "max_num_seqs": "max requests in a batch (default 256; 1024 on >= 70 GiB non-A100 GPUs)",
    "max_num_batched_tokens": "tokens in one step (default 2048 serve / 8192 LLM; 8192 / 16384 on big GPUs)",
    "enforce_eager": "no CUDA graphs, so none budgeted",
    "kv_cache_memory_bytes": "KV cache bytes per GPU, skipping the memory profile (--kv-cache-memory, 0.11+)",
    "num_gpu_blocks_override": "force the number of KV blocks (testing)",
    "disable_hybrid_kv_cache_manager": "store sliding-window and local layers as full attention",
    "dtype": "auto | float16 | bfloat16 | float32 (auto: the checkpoint's; float32 runs as bfloat16)",
    "quantization": "fp8 | mxfp4 | awq | gptq (default: the checkpoint's quantization_config)",
    "cpu_offload_gb": "GiB of weights kept in CPU memory",
    "swap_space": "V0: CPU swap GiB per GPU (the '# CPU blocks'; default 4)",
    "enable_chunked_prefill": "V0: chunked prefill (default on when max_model_len > 32768)",
    "attention_backend": "MLA models: FLASHMLA | FLASHINFER_MLA | CUTLASS_MLA | TRITON_MLA (default by GPU)",
    "usage_context": "serve (vllm serve, default) | llm (the LLM class): picks the batch defaults",
    "flashinfer_sampler": "VLLM_USE_FLASHINFER_SAMPLER (default: per release)",
    "estimate_cudagraphs": "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS (default on from 0.20)",
    "pp_layer_partition": "VLLM_PP_LAYER_PARTITION, e.g. '17,15'",
    "mamba_cache_mode": "hybrid models: none (default) | align | all — recurrent states kept for prefix caching",
}

_DTYPES = {"auto", "float16", "half", "bfloat16", "float32", "float"}


@dataclass(frozen=True)
class Resolved:
    """Every option with its final value."""

    era: Era
    utilization: float
    max_model_len: int          # the derived or user value (auto-fit may lower it later)
    auto_fit: bool
    derived_max_model_len: int
    block_size: int
    kv_cache_dtype: str
    tp: int
    pp: int
    max_num_seqs: int
    max_num_batched_tokens: int
    enforce_eager: bool
    kv_cache_memory_bytes: int | None
    num_gpu_blocks_override: int | None
    hybrid_allocator: bool
    dtype_bytes: int
    cpu_offload_bytes: int
    swap_space_bytes: int
    mla_backend: str
    sampler: str
    cudagraphs: bool
    pp_partition: tuple[int, ...] | None
    gpu_arch: str
    mamba_cache_mode: str


def _int(options: Mapping[str, Any], name: str, default: int | None, minimum: int = 1) -> int | None:
    value = options.get(name)
    if value is None:           # an option passed as None is unset (not a None count)
        value = default
    return None if value is None else whole(name, value, minimum)


def _bool(options: Mapping[str, Any], name: str, default: bool) -> bool:
    value = options.get(name, default)
    return default if value is None else truth(name, value)


def derived_max_model_len(model: ModelSpec) -> int:
    """config/model.py: _get_and_verify_max_len — the model's own limit, RoPE scaling applied."""
    cfg = model.config.get("text_config") if isinstance(model.config.get("text_config"), Mapping) else model.config
    length = model.context_window or 2048   # vLLM assumes 2048 when the config names none
    if type(cfg.get("model_max_length")) is int and cfg["model_max_length"] > 0:
        length = cfg["model_max_length"]
    scaling = cfg.get("rope_scaling")
    if isinstance(scaling, Mapping) and "gemma3" not in model.model_type:
        rope_type = scaling.get("rope_type", scaling.get("type"))
        if rope_type not in ("su", "longrope", "llama3"):
            # The config's own numbers: a list, string or NaN here is a corrupt config, not a length.
            factor = scaling.get("factor", 1.0)
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1e6:
                raise ModelError(f"{model.name}: rope_scaling.factor must be a positive number below 1e6, got {factor!r}")
            if rope_type == "yarn" and "original_max_position_embeddings" in scaling:
                original = scaling["original_max_position_embeddings"]
                if type(original) is not int or original < 1:
                    raise ModelError(f"{model.name}: rope_scaling.original_max_position_embeddings must be a "
                                     f"positive integer, got {original!r}")
                length = original
            length = int(length * factor)
    return length


def resolve(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any]) -> Resolved:
    check_options("vllm", options, OPTIONS)
    if device.backend not in ("cuda", "rocm"):
        raise OptionsError(
            f"kvcap's vLLM policy models CUDA and ROCm GPUs; vLLM on {device.backend} sizes its cache differently"
        )
    e = make_era(options.get("engine_version"))
    util = options.get("gpu_memory_utilization", e.default_utilization)
    if isinstance(util, bool) or not isinstance(util, (int, float)) or not math.isfinite(util) or util <= 0 or util > 1:
        # config/cache.py: Field(gt=0, le=1) from 0.14; CacheConfig._verify_args before.
        if e.at_least(0, 14):
            raise OptionsError(f"gpu_memory_utilization: Input should be greater than 0 and less than or equal to 1, got {util!r}")
        raise OptionsError(f"GPU memory utilization must be less than 1.0. Got {util!r}.")
    kv_dtype = str(options.get("kv_cache_dtype", "auto"))
    if kv_dtype not in KV_CACHE_DTYPES:
        raise OptionsError(f"kv_cache_dtype {kv_dtype!r} is not one of vLLM's cache dtypes kvcap models: "
                           f"{', '.join(KV_CACHE_DTYPES)}")
    tp = _int(options, "tensor_parallel_size", 1)
    pp = _int(options, "pipeline_parallel_size", 1)
    if model.num_attention_heads % tp:
        # config/model.py: ModelConfig.verify_with_parallel_config.
        raise OptionsError(f"Total number of attention heads ({model.num_attention_heads}) must be divisible "
                           f"by tensor parallel size ({tp}).")
    if pp > model.num_hidden_layers:
        raise OptionsError(f"pipeline_parallel_size {pp} exceeds the model's {model.num_hidden_layers} layers")
    derived = derived_max_model_len(model)
    mml = options.get("max_model_len")
    auto_fit = mml in (-1, "-1", "auto")
    if auto_fit and not e.auto_fit:
        raise OptionsError(f"max_model_len -1 (auto-fit) needs vLLM 0.14+; engine_version is {e.text}")
    max_len = derived if (mml is None or auto_fit) else _int(options, "max_model_len", None)
    if max_len > derived:
        raise OptionsError(
            f"User-specified max_model_len ({max_len}) is greater than the derived max_model_len ({derived} in "
            f"model's config.json). To allow overriding this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1"
        )
    block = _int(options, "block_size", 16)
    if e.block_sizes is not None and block not in e.block_sizes:
        raise OptionsError(f"block_size {block} is not one vLLM {e.text} accepts: {', '.join(map(str, e.block_sizes))}")
    seqs_default, mnbt_default = _batch_defaults(model, device, options, e, max_len)
    dtype = str(options.get("dtype", "auto"))
    if dtype not in _DTYPES:
        raise OptionsError(f"dtype {dtype!r} is not one of vLLM's: {', '.join(sorted(_DTYPES))}")
    run_dtype = model.dtype if dtype == "auto" else {"half": "float16", "float": "float32"}.get(dtype, dtype)
    if dtype == "auto" and run_dtype == "float32":
        run_dtype = "bfloat16"   # config/model.py: _resolve_auto_dtype downcasts float32 checkpoints
    kv_mem = _int(options, "kv_cache_memory_bytes", None)
    if kv_mem is not None and not e.kv_cache_memory_option:
        raise OptionsError(f"kv_cache_memory_bytes needs vLLM 0.11+; engine_version is {e.text}")
    backend = str(options.get("attention_backend", _default_mla_backend(device))).upper()
    if backend not in MLA_BACKEND_BLOCK:
        raise OptionsError(f"attention_backend {backend!r} is not an MLA backend kvcap models: {', '.join(MLA_BACKEND_BLOCK)}")
    sampler = _sampler(options, e)
    eager = _bool(options, "enforce_eager", False)
    cg_default = e.cudagraph_estimate_default
    # gpu_worker.py: determine_available_memory skips the graph estimate on ROCm.
    cudagraphs = (e.cudagraph_estimate_exists and _bool(options, "estimate_cudagraphs", cg_default) and not eager
                  and device.backend != "rocm")
    hybrid = e.hybrid_allocator and not _bool(options, "disable_hybrid_kv_cache_manager", False)
    partition = options.get("pp_layer_partition")
    parts = None
    if partition is not None:
        try:
            parts = tuple(int(x) for x in str(partition).split(","))
        except ValueError:
            raise OptionsError(f"Invalid partition string: {partition}") from None
    # config/cache.py: mamba_cache_mode ('none' unless prefix caching picks 'align'/'all'; the
    # 0.19 Qwen3.5 log of vllm#40691 counts one state a request, i.e. 'none').
    mamba_mode = str(options.get("mamba_cache_mode", "none"))
    if mamba_mode not in ("none", "align", "all"):
        raise OptionsError(f"mamba_cache_mode {mamba_mode!r} must be none, align or all")
    if mamba_mode != "none" and not e.at_least(0, 17):
        raise OptionsError(f"mamba_cache_mode needs vLLM 0.17+ (config/cache.py); engine_version is {e.text}")
    offload = options.get("cpu_offload_gb", 0)
    swap = options.get("swap_space", 4)
    for name, value in (("cpu_offload_gb", offload), ("swap_space", swap)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise OptionsError(f"{name} must be a non-negative number of GiB, got {value!r}")
    return Resolved(
        era=e, utilization=float(util), max_model_len=max_len, auto_fit=auto_fit, derived_max_model_len=derived,
        block_size=block, kv_cache_dtype=kv_dtype, tp=tp, pp=pp,
        max_num_seqs=_int(options, "max_num_seqs", seqs_default),
        max_num_batched_tokens=_int(options, "max_num_batched_tokens", mnbt_default),
        enforce_eager=eager, kv_cache_memory_bytes=kv_mem,
        num_gpu_blocks_override=_int(options, "num_gpu_blocks_override", None),
        hybrid_allocator=hybrid, dtype_bytes=DTYPE_BYTES[run_dtype],
        cpu_offload_bytes=int(offload * GiB), swap_space_bytes=int(swap * GiB),
        mla_backend=backend, sampler=sampler, cudagraphs=cudagraphs, pp_partition=parts, gpu_arch=gpu_arch(device),
        mamba_cache_mode=mamba_mode,
    )


def _batch_defaults(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any], e: Era,
                    max_len: int) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) when the user sets neither."""
    if not e.v1:
        # V0 (config.py: SchedulerConfig): 256 sequences; chunked prefill is switched on for
        # max_model_len > 32768 (EngineArgs._set_default_args_v0, not for sliding-window or
        # MLA models), which drops the profile batch to 2048 tokens.
        chunked_default = (max_len > 32768 and not any(l.kind in (M_SLIDING, M_MLA) for l in model.layers))
        chunked = _bool(options, "enable_chunked_prefill", chunked_default)
        return 256, 2048 if chunked else max(max_len, 2048)
    usage = str(options.get("usage_context", "serve")).lower()
    if usage not in ("serve", "llm"):
        raise OptionsError(f"usage_context {usage!r} must be serve or llm")
    # engine/arg_utils.py: _set_default_args — devices of >= 70 GiB (A100s excepted from 0.9)
    # get the larger defaults.
    big = device.memory_bytes >= 70 * GiB and not (e.big_gpu_defaults_skip_a100 and "a100" in
                                                     f"{device.name} {device.key}".lower())
    if big:
        return 1024, 16384 if usage == "llm" else 8192
    return 256, 8192 if usage == "llm" else 2048


def _sampler(options: Mapping[str, Any], e: Era) -> str:
    """The dummy sampler's top-k/top-p path (see Era.sampler); VLLM_USE_FLASHINFER_SAMPLER overrides."""
    if not e.v1 or options.get("flashinfer_sampler") is None:
        return e.sampler if e.v1 else "sort"
    if _bool(options, "flashinfer_sampler", False):
        return "flashinfer"
    return "triton" if e.at_least(0, 17) else "sort"


def gpu_arch(device: DeviceSpec) -> str:
    """'blackwell', 'hopper' or 'other', read from the device's name (kernel choices follow it)."""
    name = f"{device.name} {device.key}".lower()
    if re.search(r"\b(g?b(100|200|300))\b", name):
        return "blackwell"
    if re.search(r"\b(g?h(100|200|800|20))\b", name):
        return "hopper"
    return "other"


def _default_mla_backend(device: DeviceSpec) -> str:
    """platforms/cuda.py: get_attn_backend_cls — FlashMLA on Hopper, CUTLASS MLA on Blackwell,
    Triton MLA elsewhere."""
    return {"blackwell": "CUTLASS_MLA", "hopper": "FLASHMLA"}.get(gpu_arch(device), "TRITON_MLA")
