"""A local HuggingFace model folder: config.json + safetensors headers -> ModelSpec.

The family builder gives the architecture (layers, KV geometry, logical tensors); the headers
give the exact bytes the checkpoint stores, by dtype; `quantization_config` names the scheme.
Without headers a quantized config is priced by `quant_config.rule_bytes` and says so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from ..errors import ModelError
from . import hf, quant_config
from .limits import DEFAULT_LIMITS, ReadLimits
from .safetensors_reader import Stored, read_folder
from .spec import ModelSpec

HEADERS = "safetensors headers"
RULES = "quantization_config rules"


def with_checkpoint(spec: ModelSpec, cfg: Mapping[str, Any], stored: Stored | None) -> ModelSpec:
    """Attach the checkpoint's scheme and stored bytes (from headers, else from the scheme's rules)."""
    scheme = quant_config.scheme(cfg)
    changes: dict[str, Any] = {}
    if stored is not None:
        changes.update(stored_bytes=dict(stored.bytes_by_dtype), stored_tensors=stored.tensors)
        if scheme is not None:
            changes["quantization"] = {**scheme, "stored_bytes_from": HEADERS}
    elif scheme is not None:
        changes.update(quantization={**scheme, "stored_bytes_from": RULES},
                       stored_bytes=quant_config.rule_bytes(spec, scheme))
    return dataclasses.replace(spec, **changes) if changes else spec


def from_hf_folder(folder: Path, name: str = "", source: str = "", limits: ReadLimits = DEFAULT_LIMITS) -> ModelSpec:
    config = folder / "config.json"
    if not config.is_file():
        raise ModelError(f"{folder} holds no config.json (nor mlc-chat-config.json or a .gguf file)")
    cfg = hf.read_json(config, limit=limits.max_config)
    spec = hf.from_config(cfg, name or folder.name, source or str(folder))
    return with_checkpoint(spec, cfg, read_folder(folder, limits))
