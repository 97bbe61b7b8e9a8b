"""An MLC estimate as a Plan: the ledger, the binding limit, the what-ifs and the warnings."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from ..device.spec import DeviceSpec
from ..model.spec import ModelSpec
from ..plan import (CONTEXT_WINDOW, DEVICE_CAP, INSUFFICIENT, MEMORY, MODE_DEFAULT, USER_OVERRIDE, Binding,
                    Ledger, Plan)
from . import mlc_estimate as E
from .base import rule
from .mlc_model import MLCModel
from .mlc_options import Options
from .mlc_temp import ERROR_BAR, ERROR_FRACTION
from .mlc_whatif import what_ifs

CFG = "cpp/serve/config.cc"
SRC_LIMITS = f"{CFG}:GetModelConfigLimits"
SRC_MODE = f"{CFG}:EstimateMemoryUsageOnMode"
SRC_INFER = f"{CFG}:InferForKVCache"
SRC_RNN = f"{CFG}:InferForRNNState"
SRC_DEVICE = f"{CFG}:TotalDetectGlobalMemory"


@dataclass(frozen=True)
class Context:
    model: ModelSpec
    device: DeviceSpec
    options: Options
    models: list[MLCModel]
    engine_device: E.Device
    init: E.Init
    estimate: E.Estimate
    raw_options: dict
    rerun: Callable[..., E.Estimate]

    @property
    def mode(self) -> str:
        return self.options.mode or "local"

    @property
    def infer_source(self) -> str:
        if self.options.era.python:
            return "python/mlc_llm/serve/engine_base.py" if self.options.era.modes else "python/mlc_llm/serve/engine.py"
        return SRC_RNN if self.estimate.rnn else SRC_INFER


def build(ctx: Context) -> Plan:
    r = ctx.estimate.modes[ctx.mode]
    ledger = Ledger()
    _device_lines(ledger, ctx)
    _model_lines(ledger, ctx)
    _term_lines(ledger, ctx, r)
    _mode_lines(ledger, ctx)
    binding = classify(ctx, ctx.estimate, r, ctx.engine_device, ctx.init)
    kv_tokens = r.max_total_sequence_length if r.fits else 0
    plan = Plan(
        engine="mlc", model=ctx.model, device=ctx.device, engine_config=engine_config(ctx.estimate, r, ctx.engine_device.utilization),
        memory=_memory(ctx, r), binding=Binding(*binding), ledger=tuple(ledger.lines), kv_tokens=kv_tokens,
        mode=ctx.options.mode, warnings=tuple(_warnings(ctx, r)), options=ctx.raw_options)
    return dataclasses.replace(plan, what_if=tuple(what_ifs(ctx, r, binding[0], kv_tokens)))


def engine_config(est: E.Estimate, r: E.ModeResult, utilization: float) -> dict[str, Any]:
    """EngineConfig in MLC's names; max_single_sequence_length None = no limit (INT64_MAX)."""
    single = r.max_single_sequence_length
    cfg: dict[str, Any] = {
        "max_num_sequence": r.max_num_sequence,
        "max_total_sequence_length": r.max_total_sequence_length if r.fits else 0,
        "prefill_chunk_size": r.prefill_chunk_size if r.fits else None,
        "max_single_sequence_length": None if single in (E.INF, E.PY_INF) or est.rnn else single,
        "gpu_memory_utilization": utilization,
    }
    if est.rnn:
        cfg["max_history_size"] = r.max_history_size
    return cfg


def classify(ctx: Context, est: E.Estimate, r: E.ModeResult, dev: E.Device, init: E.Init) -> tuple[str, str, str]:
    """(binding name, reason, source): which limit set max_total_sequence_length."""
    if not r.fits:
        return INSUFFICIENT, r.error.split("\n", 1)[0], ctx.infer_source
    total = r.max_total_sequence_length
    if "max_total_sequence_length" in r.user_set:
        return (USER_OVERRIDE, f"max_total_sequence_length {total} is specified by user (MLC neither clamps "
                "nor caps it)", SRC_MODE)
    if est.rnn:
        return (MODE_DEFAULT, f"MLC fixes the RNN state token capacity at {E.RNN_MAX_TOKENS}; memory sets "
                f"max_history_size {r.max_history_size}", SRC_RNN)
    if r.capacity_memory == total:
        return (MEMORY, f"{total:,} tokens × {r.kv_bytes_per_token:g} B fill the budget left after weights, "
                "temp buffer and workspaces", SRC_MODE)
    if dev.cap is not None and dev.cap == total:
        device_rule = rule("mlc", dev.backend, "kv_token_cap")
        if device_rule is not None and device_rule.value == dev.cap:
            return DEVICE_CAP, device_rule.reason, device_rule.source
        return DEVICE_CAP, f"a KV token cap of {dev.cap} you set (cap)", "kvcap option cap"
    single = r.max_single_sequence_length
    by_user = "max_single_sequence_length" in r.user_set
    if total == single or (r.mode == "server" and total == r.max_num_sequence * single):
        what = (f"context_window_size {single} you set" if by_user
                else f"the compiled context_window_size {single}")
        if r.mode == "server":
            what = f"max_num_sequence {r.max_num_sequence} × {what}"
        return (USER_OVERRIDE if by_user else CONTEXT_WINDOW, f"{total:,} tokens = {what}", SRC_MODE)
    if r.mode == "local" and total == E.LOCAL_MAX_TOKENS:
        return (MODE_DEFAULT, "local mode keeps the KV cache at most 8,192 tokens to use less memory "
                "(--mode interactive or server, or --overrides max_total_seq_length, lift it)", SRC_MODE)
    if total == est.limits.max_sliding_window:
        return CONTEXT_WINDOW, f"the sliding window {total} (interactive mode, #2364–#3248)", SRC_MODE
    return MEMORY, "memory", SRC_MODE


# ---- ledger ---------------------------------------------------------------------------------
def _device_lines(ledger: Ledger, ctx: Context) -> None:
    dev, d = ctx.engine_device, ctx.device
    ledger.add("device_memory", d.memory_bytes, "bytes", f"kTotalGlobalMemory as the {d.backend} backend reports it",
               d.memory_source or SRC_DEVICE)
    if dev.gpu_size_bytes != d.memory_bytes:
        floor = rule("mlc", d.backend, "memory_floor")
        ledger.add("gpu_size_bytes", dev.gpu_size_bytes, "bytes", "max(device_memory, 5 GiB): OpenCL floor",
                   floor.source if floor else SRC_DEVICE)
    how = "set by you" if ctx.options.utilization_set else f"default of era {ctx.options.era.name}"
    ledger.add("gpu_memory_utilization", dev.utilization, "fraction", how, "cpp/serve/config.h:EngineConfigNode")
    ledger.add("budget", dev.gpu_size_bytes * dev.utilization, "bytes",
               "gpu_size_bytes × gpu_memory_utilization (double)", SRC_MODE)


def _model_lines(ledger: Ledger, ctx: Context) -> None:
    est = ctx.estimate
    for i, m in enumerate(ctx.models):
        tag = "" if i == 0 else f"[{i}: {m.spec.name}]"
        ledger.add(f"compile.context_window_size{tag}", m.context_window_size, "tokens",
                   "model library metadata (-1: none)", _compile_source(ctx, m, "context_window_size"))
        ledger.add(f"compile.prefill_chunk_size{tag}", m.prefill_chunk_size, "tokens", "model library metadata",
                   _compile_source(ctx, m, "prefill_chunk_size"))
        ledger.add(f"compile.max_batch_size{tag}", m.max_batch_size, "sequences", "model library metadata",
                   _compile_source(ctx, m, "max_batch_size"))
        if not est.rnn:
            ledger.add(f"kv_cache_metadata{tag}",
                       f"layers {m.kv_layers}, qo heads {m.kv_qo_heads}, kv heads {m.kv_heads}, head_dim {m.head_dim}",
                       "", f"per shard of tensor_parallel_shards={m.tp}",
                       "compiler_pass/dispatch_kv_cache_creation.py:attach_kv_cache_metadata")
        ledger.add(f"params{tag}", m.params_bytes, "bytes", f"Σ stored tensors on one shard; {m.scheme.describe()}",
                   "python/mlc_llm/quantization/ (kvcap.quant)")
        ledger.add(f"temp_func_bytes{tag}", m.temp_func_bytes, "bytes",
                   f"largest function's planned storage: {m.temp_formula}",
                   "compiler_pass/estimate_memory_usage.py", estimate=m.temp_estimated,
                   note=ERROR_BAR if m.temp_estimated else "",
                   error_bar=int(m.temp_func_bytes * ERROR_FRACTION) if m.temp_estimated else None)
    pp = ctx.models[0].pp
    ledger.add("params_bytes", est.params_bytes, "bytes",
               "Σ params over models" + (f", / pipeline_parallel_stages {pp}" if pp > 1 and ctx.options.era.pp_division else ""),
               ctx.infer_source)
    if est.rnn:
        words = "Σ over every function's planned storage (not doubled)"
    elif ctx.options.era.temp_doubled:
        words = "2 × max over models of temp_func_bytes (×2 \"for safety\")"
    else:
        words = "max over models of temp_func_bytes (not doubled in the Python engine)"
    estimated = any(m.temp_estimated for m in ctx.models)
    # Built from temp_func_bytes (max or sum, maybe doubled): the same relative error bar carries.
    ledger.add("temp_buffer_bytes", est.temp_buffer_bytes, "bytes", words, ctx.infer_source, estimate=estimated,
               note=f"from the estimated temp_func_bytes: {ERROR_BAR}" if estimated else "",
               error_bar=int(est.temp_buffer_bytes * ERROR_FRACTION) if estimated else None)


def _term_lines(ledger: Ledger, ctx: Context, r: E.ModeResult) -> None:
    src = SRC_RNN if ctx.estimate.rnn else SRC_MODE
    ledger.add("max_num_sequence", r.max_num_sequence, "sequences", _why(r, "max_num_sequence", {
        "local": "local: min(4, max_batch_size)", "interactive": "interactive: 1",
        "server": "server: max_batch_size"}.get(ctx.mode, "")), src)
    if ctx.estimate.rnn:
        ledger.add("rnn_state_base", r.rnn_state_base, "bytes",
                   "Σ bs·hidden·layers·2·2 + bs·heads·head_size²·layers·2 (state for history 1)", src)
    else:
        ledger.add("kv_bytes_per_token", r.kv_bytes_per_token, "B/token",
                   "Σ head_dim × kv_heads × (layers / pp) × 4 + 1.25 (K and V at 2 bytes, + page-table share)", src)
        ledger.add("kv_aux_workspace", r.kv_aux_workspace, "bytes",
                   "Σ (bs+1)·88 + pcs·(qo+1)·8 + pcs·head_dim·(qo+kv)·4 + 48 MiB", src)
    ledger.add("model_workspace", r.model_workspace, "bytes", "Σ pcs·4 + bs·4 + (2·pcs + bs)·hidden·2", src)
    ledger.add("logit_processor_workspace", r.logit_processor_workspace, "bytes",
               "Σ bs·20 + bs·vocab_size·16.125 (double)", src)
    left = "budget − params − temp − " + ("model_ws − logit_ws" if ctx.estimate.rnn else "kv_aux − model_ws − logit_ws")
    per = "rnn_state_base" if ctx.estimate.rnn else "kv_bytes_per_token"
    cast = "int" if ctx.options.era.python else f"static_cast<int> ({ctx.engine_device.host_arch})"
    name = "max_history_memory" if ctx.estimate.rnn else "capacity_memory"
    ledger.add(name, r.capacity_memory, "histories" if ctx.estimate.rnn else "tokens",
               f"{cast}(({left}) / {per}); ≤ 0 is the insufficient-memory error", src)
    if not r.fits:
        ledger.add("error", r.error.split("\n", 1)[0], "", "what MLC prints", src)
        return
    dev = ctx.engine_device
    if dev.cap is not None and not ctx.estimate.rnn:
        ledger.add("capacity_after_device_cap", r.capacity_capped, "tokens", f"min(capacity_memory, cap {dev.cap})",
                   _cap_source(dev))
    single = r.max_single_sequence_length
    if not ctx.estimate.rnn:
        ledger.add("max_single_sequence_length", None if single in (E.INF, E.PY_INF) else single, "tokens",
                   _why(r, "max_single_sequence_length", "runtime context window (None: no limit)"), SRC_LIMITS)
    ledger.add("max_total_sequence_length", r.max_total_sequence_length, "tokens",
               _why(r, "max_total_sequence_length", _total_words(ctx.mode, ctx.options.era.modes)), src)
    ledger.add("prefill_chunk_size", r.prefill_chunk_size, "tokens", _why(r, "prefill_chunk_size", (
        "server: the runtime prefill chunk" if ctx.mode == "server" or not ctx.options.era.modes
        else "min(prefill, max_total_sequence_length, max_single_sequence_length)")), src)
    if ctx.estimate.rnn:
        ledger.add("max_history_size", r.max_history_size, "histories", _why(r, "max_history_size", "= max_history_memory"), src)
    logged = E.logged(ctx.estimate, r)
    ledger.add("estimated_total", logged["total"], "bytes", "params + temp + workspaces + KV (MLC's 'Estimated total')", ctx.infer_source)
    ledger.add("estimated_kv_cache", logged["kv_cache"], "bytes",
               "state × histories" if ctx.estimate.rnn else "max_total_sequence_length × kv_bytes_per_token + kv_aux", ctx.infer_source)
    ledger.add("estimated_temporary", logged["temporary"], "bytes", "model_ws + logit_ws + temp_buffer_bytes", ctx.infer_source)


def _mode_lines(ledger: Ledger, ctx: Context) -> None:
    if len(ctx.estimate.modes) < 2:
        return
    for mode, r in ctx.estimate.modes.items():
        src = SRC_RNN if ctx.estimate.rnn else SRC_MODE
        if not r.fits:
            ledger.add(f"{mode}.error", r.error.split("\n", 1)[0], "", f'Under mode "{mode}"', src)
            continue
        for key, unit in (("max_num_sequence", "sequences"), ("max_total_sequence_length", "tokens"),
                          ("prefill_chunk_size", "tokens")):
            ledger.add(f"{mode}.{key}", getattr(r, key), unit, f'Under mode "{mode}"', src)


def _why(r: E.ModeResult, key: str, default: str) -> str:
    return "specified by user" if key in r.user_set else default


def _total_words(mode: str, modes: bool) -> str:
    if not modes:
        return "capacity_after_device_cap (no modes in this era)"
    return {"local": "local: min(capacity, max_single_sequence_length, 8192)",
            "interactive": "interactive: min(capacity, max_single_sequence_length)",
            "server": "server: min(capacity, max_num_sequence × max_single_sequence_length)"}[mode]


def _cap_source(dev: E.Device) -> str:
    device_rule = rule("mlc", dev.backend, "kv_token_cap")
    return device_rule.source if device_rule and device_rule.value == dev.cap else "kvcap option cap"


def _compile_source(ctx: Context, m: MLCModel, key: str) -> str:
    if key in ctx.options.compile and m is ctx.models[0]:
        return f"option compile_{key}"
    if key in m.spec.mlc:
        return "MLC preset / mlc-chat-config.json"
    return "mlc_llm gen_config default (research/mlc.md §8.2)"


def _memory(ctx: Context, r: E.ModeResult) -> dict[str, int]:
    est = ctx.estimate
    logged = E.logged(est, r) if r.fits else None
    kv = (r.max_history_size * r.rnn_state_base if est.rnn else r.max_total_sequence_length * r.kv_bytes_per_token) if r.fits else 0
    up = lambda x: int(math.ceil(x))
    return {"params": est.params_bytes, "temp_buffer": est.temp_buffer_bytes, "kv_cache": up(kv),
            "kv_aux_workspace": up(r.kv_aux_workspace), "model_workspace": up(r.model_workspace),
            "logit_processor_workspace": up(r.logit_processor_workspace),
            "total": up(logged["total"]) if logged else up(est.params_bytes + est.temp_buffer_bytes + r.kv_aux_workspace
                                                          + r.model_workspace + r.logit_processor_workspace),
            "budget": int(r.budget)}


def _warnings(ctx: Context, r: E.ModeResult) -> list[str]:
    from .mlc_warnings import warnings
    return warnings(ctx, r)
