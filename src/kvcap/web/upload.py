"""Uploaded model files, parsed in memory: a config.json, the start of a GGUF file, or a
safetensors header. Nothing is written to disk and no request names a path on the server.

The page sends only what is needed: a GGUF file's first MiBs (its metadata and tensor infos
come before the tensor data) and a safetensors file's 8-byte length plus header. Both are
parsed by kvcap's own bounded readers (model/gguf_reader.py, model/safetensors_reader.py) over
the bytes in memory, under the same ReadLimits as files on disk.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import secrets
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelError
from ..model.spec import ModelSpec

MAX_UPLOAD = 16 << 20      # bytes; a Llama-3 GGUF's metadata (128k vocab + merges) is ~8 MiB
MAX_ENTRIES = 32           # uploads kept per server, least recently used dropped first
_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_SHARD = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.safetensors$")
_GGUF_VIRTUAL_SIZE = 1 << 62  # the tensor data is not uploaded: its bounds are not checked here


def clean_name(filename: str) -> str:
    """A display label for an uploaded file: its last path part, odd characters dropped."""
    base = re.split(r"[\\/]", filename or "")[-1]
    return _NAME.sub("_", base)[:80] or "upload"


def _prefix_reader(data: bytes, label: str, cap: int, max_array: int):
    """model/gguf_reader.py's bounded `_Reader` over the uploaded start of a GGUF file. Metadata
    reads must stay inside the upload (an error names the upload, where a file would be
    truncated); the tensor data that follows was never sent, so its bounds are not checked."""
    from ..model.gguf_reader import _Reader

    class PrefixReader(_Reader):
        def _need(self, n: int, what: str) -> None:
            end = self.pos + n
            if end > self.cap:
                raise ModelError(f"{label}: GGUF metadata runs past the {self.cap}-byte cap at {what} "
                                 f"(ReadLimits.max_gguf_metadata)")
            if end > len(data):
                raise ModelError(f"{label}: the upload ends at byte {len(data)}, inside the GGUF header ({what} "
                                 f"needs {n} bytes at offset {self.pos}); send more of the file's start "
                                 f"(up to {MAX_UPLOAD >> 20} MiB)")

    return PrefixReader(io.BytesIO(data), label, _GGUF_VIRTUAL_SIZE, cap, max_array)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _reject(text: str):
    raise ValueError(f"{text} is not a JSON number")


def parse_config(data: bytes, label: str) -> dict:
    try:
        cfg = json.loads(data.decode("utf-8-sig"), parse_float=_finite, parse_constant=_reject)
    except UnicodeDecodeError:
        raise ModelError(f"{label}: not a config.json, GGUF or safetensors header (not UTF-8 text)") from None
    except (ValueError, RecursionError) as e:
        raise ModelError(f"{label}: not valid JSON ({str(e).splitlines()[0][:100]})") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{label}: a config.json must hold a JSON object")
    return cfg


def spec_from_config(cfg: dict, label: str) -> ModelSpec:
    from ..model import load_model
    spec = load_model(cfg)  # the dict path of load_model: the same family builders as the CLI
    declared = cfg.get("_name_or_path")
    name = declared if isinstance(declared, str) and declared else f"{spec.model_type} ({label})"
    return dataclasses.replace(spec, name=name, source=f"upload:{label}")


def spec_from_gguf(data: bytes, label: str) -> ModelSpec:
    """The metadata and tensor infos of an uploaded GGUF start -> ModelSpec with exact stored bytes,
    as model/gguf_config.py `from_gguf` builds it from a file."""
    from ..model import hf
    from ..model.gguf_config import config_from_gguf
    from ..model.gguf_reader import FILE_TYPES, _parse
    from ..model.limits import DEFAULT_LIMITS

    lim = DEFAULT_LIMITS
    g = _parse(_prefix_reader(data, label, lim.max_gguf_metadata, lim.max_gguf_array), lim)
    count = g.metadata.get("split.count", 1)
    if count != 1:
        raise ModelError(f"{label}: part of a split GGUF ({count!r} files); the page reads single-file models "
                         f"(use `kvcap plan FIRST-PART.gguf` for a split one)")
    cfg = config_from_gguf(g.metadata, g.tensors, label)
    name = g.metadata.get("general.name")
    spec = hf.from_config(cfg, name if isinstance(name, str) and name else label, f"upload:{label}")
    by_type: dict[str, int] = {}
    for t in g.tensors:
        by_type[t.type] = by_type.get(t.type, 0) + t.nbytes
    ftype = g.metadata.get("general.file_type")
    quant = {"format": "gguf", "file_type": FILE_TYPES.get(ftype, f"unknown ({ftype})") if ftype is not None else "",
             "gguf_version": g.version, "files": 1, "stored_bytes_from": "gguf tensor infos (upload)"}
    return dataclasses.replace(spec, stored_bytes=dict(sorted(by_type.items())), quantization=quant,
                               stored_tensors=len(g.tensors))


def safetensors_header(data: bytes, label: str):
    """The 8-byte length and JSON header of a safetensors file (tensor data not needed)."""
    from ..model.safetensors_reader import parse_header
    if len(data) < 8:
        raise ModelError(f"{label}: {len(data)} bytes is too short for a safetensors header (8-byte length first)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_UPLOAD:
        raise ModelError(f"{label}: safetensors header declares {n} bytes, above the upload limit of {MAX_UPLOAD}")
    if 8 + n > len(data):
        raise ModelError(f"{label}: safetensors header declares {n} bytes but the upload holds {len(data) - 8}")
    return parse_header(data[8:8 + n], label, None)


def looks_like_safetensors(data: bytes) -> bool:
    """An 8-byte little-endian length then '{'. Real header lengths are far below 2^32, which also
    tells a length from the first 8 characters of a JSON text (e.g. indentation)."""
    return len(data) >= 9 and data[8:9] == b"{" and struct.unpack("<Q", data[:8])[0] < 1 << 32


@dataclass
class Upload:
    """One uploaded model: its spec, and for a config.json any safetensors headers sent for it."""

    spec: ModelSpec
    label: str
    config: dict | None = None
    headers: dict[str, Any] = field(default_factory=dict)   # file label -> Header
    note: str = ""


def attach_headers(up: Upload) -> Upload:
    """Price the config's checkpoint from its safetensors headers once the set is complete:
    a lone file, or every shard of model-XXXXX-of-YYYYY. A partial set would under-count the
    weights (an over-promise of KV), so until then the config's own pricing stays."""
    from ..model.hf_folder import with_checkpoint
    from ..model.safetensors_reader import summarize

    names = sorted(up.headers)
    shards = [_SHARD.match(n) for n in names]
    if any(shards) and not all(shards):
        raise ModelError(f"{up.label}: a mix of sharded and single safetensors headers ({', '.join(names[:4])}); "
                         f"upload one checkpoint's files")
    if all(shards) and names:
        totals = {int(m.group(3)) for m in shards}
        if len(totals) != 1:
            raise ModelError(f"{up.label}: safetensors shards of different sets ({', '.join(names[:4])})")
        total = totals.pop()
        if len(names) < total:
            up.note = f"{len(names)} of {total} safetensors shards uploaded: stored bytes are used once all arrive"
            return up
    elif len(names) > 1:
        raise ModelError(f"{up.label}: {len(names)} safetensors files that are not model-XXXXX-of-YYYYY shards")
    stored = summarize(((n, up.headers[n]) for n in names))
    up.spec = with_checkpoint(up.spec, up.config or {}, stored)
    up.note = f"stored bytes from {len(names)} safetensors header(s)"
    return up


class UploadStore:
    """Uploads of one server, in memory, by random token; bounded and least-recently-used."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self._items: OrderedDict[str, Upload] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def get(self, token: str) -> Upload:
        with self._lock:
            up = self._items.get(token)
            if up is None:
                raise ModelError("unknown or expired upload; upload the file again")
            self._items.move_to_end(token)
            return up

    def put(self, up: Upload, token: str | None = None) -> str:
        with self._lock:
            token = token or secrets.token_urlsafe(12)
            self._items[token] = up
            self._items.move_to_end(token)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
            return token

    def add(self, data: bytes, filename: str, token: str | None = None) -> tuple[str, Upload]:
        """Parse one uploaded file. A safetensors header joins the config upload `token`."""
        label = clean_name(filename)
        if not data:
            raise ModelError(f"{label}: the upload is empty")
        if data[:4] == b"GGUF":
            up = Upload(spec_from_gguf(data, label), label)
            return self.put(up), up
        if looks_like_safetensors(data):
            if not token:
                raise ModelError(f"{label}: a safetensors header prices a checkpoint; upload its config.json "
                                 f"first, then the header")
            base = self.get(token)
            if base.config is None:
                raise ModelError(f"{label}: safetensors headers go with a config.json upload, not a GGUF one")
            header = safetensors_header(data, label)
            up = attach_headers(dataclasses.replace(base, headers={**base.headers, label: header}))
            return self.put(up, token), up
        cfg = parse_config(data, label)
        up = Upload(spec_from_config(cfg, label), label, config=cfg)
        return self.put(up), up
