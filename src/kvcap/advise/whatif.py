"""Ranked what-ifs: for the limit that binds (or nearly binds), the changes that relax it.

Each what-if plans again with one thing changed — the KV dtype, the weight quantization, another
engine, another MLC mode, no device cap, CUDA instead of Metal, the next catalog device, the
macOS GPU wired limit, twice the GPUs — and reports the capacity it gets, how many sequences of
the plan's context that is, what it costs, and its gain over the plan. Ranked by gain, then by
cost (a flag before a different engine before new hardware; bypassing a cap an engine set for
a reason comes last).

Capacities are compared as usable tokens: the KV pool, but at most sequences × the model's
window where the plan is for a fixed number of sequences (one sequence cannot use more).
The engine's own what-ifs (Plan.what_if) stay as they are; these are `ranked_what_if`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..device.spec import DeviceSpec
from ..errors import KvcapError
from ..plan import Plan
from ..units import GiB, MiB, fmt_bytes
from .adapter import Adapter
from .engines import ADAPTERS
from .space import Planner

MAC_RESERVE = 8 * GiB       # what a raised wired limit leaves macOS (a common community setting)
CAP_BINDINGS = ("device_cap",)
COST = {"mode": 1, "kv_dtype": 1, "wired_limit": 1, "weights": 2, "engine": 2, "tensor_parallel": 3,
        "memory": 3, "backend": 4, "no_cap": 5}


@dataclass(frozen=True)
class RankedWhatIf:
    change: str
    category: str                # kv_dtype, weights, engine, mode, no_cap, backend, memory, wired_limit, tensor_parallel
    knob: str                    # the flag, option, sysctl or hardware that makes the change
    engine: str
    device: str
    kv_tokens: int
    usable_tokens: int
    concurrency: int | None      # sequences of the plan's context that fit
    gain: float | None           # usable_tokens / the plan's (None where the plan holds nothing)
    binding: str
    cost: str
    options: Mapping[str, Any] = field(default_factory=dict)
    step: float = 0.0            # how big a change of its kind (bits given up by a quantization)

    @property
    def cost_rank(self) -> int:
        return COST.get(self.category, 3)

    def to_json(self) -> dict:
        return {"change": self.change, "category": self.category, "knob": self.knob, "engine": self.engine,
                "device": self.device, "kv_tokens": self.kv_tokens, "usable_tokens": self.usable_tokens,
                "concurrency": self.concurrency, "gain": self.gain, "binding": self.binding, "cost": self.cost,
                "options": dict(self.options)}


def ranked_what_ifs(plan: Plan, planner: Planner | None = None, limit: int = 12) -> tuple[RankedWhatIf, ...]:
    """The changes that give `plan` more usable KV, best first (at most `limit`)."""
    ad = ADAPTERS.get(plan.engine)
    if ad is None:
        return ()
    w = _WhatIfs(plan, ad, planner or Planner(plan.model))
    out = w.collect()
    base = w.base
    keep = [r for r in out if r.usable_tokens > 0 and (base == 0 or (r.gain or 0) > 1.0 + 1e-9)]
    keep.sort(key=lambda r: (-(r.gain or 0), -r.usable_tokens, r.cost_rank, r.step, r.change))
    seen: set[tuple] = set()
    unique = []
    for r in keep:                # one line per distinct result of one kind of change
        key = (r.category, r.engine, r.device, r.usable_tokens)
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return tuple(unique[:limit])


class _WhatIfs:
    def __init__(self, plan: Plan, ad: Adapter, planner: Planner) -> None:
        self.plan, self.ad, self.planner = plan, ad, planner
        self.model = plan.model
        self.context, self.sequences = ad.shape(plan)
        self.window = self.model.context_window
        self.base = self.usable(plan, ad)
        self.out: list[RankedWhatIf] = []

    # ---- measuring -------------------------------------------------------------------------------
    def usable(self, p: Plan, ad: Adapter) -> int:
        """Tokens the plan can use; 0 where it does not fit, or (llama.cpp, Ollama) leaves layers
        on the CPU, since then memory binds whatever the cache size."""
        if not p.fits:
            return 0
        if p.engine in ("llamacpp", "ollama") and not ad.served(p, self.model, 1, 1).concurrency:
            return 0
        _, s = ad.shape(p)
        if s and self.window:
            return min(p.kv_tokens, s * max(self.window, self.context))
        return p.kv_tokens

    def add(self, category: str, change: str, knob: str, cost: str, engine: str, device: DeviceSpec,
            options: Mapping[str, Any], step: float = 0.0) -> None:
        ad = ADAPTERS[engine]
        p = self.planner.plan(engine, device, options)
        if isinstance(p, KvcapError):
            return
        usable = self.usable(p, ad)
        gain = usable / self.base if self.base else None
        conc = usable // self.context if self.context else None
        self.out.append(RankedWhatIf(change, category, knob, engine, device.key or device.name, p.kv_tokens, usable,
                                     conc, gain, p.binding.name, cost, dict(options), step))

    # ---- the changes -------------------------------------------------------------------------------
    def collect(self) -> list[RankedWhatIf]:
        p, binding = self.plan, self.plan.binding.name
        memory = self.ad.near_memory(p)
        if binding in CAP_BINDINGS:
            self.no_cap()
            self.other_backend()
        if binding in CAP_BINDINGS or memory or binding == "max_buffer_length":
            self.other_engines()
        if binding == "mode_default" or (p.engine == "mlc" and p.mode):
            self.modes()
        if memory or binding == "max_buffer_length":
            self.kv_dtypes()
            self.weights()
            self.more_memory()
            self.tensor_parallel()
        return self.out

    def opts(self, **changes: Any) -> dict[str, Any]:
        out = dict(self.plan.options)
        for k, v in changes.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = v
        return out

    def kv_dtypes(self) -> None:
        choices = self.ad.kv(self.model)
        current = next((c for c in choices.values() if c.options and all(self.plan.options.get(k) == v
                                                                          for k, v in c.options.items())), None)
        bits = current.bits if current else 16
        for c in choices.values():
            if c.bits < bits:
                self.add("kv_dtype", f"KV cache in {c.label}", _knob(c.options), c.note or "KV quantization",
                         self.plan.engine, self.plan.device, {**self.plan.options, **c.options}, 16 - c.bits)

    def weights(self) -> None:
        keys = {k for c in self.ad.weights(self.model).values() for k in c.options}
        if keys & {"q_bits"} and self.model.config.get("quantization"):
            return
        chosen = [c for c in self.ad.weights(self.model).values() if c.options and all(
            self.plan.options.get(k) == v for k, v in c.options.items())]
        bits = chosen[0].bits if chosen else self.ad.default_weight_bits(self.model)
        for c in self.ad.weights(self.model).values():
            if c.options and c.bits < bits:
                self.add("weights", f"weights in {c.label}", _knob(c.options), c.note or "weight quantization",
                         self.plan.engine, self.plan.device, {**self.plan.options, **c.options}, 16 - c.bits)

    def other_engines(self) -> None:
        d = self.plan.device
        for name, ad in ADAPTERS.items():
            if name == self.plan.engine or d.backend not in ad.backends:
                continue
            opts = ad.target_for_capacity(self.context, self.sequences)
            self.add("engine", f"under {name}", f"{name} with {_knob(opts) or 'its defaults'}",
                     f"a different engine ({name})", name, d, opts)

    def modes(self) -> None:
        for m in ("local", "interactive", "server"):
            if m != self.plan.mode:
                self.add("mode", f"in {m} mode", f"--mode {m}", f"MLC's {m} mode sizes for a different batch",
                         "mlc", self.plan.device, self.opts(mode=m))

    def no_cap(self) -> None:
        if self.plan.engine != "mlc":
            return
        self.add("no_cap", "past the device cap (set max_total_seq_length yourself)",
                 '--overrides "max_total_seq_length=N" (MLC does not cap a value you set)',
                 "runs past the cap MLC set because Metal slows down with very large buffers (PR #1943); "
                 "measure first with `kvcap probe`", "mlc", self.plan.device, self.opts(no_cap=True))

    def other_backend(self) -> None:
        d = self.plan.device
        if d.backend != "metal" or "cuda" not in self.ad.backends:
            return
        cuda = dataclasses.replace(d, backend="cuda", unified=False, kind="gpu", max_buffer_bytes=None, ram_bytes=None,
                                   macos=None, key="", name=f"a CUDA GPU with {fmt_bytes(d.memory_bytes)}")
        self.add("backend", "on CUDA with the same memory", "a CUDA GPU (the cap is Metal's)",
                 "different hardware", self.plan.engine, cuda, self.plan.options)

    def more_memory(self) -> None:
        d = self.plan.device
        if d.backend == "metal" and d.ram_bytes and d.key:
            target = (d.ram_bytes - MAC_RESERVE) // MiB
            if target * MiB > d.memory_bytes:
                from ..device import get_device
                try:
                    raised = get_device(d.key, macos=d.macos, wired_limit_mb=target, count=d.count)
                except KvcapError:
                    raised = None
                if raised is not None and raised.memory_bytes > d.memory_bytes:
                    self.add("wired_limit", f"with the GPU wired limit at {target:,} MiB",
                             f"sudo sysctl iogpu.wired_limit_mb={target}",
                             f"+{fmt_bytes(raised.memory_bytes - d.memory_bytes)} for the GPU, less left for macOS",
                             self.plan.engine, raised, self.plan.options)
        bigger = next_tier(d)
        if bigger is not None:
            self.add("memory", f"on {bigger.name}", f"--device {bigger.key}",
                     f"+{fmt_bytes(bigger.memory_bytes - d.memory_bytes)}: a bigger device",
                     self.plan.engine, dataclasses.replace(bigger, count=d.count), self.plan.options)

    def tensor_parallel(self) -> None:
        d = self.plan.device
        if not self.ad.multi_gpu or d.kind not in ("gpu", ""):
            return
        key = self.ad.tp_key()
        tp = int(self.plan.options.get(key, 1)) if key else d.count
        opts = self.opts(**{key: tp * 2}) if key else dict(self.plan.options)
        how = f"tensor parallel {tp * 2}" if key else f"layers over {d.count * 2} GPUs"
        self.add("tensor_parallel", how, (f"{key}={tp * 2} on " if key else "") + f"{d.count * 2} × {d.key or d.name}",
                 f"{d.count * 2 - d.count} more GPU(s)", self.plan.engine,
                 dataclasses.replace(d, count=max(d.count * 2, tp * 2)), opts)


def _knob(options: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in options.items())


def next_tier(d: DeviceSpec) -> DeviceSpec | None:
    """The catalog device of the same backend and kind with the next larger memory (a Mac: the
    same chip with more memory first)."""
    if not d.key:
        return None
    from ..device.catalog import entries
    same = [e for e in entries(macos=d.macos) if e.backend == d.backend and e.kind == d.kind
            and e.memory_bytes > d.memory_bytes]
    if d.kind == "mac":
        chip = d.key.rsplit("-", 1)[0]
        same_chip = [e for e in same if e.key.rsplit("-", 1)[0] == chip]
        same = same_chip or same
    return min(same, key=lambda e: (e.memory_bytes, e.key), default=None)
