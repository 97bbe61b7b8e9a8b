"""Models: where a ModelSpec comes from (catalog name, config.json, model folder)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import ModelError
from . import catalog, hf
from .spec import ModelSpec

# Keys MLC-LLM reads from a preset / mlc-chat-config.json beside the HF fields.
MLC_KEYS = ("context_window_size", "prefill_chunk_size", "sliding_window_size", "attention_sink_size",
            "max_batch_size", "tensor_parallel_shards", "pipeline_parallel_stages")


def with_mlc_fields(spec: ModelSpec, cfg: dict) -> ModelSpec:
    extra = {k: cfg[k] for k in MLC_KEYS if k in cfg}
    return dataclasses.replace(spec, mlc=extra) if extra else spec


def load_model(source: str | Path | dict) -> ModelSpec:
    """A catalog name, a config.json path, a folder, or a config dict -> ModelSpec."""
    if isinstance(source, dict):
        return with_mlc_fields(hf.from_config(source, source.get("_name_or_path") or "", "config"), source)
    text = str(source)
    path = Path(text).expanduser()
    if path.exists() or text.endswith(".json") or text.startswith((".", "/", "~")):
        if not path.exists():
            raise ModelError(f"no such file or folder: {text}")
        return hf.from_path(path)
    entry = catalog.lookup(text)
    cfg = entry.config()
    spec = hf.from_config(cfg, entry.key, f"catalog:{entry.source}:{entry.path}")
    return with_mlc_fields(spec, cfg)


__all__ = ["ModelSpec", "load_model", "catalog"]
