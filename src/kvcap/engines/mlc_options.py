"""MLC-LLM options, in MLC's own names, checked and normalised (one-line OptionsError each)."""

from __future__ import annotations

from functools import lru_cache

from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import OptionsError
from ..model.spec import ModelSpec
from ..units import parse_fraction, parse_size
from .base import check_options, whole
from .mlc_era import Era, parse_era

OPTIONS: dict[str, str] = {
    "mode": "local | interactive | server (mlc_llm serve --mode; default local, `mlc_llm chat` uses interactive)",
    "quantization": "weight quantization, e.g. q4f16_1 (default q4f16_1, MLC's prebuilt models)",
    "gpu_memory_utilization": "fraction of the device memory MLC budgets (default 0.85; 0.90 in the Python eras)",
    "max_num_sequence": "EngineConfig max_num_sequence (max batch size)",
    "max_total_sequence_length": "EngineConfig max_total_sequence_length (KV capacity in tokens; --overrides max_total_seq_length)",
    "prefill_chunk_size": "EngineConfig prefill_chunk_size",
    "context_window_size": "--overrides context_window_size, i.e. EngineConfig max_single_sequence_length",
    "max_single_sequence_length": "EngineConfig max_single_sequence_length (same as context_window_size)",
    "max_history_size": "EngineConfig max_history_size (RNN models only)",
    "sliding_window_size": "compile time: sliding window of a Mistral-style model",
    "attention_sink_size": "compile time: attention sinks of a sliding-window model",
    "tensor_parallel_shards": "compile time: tensor-parallel shards (GPUs)",
    "pipeline_parallel_stages": "compile time: pipeline stages",
    "temp_buffer_bytes": "the compiled temporary buffer (max per function, before MLC's x2); default: estimated",
    "cap": "replace the device KV token cap (Metal: 32768) with N tokens",
    "no_cap": "drop the device KV token cap (a what-if; MLC itself keeps it)",
    "compile_prefill_chunk_size": "the model library's compile-time prefill_chunk_size",
    "compile_max_batch_size": "the model library's compile-time max_batch_size",
    "compile_context_window_size": "the model library's compile-time context_window_size (-1: none)",
    "engine_era": "current (default), cpp-YYYY[-MM] or python-YYYY-MM: replay an older MLC estimator",
    "additional_models": "other models in the engine (speculative drafts): [(ModelSpec or config dict, quantization), …]",
    "host_arch": "x86_64 or arm64: how the int32 cast of the capacity overflows (default arm64 on metal/opencl)",
}
MODES = ("local", "interactive", "server")
HOST_ARCHS = ("x86_64", "arm64")


@dataclass(frozen=True)
class ExtraModel:
    spec: ModelSpec
    quantization: str | None
    compile: Mapping[str, Any]


@dataclass(frozen=True)
class Options:
    mode: str | None                      # None: the era has no modes (March 2024)
    quantization: str | None
    quantization_defaulted: bool
    utilization: float
    utilization_set: bool
    init: dict                            # EngineConfig fields the user set
    compile: dict                         # compile-time values (context_window_size, …)
    tp: int
    pp: int
    temp_buffer_bytes: int | None
    cap: int | None
    no_cap: bool
    era: Era
    extra: tuple[ExtraModel, ...]
    host_arch: str | None


def _count(opts: Mapping[str, Any], name: str, minimum: int = 1) -> int | None:
    v = opts.get(name)
    return None if v is None else whole(name, v, minimum)


def parse(options: Mapping[str, Any]) -> Options:
    """Options checked and resolved; the same options again (a solver, a chart) reuse the result."""
    try:
        key = tuple(sorted(options.items()))
        hash(key)
    except TypeError:   # an unhashable value (additional_models as a list): no reuse
        return _parse(options)
    return _parse_cached(key)


@lru_cache(maxsize=256)
def _parse_cached(key: tuple) -> Options:
    return _parse(dict(key))


def _parse(options: Mapping[str, Any]) -> Options:
    check_options("mlc", options, OPTIONS)
    era = parse_era(options.get("engine_era"))
    mode = options.get("mode")
    if mode is not None and mode not in MODES:
        raise OptionsError(f"mode {mode!r} is not an MLC mode; use local, interactive or server")
    if not era.modes:
        if mode is not None:
            raise OptionsError(f"engine_era {era.name} has no modes (they came with #2126, April 2024); drop mode")
    else:
        mode = mode or "local"

    util_set = options.get("gpu_memory_utilization") is not None
    util = parse_fraction(options["gpu_memory_utilization"], "gpu_memory_utilization") if util_set \
        else era.default_utilization
    if util_set and not era.modes:
        raise OptionsError(f"engine_era {era.name} hard-codes gpu_memory_utilization {era.default_utilization}")

    ctx = _count(options, "context_window_size")
    single = _count(options, "max_single_sequence_length")
    if ctx is not None and single is not None and ctx != single:
        raise OptionsError("context_window_size and max_single_sequence_length are the same setting; give one")
    init = {
        "max_num_sequence": _count(options, "max_num_sequence"),
        "max_total_sequence_length": _count(options, "max_total_sequence_length"),
        "prefill_chunk_size": _count(options, "prefill_chunk_size"),
        "max_single_sequence_length": ctx if ctx is not None else single,
        "max_history_size": _count(options, "max_history_size"),
    }
    compile_ctx = options.get("compile_context_window_size")
    if compile_ctx is not None and compile_ctx != -1:
        compile_ctx = _count(options, "compile_context_window_size")
    compile_opts = {k: v for k, v in {
        "context_window_size": compile_ctx,
        "prefill_chunk_size": _count(options, "compile_prefill_chunk_size"),
        "max_batch_size": _count(options, "compile_max_batch_size"),
        "sliding_window_size": _count(options, "sliding_window_size"),
        "attention_sink_size": _count(options, "attention_sink_size", minimum=0),
    }.items() if v is not None}

    cap, no_cap = _count(options, "cap"), options.get("no_cap")
    if no_cap not in (None, True, False):
        raise OptionsError(f"no_cap must be true or false, got {no_cap!r}")
    if cap is not None and no_cap:
        raise OptionsError("give either cap N or no_cap, not both")
    temp = options.get("temp_buffer_bytes")
    if temp is not None:
        temp = parse_size(temp, "temp_buffer_bytes")
    host = options.get("host_arch")
    if host is not None and host not in HOST_ARCHS:
        raise OptionsError(f"host_arch {host!r} is not one of {', '.join(HOST_ARCHS)}")
    quant = options.get("quantization")
    return Options(
        mode=mode, quantization=quant if quant is not None else "q4f16_1", quantization_defaulted=quant is None,
        utilization=util, utilization_set=util_set, init=init, compile=compile_opts,
        tp=_count(options, "tensor_parallel_shards") or 1, pp=_count(options, "pipeline_parallel_stages") or 1,
        temp_buffer_bytes=temp, cap=cap, no_cap=bool(no_cap), era=era,
        extra=_extra_models(options.get("additional_models")), host_arch=host)


def _extra_models(items: Any) -> tuple[ExtraModel, ...]:
    if items is None:
        return ()
    if not isinstance(items, (list, tuple)):
        raise OptionsError("additional_models must be a list of (model, quantization) pairs")
    out = []
    for item in items:
        if isinstance(item, Mapping) and "model" in item:
            model, q, comp = item["model"], item.get("quantization"), item.get("compile") or {}
        elif isinstance(item, (list, tuple)) and 1 <= len(item) <= 3:
            model, q, comp = item[0], item[1] if len(item) > 1 else None, item[2] if len(item) > 2 else {}
        else:
            raise OptionsError(f"additional_models entry {item!r} is not (model, quantization)")
        if isinstance(model, Mapping):
            from ..model import load_model
            model = load_model(dict(model))
        if not isinstance(model, ModelSpec):
            raise OptionsError("an additional model must be a ModelSpec or a config dict")
        if not isinstance(comp, Mapping):
            raise OptionsError("an additional model's compile values must be a mapping")
        out.append(ExtraModel(model, q, dict(comp)))
    return tuple(out)
