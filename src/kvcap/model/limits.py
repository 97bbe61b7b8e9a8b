"""Caps on what the model readers read, so an odd or hostile file costs bounded time and memory.

Every reader checks a declared size against these caps and against the real file size *before*
it reads or allocates, and its error names the cap that was hit. Pass a `ReadLimits` to
`load_model(..., limits=...)` to raise or lower them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import ModelError, OptionsError


@dataclass(frozen=True)
class ReadLimits:
    # The safetensors crate refuses headers above 100,000,000 bytes (tensor.rs, MAX_HEADER_SIZE).
    max_safetensors_header: int = 100_000_000
    # GGUF key/value metadata + tensor infos (everything before the tensor data). A 262k-token
    # vocabulary with scores, types and merges is ~10 MB; the cap also bounds the time spent
    # skipping a declared array of millions of strings.
    max_gguf_metadata: int = 64 << 20
    # GGUF counts, which also bound the time spent walking them: real files have ~50 keys,
    # ~1,200 tensors (experts merged per layer) and arrays up to a ~262k-entry vocabulary;
    # skipping a 2M-string array takes ~1 s.
    max_gguf_keys: int = 1 << 16
    max_gguf_tensors: int = 1 << 16
    max_gguf_array: int = 1 << 21
    # A JSON side file: safetensors index, tensor-cache.json (tens of MB for the largest models).
    max_json: int = 64 << 20
    # A config.json is a few KiB (the largest, with per-layer lists, well under 1 MiB).
    max_config: int = 8 << 20
    # Files one model may span (sharded safetensors, split GGUF, MLC params shards).
    max_files: int = 10_000
    # Tensors one model may declare in all its files together.
    max_tensors: int = 10_000_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise OptionsError(f"ReadLimits.{f.name} must be a positive int, got {value!r}")


DEFAULT_LIMITS = ReadLimits()


def check_regular_file(path: Path) -> None:
    """Refuse what is not a regular file before opening it: opening a FIFO blocks until a writer
    comes, and a device (/dev/zero, /dev/urandom) never ends."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return                  # opening it raises the OSError, which the reader reports
    if not stat.S_ISREG(mode):
        raise ModelError(f"{path}: not a regular file (a device, FIFO or socket is no model file)")
