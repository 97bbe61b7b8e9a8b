"""Plan: the result of an engine policy, as a ledger of named numbers.

Every number an engine computes on the way to its KV capacity is one `Line`: its value, unit,
formula in words and source (engine file and function). The text report prints the ledger,
JSON exports it, `validate` compares its lines with what the engine logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .device.spec import DeviceSpec
from .model.spec import ModelSpec

# Names of binding limits used across engines (engines may add their own).
MEMORY = "memory"
DEVICE_CAP = "device_cap"
CONTEXT_WINDOW = "context_window"
MODE_DEFAULT = "mode_default"
USER_OVERRIDE = "user_override"
INSUFFICIENT = "insufficient_memory"


@dataclass(frozen=True)
class Line:
    name: str
    value: Any
    unit: str = ""
    formula: str = ""
    source: str = ""
    estimate: bool = False   # a term kvcap estimates (not known exactly offline)
    note: str = ""           # e.g. the error bar of an estimate, in words
    error_bar: float | None = None  # ± this much (value's unit) for an estimate, where stated

    def to_json(self) -> dict:
        d = {"name": self.name, "value": self.value, "unit": self.unit, "formula": self.formula, "source": self.source}
        if self.estimate:
            d["estimate"] = True
        if self.note:
            d["note"] = self.note
        if self.error_bar is not None:
            d["error_bar"] = self.error_bar
        return d


class Ledger:
    """An append-only list of lines; `add` returns the value so formulas read top to bottom."""

    def __init__(self) -> None:
        self.lines: list[Line] = []

    def add(self, name: str, value: Any, unit: str = "", formula: str = "", source: str = "",
            estimate: bool = False, note: str = "", error_bar: float | None = None) -> Any:
        self.lines.append(Line(name, value, unit, formula, source, estimate, note, error_bar))
        return value

    def get(self, name: str) -> Any:
        for line in reversed(self.lines):
            if line.name == name:
                return line.value
        raise KeyError(name)


@dataclass(frozen=True)
class Binding:
    name: str
    reason: str
    source: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "reason": self.reason, "source": self.source}


@dataclass(frozen=True)
class WhatIf:
    change: str                     # what is different, in words
    knob: str                       # the flag, override or setting that makes the change
    engine_config: Mapping[str, Any]
    binding: str
    kv_tokens: int | None = None
    gain: float | None = None       # kv_tokens / the plan's kv_tokens

    def to_json(self) -> dict:
        return {"change": self.change, "knob": self.knob, "engine_config": dict(self.engine_config),
                "binding": self.binding, "kv_tokens": self.kv_tokens, "gain": self.gain}


@dataclass(frozen=True)
class Plan:
    engine: str
    model: ModelSpec
    device: DeviceSpec
    engine_config: Mapping[str, Any]     # the engine's own option names and final values
    memory: Mapping[str, int]            # bytes per category (weights, kv_cache, workspace, …)
    binding: Binding
    ledger: tuple[Line, ...]
    kv_tokens: int                       # the KV pool, in tokens (0 when it does not fit)
    mode: str | None = None
    what_if: tuple[WhatIf, ...] = ()
    warnings: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)  # what the user set, engine names

    @property
    def fits(self) -> bool:
        return self.binding.name != INSUFFICIENT

    def line(self, name: str) -> Any:
        return self.ledger_line(name).value

    def ledger_line(self, name: str) -> Line:
        for line in reversed(self.ledger):
            if line.name == name:
                return line
        raise KeyError(name)

    def to_json(self) -> dict:
        return {
            "engine": self.engine,
            "mode": self.mode,
            "model": {"name": self.model.name, "model_type": self.model.model_type, "source": self.model.source},
            "device": {"name": self.device.name, "key": self.device.key, "backend": self.device.backend,
                       "memory_bytes": self.device.memory_bytes, "count": self.device.count,
                       "memory_source": self.device.memory_source},
            "engine_config": dict(self.engine_config),
            "kv_tokens": self.kv_tokens,
            "memory": dict(self.memory),
            "binding": self.binding.to_json(),
            "ledger": [l.to_json() for l in self.ledger],
            "what_if": [w.to_json() for w in self.what_if],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Capacity:
    """A plan's numbers without its explanation: what `capacity()` returns for solvers and charts.

    Engines that can compute it faster than a full Plan define `capacity(model, device, options)`;
    for the others `Capacity.of(plan)` gives the same fields.
    """

    engine: str
    kv_tokens: int
    binding: Binding
    engine_config: Mapping[str, Any]

    @property
    def fits(self) -> bool:
        return self.binding.name != INSUFFICIENT

    @classmethod
    def of(cls, plan: "Plan") -> "Capacity":
        return cls(plan.engine, plan.kv_tokens, plan.binding, plan.engine_config)

