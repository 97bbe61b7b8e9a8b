"""What would buy more KV cache under MLC-LLM: the same estimate with one thing changed.

Each what-if reruns the estimator (mlc_estimate) with one input changed and names the knob a
user turns to get it: an `--overrides` field of `mlc_llm serve`, `--mode`, a macOS sysctl, or
other hardware.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plan import WhatIf
from ..units import GiB, MiB
from . import mlc_estimate as E

if TYPE_CHECKING:  # pragma: no cover
    from .mlc_report import Context

MORE_UTILIZATION = 0.95
MAC_RESERVE = 8 * GiB  # what a wired-limit raise leaves macOS, a common community setting


def what_ifs(ctx: "Context", r: E.ModeResult, binding: str, kv_tokens: int) -> list[WhatIf]:
    from .mlc_report import classify, engine_config
    out: list[WhatIf] = []
    mode = ctx.mode

    def add(change: str, knob: str, est: E.Estimate, dev: E.Device, init: E.Init, m: str = mode) -> None:
        res = est.modes[m]
        name = classify(ctx, est, res, dev, init)[0]
        tokens = res.max_total_sequence_length if res.fits else 0
        gain = tokens / kv_tokens if kv_tokens and res.fits else None
        out.append(WhatIf(change, knob, engine_config(est, res, dev.utilization), name, tokens, gain))

    dev, init, est = ctx.engine_device, ctx.init, ctx.estimate
    # 1. Without the limit that binds.
    if binding == "device_cap":
        d2 = _device(dev, cap=None)
        e2 = ctx.rerun(d2, init, (mode,))
        n = e2.modes[mode].max_total_sequence_length if e2.modes[mode].fits else 0
        add(f"without the {dev.backend} cap of {dev.cap:,} tokens", f'--overrides "max_total_seq_length={n}" '
            "(MLC does not cap a capacity you set)", e2, d2, init)
    elif binding == "mode_default" and not est.rnn:
        n = min(r.capacity_capped, r.max_single_sequence_length)
        i2 = _init(init, max_total_sequence_length=n)
        add("without local mode's 8,192-token default", f'--overrides "max_total_seq_length={n}"',
            ctx.rerun(dev, i2, (mode,)), dev, i2)
    elif binding == "user_override":
        i2 = _init(init, max_total_sequence_length=None, max_single_sequence_length=None)
        add("without your max_total_seq_length / context_window_size",
            "drop them from --overrides", ctx.rerun(dev, i2, (mode,)), dev, i2)
    # 2. The other two modes (MLC evaluates all three anyway).
    if len(est.modes) > 1:
        for m in E.MODES:
            if m != mode:
                add(f"in {m} mode", f"--mode {m}", est, dev, init, m)
    # 3. More memory.
    if binding in ("memory", "insufficient_memory", "device_cap") and dev.utilization < MORE_UTILIZATION \
            and not ctx.options.era.python:
        d2 = _device(dev, utilization=MORE_UTILIZATION)
        add(f"with gpu_memory_utilization {MORE_UTILIZATION}", f'--overrides "gpu_memory_utilization={MORE_UTILIZATION}"',
            ctx.rerun(d2, init, (mode,)), d2, init)
    size, knob = _more_memory(ctx)
    d2 = _device(dev, gpu_size_bytes=size)
    add(f"with {size / GiB:.1f} GiB instead of {dev.gpu_size_bytes / GiB:.1f} GiB", knob, ctx.rerun(d2, init, (mode,)), d2, init)
    # 4. CUDA instead of Metal at the same memory: no token cap.
    if dev.backend == "metal":
        cap = ctx.options.cap  # a cap the user set applies anywhere; the Metal rule does not
        d2 = _device(dev, backend="cuda", cap=cap, host_arch="x86_64")
        add("on CUDA instead of Metal with the same memory", "a CUDA GPU with the same memory (MLC caps only Metal)",
            ctx.rerun(d2, init, (mode,)), d2, init)
    return out


def _device(d: E.Device, **kw) -> E.Device:
    # dataclasses.replace is slow for the handful of what-ifs every plan carries
    return E.Device(kw.get("backend", d.backend), kw.get("gpu_size_bytes", d.gpu_size_bytes),
                    kw.get("utilization", d.utilization), kw.get("cap", d.cap), kw.get("host_arch", d.host_arch))


def _init(i: E.Init, **kw) -> E.Init:
    return E.Init(**{**{k: getattr(i, k) for k in E.Init.__dataclass_fields__}, **kw})


def _more_memory(ctx: "Context") -> tuple[int, str]:
    """Twice the memory — on a Mac, as much as raising the GPU wired limit allows."""
    d, size = ctx.device, ctx.engine_device.gpu_size_bytes
    if ctx.engine_device.backend == "metal" and d.ram_bytes:
        target = d.ram_bytes - MAC_RESERVE
        if target > size:
            mb = target // MiB
            return mb * MiB, f"sudo sysctl iogpu.wired_limit_mb={mb} (working set up to RAM − 8 GiB)"
        return size * 2, f"a Mac with more unified memory (this one has {d.ram_bytes / GiB:.0f} GiB)"
    if ctx.engine_device.backend == "metal":
        return size * 2, f"sudo sysctl iogpu.wired_limit_mb={size * 2 // MiB} (if the Mac has the RAM)"
    return size * 2, f"a device with {size * 2 / GiB:.0f} GiB (--memory {size * 2 // GiB}GiB)"
