"""Reading fields out of a HuggingFace config dict, strictly.

Every family builder reads through these helpers so that a missing, wrong-typed, negative or
absurd field is a one-line ModelError naming the field, never a TypeError deep inside.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ..errors import ModelError

_MISSING = object()
# A generous ceiling: no real model has a dimension or count beyond this.
MAX_DIM = 1 << 31


def get_int(cfg: Mapping[str, Any], *names: str, default: Any = _MISSING, minimum: int = 1) -> int:
    """The first of `names` present in `cfg`, as a positive int (floats like 4096.0 accepted)."""
    for name in names:
        if name in cfg and cfg[name] is not None:
            value = cfg[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ModelError(f"config field {name!r} must be a number, got {value!r}")
            if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
                raise ModelError(f"config field {name!r} must be a whole number, got {value!r}")
            value = int(value)
            if value < minimum or value > MAX_DIM:
                raise ModelError(f"config field {name!r} = {value} is out of range [{minimum}, {MAX_DIM}]")
            return value
    if default is _MISSING:
        raise ModelError(f"config is missing {' or '.join(repr(n) for n in names)}")
    return default


def get_bool(cfg: Mapping[str, Any], name: str, default: bool) -> bool:
    value = cfg.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ModelError(f"config field {name!r} must be true or false, got {value!r}")
    return value


def get_str(cfg: Mapping[str, Any], name: str, default: str = "") -> str:
    value = cfg.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ModelError(f"config field {name!r} must be a string, got {value!r}")
    return value


def get_dict(cfg: Mapping[str, Any], name: str) -> dict:
    value = cfg.get(name) or {}
    if not isinstance(value, dict):
        raise ModelError(f"config field {name!r} must be an object, got {value!r}")
    return value


def head_dim(cfg: Mapping[str, Any], hidden: int, heads: int) -> int:
    """Explicit `head_dim` where the config has one (Qwen3, Gemma); else hidden / heads, exactly."""
    explicit = get_int(cfg, "head_dim", default=None)
    if explicit is not None:
        return explicit
    if hidden % heads:
        raise ModelError(
            f"hidden_size {hidden} is not divisible by num_attention_heads {heads} and the config has no head_dim"
        )
    return hidden // heads


def dtype(cfg: Mapping[str, Any]) -> str:
    """The checkpoint dtype, normalised: float16, bfloat16 or float32."""
    raw = cfg.get("torch_dtype") or cfg.get("dtype") or "float16"
    if not isinstance(raw, str):
        raise ModelError(f"config field 'torch_dtype' must be a string, got {raw!r}")
    raw = raw.removeprefix("torch.")
    aliases = {"float16": "float16", "fp16": "float16", "half": "float16",
               "bfloat16": "bfloat16", "bf16": "bfloat16",
               "float32": "float32", "fp32": "float32", "float": "float32"}
    if raw not in aliases:
        raise ModelError(f"torch_dtype {raw!r} is not supported: use float16, bfloat16 or float32")
    return aliases[raw]
