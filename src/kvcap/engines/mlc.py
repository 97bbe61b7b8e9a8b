"""The MLC-LLM engine policy: (ModelSpec, DeviceSpec, options) -> Plan, exactly as MLC infers it.

MLC-LLM's serving engine decides its KV capacity once, at start-up, in
cpp/serve/config.cc:InferrableEngineConfig::InferForKVCache: it sums the weights and the
compiled temporary buffer, budgets gpu_memory_utilization of the device's total memory, divides
what is left by the bytes one token of KV takes, evaluates the three modes (local, interactive,
server), and — on Metal — caps the result at 32,768 tokens. The pieces:
  mlc_options   the options, in MLC's names
  mlc_era       which estimator (current C++, or the Python engine of early 2024)
  mlc_model     a ModelSpec as MLC's compiled metadata describes it
  mlc_temp      the compiled temporary buffer, estimated
  mlc_estimate  the arithmetic of every mode
  mlc_report    the ledger, binding limit, what-ifs and warnings
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any, Mapping

from ..device.spec import DeviceSpec
from ..errors import OptionsError
from ..model.spec import ModelSpec
from ..plan import Binding, Capacity, Plan
from . import mlc_estimate as E
from . import mlc_model, mlc_report
from .base import rule
from .mlc_options import OPTIONS, Options, parse

NAME = "mlc"
__all__ = ["NAME", "OPTIONS", "plan", "capacity"]


def plan(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any]) -> Plan:
    o = parse(options)
    models = describe_models(model, o)
    dev = engine_device(device, o)
    init = E.Init(**o.init)
    _check_engine_config(models, init, o)
    est = E.estimate(models, dev, init, o.era)
    ctx = mlc_report.Context(model=model, device=device, options=o, models=models, engine_device=dev,
                             init=init, estimate=est, raw_options=dict(options),
                             rerun=lambda d=dev, i=init, modes=None: E.estimate(models, d, i, o.era, modes))
    return mlc_report.build(ctx)


def capacity(model: ModelSpec, device: DeviceSpec, options: Mapping[str, Any]) -> Capacity:
    """The numbers of `plan` without the ledger, what-ifs and warnings: for solvers and charts
    that plan thousands of configurations (the same arithmetic, the same binding rule)."""
    o = parse(options)
    models = describe_models(model, o)
    dev = engine_device(device, o)
    init = E.Init(**o.init)
    _check_engine_config(models, init, o)
    mode = o.mode or "local"
    est = E.estimate(models, dev, init, o.era, (mode,) if o.era.modes else None)
    r = est.modes[mode if o.era.modes else "local"]
    ctx = mlc_report.Context(model=model, device=device, options=o, models=models, engine_device=dev,
                             init=init, estimate=est, raw_options=dict(options), rerun=E.estimate)
    name, reason, source = mlc_report.classify(ctx, est, r, dev, init)
    return Capacity(NAME, r.max_total_sequence_length if r.fits else 0, Binding(name, reason, source),
                    mlc_report.engine_config(est, r, dev.utilization))


def describe_models(model: ModelSpec, o: Options) -> list[mlc_model.MLCModel]:
    main = _describe(_Same(model), o.quantization, tuple(sorted(o.compile.items())), o.era, o.tp, o.pp,
                     o.temp_buffer_bytes)
    out = [main]
    for extra in o.extra:
        compile_opts = {k: v for k, v in o.compile.items() if k != "sliding_window_size"}
        compile_opts.update(extra.compile)
        # The libraries of a main model and its draft are compiled alike (same shards and stages);
        # a given temp_buffer_bytes is the engine-wide maximum, so the draft's own is not needed.
        out.append(_describe(_Same(extra.spec), extra.quantization, tuple(sorted(compile_opts.items())), o.era,
                             o.tp, o.pp, o.temp_buffer_bytes))
    if len({m.rnn for m in out}) > 1:
        # cpp/serve/config.cc:ModelsUseKVCache
        raise OptionsError("Invalid models in EngineConfig. Models must be all RNN model or none model is RNN model.")
    return out


class _Same:
    """A ModelSpec compared by identity: hashing a spec walks every tensor, identity is free."""

    __slots__ = ("spec",)

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def __hash__(self) -> int:
        return id(self.spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.spec is self.spec


@lru_cache(maxsize=64)
def _describe(model: _Same, quantization, compile_items, era, tp, pp, temp) -> mlc_model.MLCModel:
    # Pricing ~300 tensors dominates a plan; a model planned again (what-ifs, benchmarks, a web
    # page) reuses its description. The cache holds the spec, so its id cannot be reused.
    return mlc_model.describe(model.spec, quantization, dict(compile_items), era, tp, pp, temp)


def engine_device(device: DeviceSpec, o: Options) -> E.Device:
    size = device.memory_bytes
    floor = rule(NAME, device.backend, "memory_floor")
    if floor is not None and o.era.opencl_floor:
        size = max(size, floor.value)          # TotalDetectGlobalMemory
    cap = None
    device_rule = rule(NAME, device.backend, "kv_token_cap")
    if device_rule is not None and o.era.metal_cap:
        cap = device_rule.value
    if o.cap is not None:
        cap = o.cap
    if o.no_cap:
        cap = None
    host = o.host_arch or ("arm64" if device.backend in ("metal", "opencl") else "x86_64")
    return E.Device(device.backend, size, o.utilization, cap, host)


def _check_engine_config(models: list[mlc_model.MLCModel], init: E.Init, o: Options) -> None:
    if models[0].rnn:
        if o.era.python:
            raise OptionsError("RNN (RWKV) models are supported from the C++ estimator on; use engine_era cpp-2024-05 or later")
        if init.max_single_sequence_length is not None:
            raise OptionsError("RNN state does not support max_single_sequence_length, while it is set to "
                               f"{init.max_single_sequence_length} in the input EngineConfig")
    elif init.max_history_size:
        raise OptionsError("KV cache does not support max_history_size, while it is set to "
                           f"{init.max_history_size} in the input EngineConfig")


def with_device(ctx_device: E.Device, **changes: Any) -> E.Device:
    return dataclasses.replace(ctx_device, **changes)
