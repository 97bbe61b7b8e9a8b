"""The search space of advise: device classes, parallel layouts, a cheap lower bound, and a
cached way to run an engine policy.

Devices that an engine cannot tell apart (same backend, memory, buffer limit, RAM) form one
class and are planned once. The lower bound (weights at their bits plus the full-attention KV
of the sequences, divided over the GPUs) says which devices cannot possibly serve a target, so
the solver never plans them.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Mapping

from ..device.spec import DeviceSpec
from ..errors import DeviceError, KvcapError, ModelError, OptionsError
from ..model.spec import FULL, MLA, SLIDING, CHUNKED, ModelSpec
from ..plan import Plan

# Device kinds that several of fit in one host (a Mac or a phone is its own node).
MULTI_GPU_KINDS = ("gpu", "")


@dataclass(frozen=True)
class DeviceClass:
    """Devices an engine cannot tell apart; `members` in catalog order, the first stands for all."""

    device: DeviceSpec
    members: tuple[DeviceSpec, ...]

    @property
    def memory(self) -> int:
        return self.device.memory_bytes

    @property
    def multi_gpu(self) -> bool:
        return self.device.kind in MULTI_GPU_KINDS

    @property
    def per_node(self) -> int:
        return 0 if self.multi_gpu else 1   # 0: --max-gpus decides


def device_classes(devices: tuple[DeviceSpec, ...], by_name: bool) -> list[DeviceClass]:
    """Group devices by what a policy reads from them; sorted by memory, then catalog order."""
    groups: dict[tuple, list[DeviceSpec]] = {}
    for d in devices:
        key = (d.backend, d.memory_bytes, d.max_buffer_bytes, d.ram_bytes, d.unified, d.kind, d.macos)
        if by_name:
            key += (d.name, d.key)
        groups.setdefault(key, []).append(d)
    out = [DeviceClass(v[0], tuple(v)) for v in groups.values()]
    return sorted(out, key=lambda c: (c.memory, c.device.backend))


@dataclass(frozen=True)
class Layout:
    """Devices one replica uses: tp × pp, over `nodes` hosts."""

    tp: int
    pp: int
    nodes: int = 1

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    def describe(self, split: str = "tensor") -> str:
        if self.gpus == 1:
            return "1 device"
        parts = []
        if self.tp > 1:
            parts.append(f"{split} parallel {self.tp}")
        if self.pp > 1:
            parts.append(f"pipeline parallel {self.pp}")
        where = f" over {self.nodes} nodes" if self.nodes > 1 else ""
        return " × ".join(parts) + where


def layouts(max_gpus: int, nodes: int, multi_node: bool) -> list[Layout]:
    """1, 2, 4, … GPUs in one host; then whole hosts across nodes (TP inside, PP across)."""
    out, g = [Layout(1, 1)], 2
    while g <= max_gpus:
        out.append(Layout(g, 1))
        g *= 2
    if multi_node and max_gpus > 1:
        for n in range(2, nodes + 1):
            out.append(Layout(max_gpus, n, n))
    return out


def text_params(model: ModelSpec) -> int:
    return sum(t.numel for t in model.tensors if t.part == "text")


def kv_elems_lower(model: ModelSpec, context: int) -> int:
    """K+V elements one sequence of `context` tokens needs at least (full, latent, windowed layers)."""
    n = 0
    for l in model.layers:
        e = l.kv_elems_per_token
        if not e or l.is_mtp:
            continue
        if l.kind in (FULL, MLA):
            n += e * context
        elif l.kind in (SLIDING, CHUNKED) and l.window:
            n += e * min(context, l.window)
    return n


def lower_bound(model: ModelSpec, w_bits: float, kv_bits: float, gpus: int, context: int, sequences: int,
                params: int | None = None, kv_elems: int | None = None) -> int:
    """Bytes each of `gpus` devices needs at least: no engine stores less than this."""
    params = text_params(model) if params is None else params
    kv_elems = kv_elems_lower(model, context) if kv_elems is None else kv_elems
    w = params * int(w_bits) // 8
    kv = kv_elems * sequences * int(kv_bits) // 8
    return (w + kv) // gpus


# ---- running a policy ---------------------------------------------------------------------------
def core_planner(engine: ModuleType) -> Callable[[ModelSpec, DeviceSpec, Mapping[str, Any]], Plan]:
    """The engine's plan without its own what-ifs where the module offers one (its `_plan`), since
    advise plans hundreds of times; else its public `plan`."""
    inner = getattr(engine, "_plan", None)
    if callable(inner):
        params = inspect.signature(inner).parameters
        if "with_what_ifs" in params:
            return lambda m, d, o: inner(m, d, o, with_what_ifs=False)
        if len(params) == 3:
            return inner
    return engine.plan


class Planner:
    """Runs engine policies, caching each (engine, device, options) once; errors are results."""

    def __init__(self, model: ModelSpec) -> None:
        self.model = model
        self.cache: dict[tuple, Plan | KvcapError] = {}
        self._engines: dict[str, Callable] = {}
        self.calls = 0

    def plan(self, engine: str, device: DeviceSpec, options: Mapping[str, Any]) -> Plan | KvcapError:
        key = (engine, device, tuple(sorted((k, repr(v)) for k, v in options.items())))
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        fn = self._engines.get(engine)
        if fn is None:
            from ..engines import get_engine
            fn = self._engines[engine] = core_planner(get_engine(engine))
        self.calls += 1
        try:
            out: Plan | KvcapError = fn(self.model, device, dict(options))
        except (OptionsError, ModelError, DeviceError) as e:
            out = e
        except KvcapError as e:  # InsufficientMemory raised instead of returned
            out = e
        self.cache[key] = out
        return out


def with_count(device: DeviceSpec, count: int) -> DeviceSpec:
    return device if device.count == count else dataclasses.replace(device, count=count)
