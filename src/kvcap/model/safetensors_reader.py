"""Safetensors headers -> exact stored bytes by dtype, without reading tensor data.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON naming each
tensor's dtype, shape and [begin, end) offsets into the data that follows, then the data. The
header is read with strict bounds (the declared N is checked against the file size and a cap
before anything is read) and validated the way the safetensors crate validates it
(`safetensors/src/tensor.rs`, `SafeTensors::read_metadata` and `Metadata::validate`): offsets
sorted, contiguous from 0, each span exactly shape x dtype bytes, the last one ending at the end
of the file. The data itself is never opened, mapped or read.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

from ..errors import ModelError
from .limits import DEFAULT_LIMITS, ReadLimits, check_regular_file

# Bits per element of every dtype the safetensors format defines (tensor.rs, `Dtype::bitsize`),
# and the name kvcap reports bytes under (torch's names, which HF configs use too).
DTYPES: dict[str, tuple[int, str]] = {
    "BOOL": (8, "bool"),
    "U8": (8, "uint8"),
    "I8": (8, "int8"),
    "F8_E5M2": (8, "float8_e5m2"),
    "F8_E4M3": (8, "float8_e4m3fn"),
    "F8_E8M0": (8, "float8_e8m0fnu"),
    "I16": (16, "int16"),
    "U16": (16, "uint16"),
    "F16": (16, "float16"),
    "BF16": (16, "bfloat16"),
    "I32": (32, "int32"),
    "U32": (32, "uint32"),
    "F32": (32, "float32"),
    "F64": (64, "float64"),
    "I64": (64, "int64"),
    "U64": (64, "uint64"),
    "C64": (64, "complex64"),
    "F4": (4, "float4_e2m1"),
    "F6_E2M3": (6, "float6_e2m3"),
    "F6_E3M2": (6, "float6_e3m2"),
}
_MAX_NDIM = 32
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
_SHARD = re.compile(r"^model-(\d+)-of-(\d+)\.safetensors$")


class Entry(NamedTuple):
    """One tensor as a safetensors header declares it (a tuple: ~90k of them are made per big model)."""

    name: str
    dtype: str                 # the format's code: "BF16", "F8_E4M3", "I32", ...
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class Header:
    entries: tuple[Entry, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)
    data_size: int = 0         # bytes of tensor data the header accounts for


@dataclass(frozen=True)
class Stored:
    """What one model's checkpoint files hold, summed over files."""

    bytes_by_dtype: Mapping[str, int]
    tensors: int
    numel: int
    files: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_dtype.values())


def _entry(name: str, info: Any, where: str) -> Entry:
    # Hot path (a DeepSeek-V3 checkpoint declares ~90k tensors): checks first, messages only on failure.
    if not isinstance(info, dict):
        raise ModelError(f"{where}: tensor {name!r} must be described by an object")
    dtype = info.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPES:   # a list or object is no dtype (and unhashable)
        raise ModelError(f"{where}: tensor {name!r} has unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM:
        raise ModelError(f"{where}: tensor {name!r} needs a shape list of at most {_MAX_NDIM} dims")
    if not isinstance(offsets, list) or len(offsets) != 2:
        raise ModelError(f"{where}: tensor {name!r} needs data_offsets [begin, end]")
    if not all(type(d) is int and d >= 0 for d in (*shape, *offsets)):   # type(): bool is no count
        raise ModelError(f"{where}: tensor {name!r}: shape and data_offsets must be non-negative integers, "
                         f"got {shape!r} and {offsets!r}")
    begin, end = offsets
    bits = prod(shape) * DTYPES[dtype][0]
    if bits % 8:
        raise ModelError(f"{where}: tensor {name!r} of {dtype} {shape} does not fill whole bytes")
    if end < begin or end - begin != bits // 8:
        raise ModelError(
            f"{where}: tensor {name!r} declares {end - begin} bytes at [{begin}, {end}) but "
            f"{dtype} {shape} needs {bits // 8}"
        )
    return Entry(name, dtype, tuple(shape), begin, end)


def parse_header(raw: bytes, where: str, data_size: int | None = None) -> Header:
    """Parse and validate header JSON. `data_size`: bytes after the header, when known."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelError(f"{where}: safetensors header is not valid UTF-8 JSON ({str(e).splitlines()[0][:80]})") from None
    return header_from_dict(doc, where, data_size)


def header_from_dict(doc: Any, where: str, data_size: int | None = None) -> Header:
    if not isinstance(doc, dict):
        raise ModelError(f"{where}: safetensors header must be a JSON object")
    meta = doc.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ModelError(f"{where}: safetensors __metadata__ must map strings to strings")
    entries = sorted((_entry(k, v, where) for k, v in doc.items() if k != "__metadata__"),
                     key=lambda e: (e.begin, e.end))
    pos = 0
    for e in entries:
        if e.begin != pos:
            what = "overlaps the one before" if e.begin < pos else f"leaves a gap of {e.begin - pos} bytes"
            raise ModelError(f"{where}: tensor {e.name!r} at offset {e.begin} {what}")
        pos = e.end
    if data_size is not None and pos != data_size:
        if pos > data_size:
            raise ModelError(
                f"{where}: header declares {pos} bytes of tensor data but the file holds {data_size} "
                f"(truncated or corrupt)"
            )
        raise ModelError(f"{where}: {data_size - pos} bytes follow the last tensor (corrupt header)")
    return Header(tuple(entries), dict(meta), pos)


def read_header(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> Header:
    """Read one file's header: 8 + N bytes, never the tensor data."""
    cap = limits.max_safetensors_header
    check_regular_file(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            if size < 8:
                raise ModelError(f"{path}: {size} bytes is too short for a safetensors file (8-byte length first)")
            (n,) = struct.unpack("<Q", f.read(8))
            if n > cap:
                raise ModelError(
                    f"{path}: header declares {n} bytes, above the {cap}-byte safetensors header cap "
                    f"(ReadLimits.max_safetensors_header)"
                )
            if 8 + n > size:
                raise ModelError(f"{path}: header declares {n} bytes but the file holds {size - 8} after the length (truncated)")
            raw = f.read(n)
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror or e}") from None
    if len(raw) != n:
        raise ModelError(f"{path}: file shrank while reading its header")
    return parse_header(raw, str(path), size - 8 - n)


def checkpoint_files(folder: Path, limits: ReadLimits = DEFAULT_LIMITS) -> list[Path]:
    """The safetensors files a loader would read from `folder` ([] when it has none).

    transformers reads the files the index names (`modeling_utils`, `_get_resolved_checkpoint_files`),
    else `model.safetensors`. Beside those, only a complete `model-XXXXX-of-YYYYY` set or a lone
    file is unambiguous; other mixes (e.g. Mistral's `consolidated.safetensors` next to shards
    without an index) are refused rather than double counted.
    """
    index = folder / INDEX
    if index.is_file():
        from .hf import read_json
        doc = read_json(index, "safetensors index", limits.max_json, "ReadLimits.max_json")
        weight_map = doc.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelError(f"{index}: needs a non-empty 'weight_map' object")
        try:
            names = set(weight_map.values())
        except TypeError:
            raise ModelError(f"{index}: weight_map values must be file names") from None
        for fname in names:
            if not isinstance(fname, str) or Path(fname).name != fname or fname in ("", ".", ".."):
                raise ModelError(f"{index}: weight_map names {fname!r}, not a file name in the folder")
        if len(names) > limits.max_files:
            raise ModelError(f"{index}: names {len(names)} files, above the cap of {limits.max_files} (ReadLimits.max_files)")
        missing = sorted(n for n in names if not (folder / n).is_file())
        if missing:
            raise ModelError(f"{folder}: the index names {len(missing)} missing file(s), e.g. {missing[0]} (incomplete download?)")
        return [folder / n for n in sorted(names)]
    # A dangling symlink (an interrupted hub download) counts, so that reading it fails loudly.
    found = sorted(p for p in folder.glob("*.safetensors") if p.is_file() or p.is_symlink())
    if folder / SINGLE in found:
        return [folder / SINGLE]
    if len(found) <= 1:
        return found
    shards = [p for p in found if _SHARD.match(p.name)]
    if shards and len(shards) == len(found):
        total = {int(_SHARD.match(p.name).group(2)) for p in shards}
        if len(total) == 1 and len(shards) == total.pop():
            return shards
        raise ModelError(f"{folder}: an incomplete set of model-XXXXX-of-YYYYY.safetensors shards and no index")
    raise ModelError(
        f"{folder}: {len(found)} .safetensors files and no {INDEX}; cannot tell which form the "
        f"model (e.g. {found[0].name}, {found[1].name})"
    )


def summarize(headers: Iterable[tuple[str, Header]], limits: ReadLimits = DEFAULT_LIMITS) -> Stored:
    by_dtype: dict[str, int] = {}
    count = numel = 0
    files = []
    for fname, h in headers:
        files.append(fname)
        count += len(h.entries)
        if count > limits.max_tensors:
            raise ModelError(f"{fname}: more than {limits.max_tensors} tensors in all (ReadLimits.max_tensors)")
        for e in h.entries:
            name = DTYPES[e.dtype][1]
            by_dtype[name] = by_dtype.get(name, 0) + e.nbytes
            numel += e.numel
    return Stored(dict(sorted(by_dtype.items())), count, numel, tuple(files))


def read_folder(folder: Path, limits: ReadLimits = DEFAULT_LIMITS) -> Stored | None:
    """Stored bytes of the checkpoint in `folder`, or None when it holds no safetensors."""
    files = checkpoint_files(folder, limits)
    if not files:
        return None
    return summarize(((p.name, read_header(p, limits)) for p in files), limits)
