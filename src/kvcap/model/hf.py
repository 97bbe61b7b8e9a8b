"""A HuggingFace `config.json` (a dict, a file, or a folder holding one) -> ModelSpec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..errors import ModelError
from .families import builder_for
from .spec import ModelSpec

# A config.json is a few KiB; anything far larger is not one.
MAX_CONFIG_BYTES = 8 << 20
SUB_CONFIGS = ("text_config", "vision_config", "audio_config", "quantization_config", "rope_scaling")


def read_json(path: Path, what: str = "config", limit: int = MAX_CONFIG_BYTES,
              cap: str = "ReadLimits.max_config") -> dict:
    """A JSON object from a file, with a size bound (`cap` names it in the error) and one-line errors."""
    from .limits import check_regular_file
    try:
        check_regular_file(path)
        size = path.stat().st_size
        if size > limit:
            raise ModelError(f"{path}: {size} bytes is too large for a {what} file (limit {limit}, {cap})")
        with open(path, "rb") as f:
            # read(n) allocates n bytes up front: ask for what the file holds, not for the cap.
            raw = f.read(size + 1)
        if len(raw) > size:
            raise ModelError(f"{path}: the file grew while being read")
        data = json.loads(raw)
    except ModelError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read {what} file {path}: {e.strerror if isinstance(e, OSError) else e}") from None
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        raise ModelError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: a {what} file must hold a JSON object")
    return data


def from_config(cfg: Mapping[str, Any], name: str = "", source: str = "config") -> ModelSpec:
    """Build a ModelSpec from a config dict; unknown model types fail closed."""
    if not isinstance(cfg, Mapping):
        raise ModelError("a model config must be a JSON object")
    model_type = cfg.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ModelError(f"{name or source}: config has no 'model_type'")
    # Sub-configs every engine reads with .get(): a list or number there is a corrupt config.
    for key in SUB_CONFIGS:
        if cfg.get(key) and not isinstance(cfg[key], Mapping):
            raise ModelError(f"{name or source}: config field {key!r} must be an object, got {cfg[key]!r:.60}")
    declared = cfg.get("_name_or_path")
    declared = declared if isinstance(declared, str) else ""   # a number or list names nothing
    return builder_for(model_type)(cfg, name or declared or model_type, source)


def from_path(path: str | Path) -> ModelSpec:
    """A config.json file, or a folder that holds one."""
    p = Path(path)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelError(f"{p} holds no config.json")
        p = p / "config.json"
    cfg = read_json(p)
    name = cfg.get("_name_or_path") if isinstance(cfg.get("_name_or_path"), str) else ""
    return from_config(cfg, name or p.parent.name or p.stem, str(p))
