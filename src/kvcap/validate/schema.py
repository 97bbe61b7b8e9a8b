"""The shape of one validation case (../shared/validation/README.md), checked before a replay.

Replays read sections and numbers straight from a case; a case whose `device` is a number or
whose `given.device_total_bytes` is a list must be one line naming the field, not a TypeError
inside a replay. Only types are checked here; what the values mean is each replay's business.
"""

from __future__ import annotations

import math
from typing import Any

_SCALAR = (str, int, float, bool, type(None))


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, int) or math.isfinite(v))


def _scalar(v: Any) -> bool:
    return isinstance(v, _SCALAR) and (not isinstance(v, float) or math.isfinite(v))


def problem(case: dict) -> str | None:
    """What is wrong with the case's shape, in a few words; None when it reads as a case."""
    for key in ("engine_version", "engine_era"):
        if not isinstance(case.get(key), (str, type(None))):
            return f"'{key}' must be a string or null"
    for key in ("model", "weights", "device", "options", "given", "tolerance", "mode_lines"):
        if not isinstance(case.get(key), (dict, type(None))):
            return f"'{key}' must be an object"
    model = case.get("model") or {}
    if not isinstance(model.get("name"), (str, type(None))):
        return "'model.name' must be a string or null"
    for key in ("hf_config", "gguf_metadata"):
        if not isinstance(model.get(key), (dict, type(None))):
            return f"'model.{key}' must be an object"
    extra = model.get("additional_models")
    if not isinstance(extra, (list, type(None))) or not all(
            isinstance(a, dict) and isinstance(a.get("weights"), (dict, type(None))) for a in extra or ()):
        return "'model.additional_models' must be a list of objects"
    for section in ("weights", "device"):
        for k, v in (case.get(section) or {}).items():
            if not isinstance(v, (str, type(None))) and not (section == "device" and k == "total_memory_bytes"):
                return f"'{section}.{k}' must be a string or null"
    total = (case.get("device") or {}).get("total_memory_bytes")
    if total is not None and not (isinstance(total, int) and not isinstance(total, bool) and total >= 0):
        return "'device.total_memory_bytes' must be a non-negative integer or null"
    for k, v in (case.get("options") or {}).items():
        if not _scalar(v):
            return f"'options.{k}' must be a string, number, boolean or null"
    for k, v in (case.get("given") or {}).items():
        if not _finite_number(v):
            return f"'given.{k}' must be a finite number"
    for k, v in (case.get("tolerance") or {}).items():
        if not isinstance(v, dict) or not _finite_number(v.get("abs")) or v["abs"] < 0:
            return f"'tolerance.{k}' must be {{\"abs\": a non-negative number}}"
    sections = [("observed", case["observed"])] + [(f"mode_lines.{m}", v) for m, v in (case.get("mode_lines") or {}).items()]
    for name, values in sections:
        if not isinstance(values, dict):
            return f"'{name}' must be an object"
        for k, v in values.items():
            if not _scalar(v) or v is None:
                return f"'{name}.{k}' must be a string, finite number or boolean"
    return None
