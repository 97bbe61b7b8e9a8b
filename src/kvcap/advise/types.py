"""What `fit` answers: configurations that serve, the closest misses, and the result."""

from __future__ import annotations

from dataclasses import dataclass

from ..device.spec import DeviceSpec
from ..model.spec import ModelSpec
from ..plan import Plan
from .engines import Choice, Served
from .space import DeviceClass, Layout


@dataclass(frozen=True)
class Config:
    engine: str
    device_class: DeviceClass
    layout: Layout
    weights: Choice
    kv: Choice

    @property
    def device(self) -> DeviceSpec:
        return self.device_class.device


@dataclass(frozen=True)
class Solution:
    """A configuration that serves the target, as its engine planned it."""

    config: Config
    served: Served
    plan: Plan
    replicas: int
    nodes: int
    notes: tuple[str, ...] = ()

    @property
    def devices(self) -> int:
        return self.config.layout.gpus * self.replicas

    @property
    def memory(self) -> int:
        """Memory of all the devices, as their backends report it."""
        return self.devices * self.config.device.memory_bytes

    def rank_key(self) -> tuple:
        """Fewest devices, least memory, least quantization (weights, then KV)."""
        c = self.config
        return (self.devices, self.memory, -c.weights.bits, -c.kv.bits, self.served.over_cap,
                -self.served.concurrency, c.engine, c.device.key)

    def beats(self, devices: int, memory: int, w_bits: float, kv_bits: float) -> bool:
        """As good on every count as a configuration with these numbers."""
        c = self.config
        return (self.devices <= devices and self.memory <= memory and c.weights.bits >= w_bits
                and c.kv.bits >= kv_bits)


@dataclass(frozen=True)
class Miss:
    """The best an engine (on a backend, a device, or at all) got, and what it lacks."""

    engine: str
    scope: str
    config: Config | None
    concurrency: int
    reason: str


@dataclass(frozen=True)
class FitResult:
    model: ModelSpec
    context: int
    concurrency: int
    solutions: tuple[Solution, ...]      # ranked
    misses: tuple[Miss, ...]
    max_gpus: int
    nodes: int
    plans: int                           # engine policies run
    seconds: float
    complete: bool = False               # every configuration (--all), not only the settled top

    @property
    def feasible(self) -> bool:
        return bool(self.solutions)

    def closest_miss(self) -> Miss | None:
        pool = [m for m in self.misses if m.config is not None] or list(self.misses)
        if not pool:
            return None
        return max(pool, key=lambda m: (m.concurrency, (m.config.layout.gpus * m.config.device.memory_bytes)
                                        if m.config else 0))


def undominated(sols: list[Solution]) -> list[Solution]:
    """Ranked, without a configuration another of the same engine and backend beats on every count."""
    out: list[Solution] = []
    for s in sorted(sols, key=Solution.rank_key):
        c = s.config
        if not any(o.config.engine == c.engine and o.config.device.backend == c.device.backend
                   and o.beats(s.devices, s.memory, c.weights.bits, c.kv.bits) for o in out):
            out.append(s)
    return out
