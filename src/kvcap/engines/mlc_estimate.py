"""MLC-LLM's engine-config inference, term by term, for every era kvcap supports.

Pure arithmetic over already-described models (mlc_model.MLCModel): no ledger, no wording.
Follows mlc-ai/mlc-llm @ 79d603f0 cpp/serve/config.cc — GetModelConfigLimits,
EstimateMemoryUsageOnMode, InferrableEngineConfig::InferForKVCache / InferForRNNState — and,
for the Python eras, python/mlc_llm/serve/engine_base.py (#2128) and engine.py (#1943).
MLC computes the budget in double precision; so does this module, in the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .mlc_era import Era
from .mlc_model import MLCModel

INF = (1 << 63) - 1           # std::numeric_limits<int64_t>::max(): "no limit"
PY_INF = int(1e9)             # engine_base.py:_get_model_config_limit's "no limit"
MODES = ("local", "interactive", "server")
LOCAL_MAX_BATCH = 4           # EstimateMemoryUsageOnMode: local uses min(4, max_batch_size)
LOCAL_MAX_TOKENS = 8192       # EstimateMemoryUsageOnMode: local caps the KV at 8192 tokens
RNN_MAX_TOKENS = 32768        # InferForRNNState: "max RNN state token capacity" is fixed
RNN_MAX_PREFILL = 4096        # InferForRNNState: prefill chunk ≤ 4096
INT_ATTN_WORKSPACE = 48 << 20  # 3 int workspaces × 8 MiB × (device + pinned host)
PY_NO_MODES_BATCH = 32        # serve/config.py:KVCacheConfig.max_num_sequence (March 2024)


@dataclass(frozen=True)
class Init:
    """What the user set in EngineConfig (None: let MLC infer it)."""

    max_num_sequence: int | None = None
    max_total_sequence_length: int | None = None
    prefill_chunk_size: int | None = None
    max_single_sequence_length: int | None = None
    max_history_size: int | None = None


@dataclass(frozen=True)
class Device:
    backend: str
    gpu_size_bytes: int           # TotalDetectGlobalMemory (after the OpenCL floor)
    utilization: float
    cap: int | None               # KV token cap applied after the memory budget (rule or --cap)
    host_arch: str                # how static_cast<int> treats an out-of-range double


@dataclass(frozen=True)
class Limits:
    """GetModelConfigLimits: the tightest compile-time and runtime limits over all models."""

    compile_max_single: int
    runtime_max_single: int
    compile_max_prefill: int
    runtime_max_prefill: int
    max_sliding_window: int
    max_batch_size: int


@dataclass(slots=True)
class ModeResult:
    mode: str
    max_num_sequence: int = 0
    max_single_sequence_length: int = 0
    max_total_sequence_length: int = 0
    prefill_chunk_size: int = 0
    max_history_size: int = 0
    kv_bytes_per_token: float = 0.0
    kv_aux_workspace: float = 0.0
    model_workspace: float = 0.0
    logit_processor_workspace: float = 0.0
    rnn_state_base: float = 0.0
    budget: float = 0.0
    quotient: float = 0.0            # (budget − everything else) / bytes per token, before the cast
    capacity_memory: int = 0         # after the int cast (MLC's model_max_total_sequence_length)
    capacity_capped: int = 0         # after the device cap
    error: str | None = None
    user_set: frozenset = field(default_factory=frozenset)

    @property
    def fits(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Estimate:
    params_bytes: int
    temp_buffer_bytes: int           # as used in the budget (doubled in the C++ engine)
    limits: Limits
    modes: dict                      # mode -> ModeResult
    rnn: bool


def int32_cast(x: float, host_arch: str) -> int:
    """C++ `static_cast<int>(double)`: out of range it is undefined; x86-64 (cvttsd2si) yields
    INT_MIN, arm64 (fcvtzs) saturates. NaN: INT_MIN on x86-64, 0 on arm64."""
    lo, hi = -(1 << 31), (1 << 31) - 1
    if math.isnan(x):
        return lo if host_arch == "x86_64" else 0
    if math.isinf(x) or not lo <= math.trunc(x) <= hi:
        if host_arch == "x86_64":
            return lo
        return hi if x > 0 else lo
    return math.trunc(x)


def _wrap64(x: int) -> int:
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


def mib(x: float) -> float:
    """BytesToMegabytesString: MLC divides by 1024 twice and calls the result MB."""
    return x / 1024 / 1024


def limits(models: list[MLCModel], era: Era) -> Limits:
    inf = PY_INF if era.python else INF
    c_single = r_single = c_pre = r_pre = sw = mbs = INF
    for m in models:
        ctx = m.context_window_size
        runtime = ctx  # mlc-chat-config's top-level value: gen_config writes the compile-time one
        if ctx != -1:
            c_single = min(c_single, ctx)
        if runtime != -1:
            r_single = min(r_single, runtime)
        c_pre = min(c_pre, m.prefill_chunk_size)
        r_pre = min(r_pre, m.prefill_chunk_size)
        mbs = min(mbs, m.max_batch_size)
        if m.sliding_window_size != -1:
            sw = min(sw, m.sliding_window_size)
    return Limits(c_single if c_single != INF else inf, r_single if r_single != INF else inf,
                  c_pre, r_pre, sw, mbs)


def estimate(models: list[MLCModel], device: Device, init: Init, era: Era,
             only: tuple[str, ...] | None = None) -> Estimate:
    """Every mode MLC evaluates (or just `only`, for a what-if that needs one)."""
    lim = limits(models, era)
    rnn = models[0].rnn
    if rnn:
        return _estimate_rnn(models, device, init, era, lim)
    params = 0
    temp = 0
    for m in models:  # InferForKVCache: note the division applies to the running sum
        params += m.params_bytes
        if era.pp_division:
            params //= m.pp
        temp = max(temp, m.temp_func_bytes)
    if era.temp_doubled:
        temp *= 2
    modes = (only or MODES) if era.modes else ("local",)
    out = {mode: _mode(mode, models, device, init, era, lim, params, temp) for mode in modes}
    if era.python:
        # engine_base.py evaluates local, interactive, server in turn and raises on the first
        # that does not fit: one failing mode stops the engine whatever mode was asked for.
        first = next((r.error for r in out.values() if r.error), None)
        if first:
            for r in out.values():
                r.error = r.error or first
    return Estimate(params, temp, lim, out, False)


def _mode(mode: str, models: list[MLCModel], device: Device, init: Init, era: Era, lim: Limits,
          params: int, temp: int) -> ModeResult:
    r = ModeResult(mode)
    user = set()
    # 1. max_num_sequence
    if init.max_num_sequence is not None:
        r.max_num_sequence = init.max_num_sequence
        user.add("max_num_sequence")
    elif not era.modes:
        r.max_num_sequence = PY_NO_MODES_BATCH
    else:
        r.max_num_sequence = {"local": min(LOCAL_MAX_BATCH, lim.max_batch_size), "interactive": 1,
                              "server": lim.max_batch_size}[mode]
    bs = r.max_num_sequence
    # 2. max_single_sequence_length
    if init.max_single_sequence_length is not None:
        r.max_single_sequence_length = min(init.max_single_sequence_length, lim.compile_max_single)
        user.add("max_single_sequence_length")
    else:
        r.max_single_sequence_length = lim.runtime_max_single
    # 3. memory capacity
    kv_bpt = aux = mws = lws = 0.0
    for m in models:
        pcs = m.prefill_chunk_size
        layers = m.kv_layers // m.pp if era.pp_division else m.kv_layers
        kv_bpt += m.head_dim * m.kv_heads * layers * 4 + 1.25
        aux += ((bs + 1) * 88 + pcs * (m.kv_qo_heads + 1) * 8
                + pcs * m.head_dim * (m.kv_qo_heads + m.kv_heads) * 4 + INT_ATTN_WORKSPACE)
        mws += pcs * 4 + bs * 4 + (pcs * 2 + bs) * m.hidden_size * 2
        lws += bs * 20 + bs * m.vocab_size * 16.125
    r.kv_bytes_per_token, r.kv_aux_workspace, r.model_workspace, r.logit_processor_workspace = kv_bpt, aux, mws, lws
    r.budget = device.gpu_size_bytes * device.utilization
    r.quotient = (r.budget - params - temp - aux - mws - lws) / kv_bpt
    cap = math.trunc(r.quotient) if era.python else int32_cast(r.quotient, device.host_arch)
    r.capacity_memory = cap
    if cap <= 0:
        r.error = _kv_error(era, device, params, temp, aux, mws, lws)
        r.user_set = frozenset(user)
        return r
    if device.cap is not None:
        cap = min(cap, device.cap)
    r.capacity_capped = cap
    single = r.max_single_sequence_length
    # 4. max_total_sequence_length
    if init.max_total_sequence_length is not None:
        r.max_total_sequence_length = init.max_total_sequence_length
        user.add("max_total_sequence_length")
    elif mode == "local" and era.modes:
        r.max_total_sequence_length = min(cap, single, LOCAL_MAX_TOKENS)
    elif mode == "local":
        r.max_total_sequence_length = cap  # engine.py (March 2024): no modes, no context clamp
    elif mode == "interactive":
        r.max_total_sequence_length = min(cap, single)
        if era.interactive_sliding_cap and lim.max_sliding_window != INF:
            r.max_total_sequence_length = min(r.max_total_sequence_length, lim.max_sliding_window)
    elif not era.python and single == INF:
        r.max_total_sequence_length = cap
    else:
        product = bs * single
        if era.server_product_wraps:
            product = _wrap64(product)
        r.max_total_sequence_length = min(cap, product)
    # 5. prefill_chunk_size
    if init.prefill_chunk_size is not None:
        r.prefill_chunk_size = init.prefill_chunk_size
        user.add("prefill_chunk_size")
    elif mode == "server" or not era.modes:
        r.prefill_chunk_size = lim.runtime_max_prefill
    elif era.python:
        # engine_base.py (#2128) clamps by the memory capacity, not by the chosen KV size.
        r.prefill_chunk_size = min(lim.runtime_max_prefill, cap, single)
    else:
        r.prefill_chunk_size = min(lim.runtime_max_prefill, r.max_total_sequence_length, single)
    r.user_set = frozenset(user)
    return r


def _kv_error(era: Era, device: Device, params: int, temp: int, aux: float, mws: float, lws: float) -> str:
    budget = device.gpu_size_bytes * device.utilization
    if era.python and era.modes:
        # engine_base.py:_estimate_mem_usage_and_max_total_sequence_length (params_bytes is a float there)
        return (f"The model weight size {float(params)} may be larger than available GPU memory "
                f"size {budget} bytes.")
    if era.python:
        return (f"Cannot estimate KV cache capacity. The model weight size {float(params)} may be larger "
                f"than GPU memory size {device.gpu_size_bytes}")
    return ("Insufficient GPU memory error: The available single GPU memory is "
            f"{mib(budget):.3f} MB, which is less than the sum of model weight size ({mib(params):.3f} MB) "
            f"and temporary buffer size ({mib(temp + aux + mws + lws):.3f} MB).\n"
            "1. You can set a larger \"gpu_memory_utilization\" value.\n"
            "2. If the model weight size is too large, please enable tensor parallelism by passing "
            "`--tensor-parallel-shards $NGPU` to `mlc_llm gen_config` or use quantization.\n"
            "3. If the temporary buffer size is too large, please use a smaller `--prefill-chunk-size` "
            "in `mlc_llm gen_config`.")


def _estimate_rnn(models: list[MLCModel], device: Device, init: Init, era: Era, lim: Limits) -> Estimate:
    params = sum(m.params_bytes for m in models)   # InferForRNNState: no pipeline division
    temp = sum(m.temp_func_bytes for m in models)  # Σ over functions, not doubled
    out = {}
    for mode in MODES:
        r = ModeResult(mode)
        user = set()
        if init.prefill_chunk_size is not None:
            r.prefill_chunk_size = init.prefill_chunk_size
            user.add("prefill_chunk_size")
        else:
            r.prefill_chunk_size = min(lim.runtime_max_prefill, RNN_MAX_PREFILL)
        if init.max_num_sequence is not None:
            r.max_num_sequence = init.max_num_sequence
            user.add("max_num_sequence")
        else:
            r.max_num_sequence = 1 if mode == "interactive" else min(LOCAL_MAX_BATCH, lim.max_batch_size)
        if init.max_total_sequence_length is not None:
            r.max_total_sequence_length = init.max_total_sequence_length
            user.add("max_total_sequence_length")
        else:
            r.max_total_sequence_length = RNN_MAX_TOKENS
        bs = r.max_num_sequence
        base = mws = lws = 0.0
        for m in models:
            hidden, layers = m.spec.hidden_size, m.spec.num_hidden_layers
            pcs = m.prefill_chunk_size
            base += (bs * hidden * layers * 2 * 2 + bs * m.rnn_num_heads * m.rnn_head_size * m.rnn_head_size * layers * 2)
            mws += pcs * 4 + bs * 4 + (pcs * 2 + bs) * hidden * 2
            lws += bs * 20 + bs * m.vocab_size * 16.125
        r.rnn_state_base, r.model_workspace, r.logit_processor_workspace = base, mws, lws
        r.budget = device.gpu_size_bytes * device.utilization
        r.quotient = (r.budget - params - temp - mws - lws) / base
        hist = int32_cast(r.quotient, device.host_arch)
        r.capacity_memory = r.capacity_capped = hist
        if hist <= 0:
            r.error = ("Insufficient GPU memory error: The available single GPU memory is "
                       f"{mib(r.budget):.3f} MB, which is less than the sum of model weight size "
                       f"({mib(params):.3f} MB) and temporary buffer size ({mib(temp + mws + lws):.3f} MB). "
                       "If the model weight size is too large, please use quantization. If the temporary "
                       "buffer size is too large, please use a smaller `--prefill-chunk-size` in "
                       "`mlc_llm gen_config`.")
        elif init.max_history_size is not None:
            r.max_history_size = min(init.max_history_size, hist)
            user.add("max_history_size")
        else:
            r.max_history_size = hist
        r.user_set = frozenset(user)
        out[mode] = r
    return Estimate(params, temp, lim, out, True)


def logged(est: Estimate, r: ModeResult) -> dict[str, float]:
    """The 'Estimated total single GPU memory usage' line: Total, Parameters, KVCache, Temporary."""
    if est.rnn:
        state = r.max_history_size * r.rnn_state_base
        return {"total": est.params_bytes + est.temp_buffer_bytes + state, "params": est.params_bytes,
                "kv_cache": state, "temporary": r.model_workspace + r.logit_processor_workspace + est.temp_buffer_bytes}
    except_kv = est.params_bytes + est.temp_buffer_bytes + r.kv_aux_workspace + r.model_workspace + r.logit_processor_workspace
    kv = r.max_total_sequence_length * r.kv_bytes_per_token
    return {"total": except_kv + kv, "params": est.params_bytes, "kv_cache": kv + r.kv_aux_workspace,
            "temporary": r.model_workspace + r.logit_processor_workspace + est.temp_buffer_bytes}
