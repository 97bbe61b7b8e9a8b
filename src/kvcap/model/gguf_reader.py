"""A bounded GGUF reader: key/value metadata and every tensor's type and shape, never the data.

The `gguf` package's GGUFReader memory-maps the whole file and materialises every metadata
array (a 150k-entry token list becomes 150k numpy arrays), so kvcap reads the format itself:
little-endian, version 2 or 3, checked the way llama.cpp checks it (`ggml/src/gguf.cpp`,
`gguf_init_from_file_impl`): known value and tensor types, at most 4 dims, rows a whole number of
blocks, offsets laid out in order with `general.alignment` padding, tensor data inside the file.
Long arrays (tokens, merges, scores) are skipped, not kept: only their length is recorded.
Everything before the tensor data is bounded by `ReadLimits.max_gguf_metadata`.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from ..errors import ModelError
from .limits import DEFAULT_LIMITS, ReadLimits, check_regular_file

MAGIC = b"GGUF"
# ggml_type id -> (name as ggml prints it, elements per block, bytes per block).
# `ggml/src/ggml.c` type_traits[] and the static_asserts in `ggml/src/ggml-common.h`; ids with no
# entry (4, 5, 31-33, 36-38) are types removed from ggml and refused by gguf.cpp.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20),
    6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34),
    9: ("q8_1", 32, 36),  # 2 x f16 (d, s) + 32 x i8; gguf-py's 40 predates the f16 scales
    10: ("q2_K", 256, 84), 11: ("q3_K", 256, 110), 12: ("q4_K", 256, 144), 13: ("q5_K", 256, 176),
    14: ("q6_K", 256, 210), 15: ("q8_K", 256, 292),
    16: ("iq2_xxs", 256, 66), 17: ("iq2_xs", 256, 74), 18: ("iq3_xxs", 256, 98), 19: ("iq1_s", 256, 50),
    20: ("iq4_nl", 32, 18), 21: ("iq3_s", 256, 110), 22: ("iq2_s", 256, 82), 23: ("iq4_xs", 256, 136),
    24: ("i8", 1, 1), 25: ("i16", 1, 2), 26: ("i32", 1, 4), 27: ("i64", 1, 8), 28: ("f64", 1, 8),
    29: ("iq1_m", 256, 56), 30: ("bf16", 1, 2), 34: ("tq1_0", 256, 54), 35: ("tq2_0", 256, 66),
    39: ("mxfp4", 32, 17),   # e8m0 scale + 16 bytes of nibbles
    40: ("nvfp4", 64, 36),   # 4 x ue4m3 sub-block scales + 32 bytes of nibbles
    41: ("q1_0", 128, 18),
}
# general.file_type (llama_ftype, `include/llama.h`) -> the name llama.cpp's quantize tool uses.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
    39: "NVFP4", 40: "Q1_0",
}

# GGUF value types (gguf.cpp, `enum gguf_type`): id -> (struct code, size); 8 = string, 9 = array.
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("B", 1), 1: ("b", 1), 2: ("H", 2), 3: ("h", 2), 4: ("I", 4), 5: ("i", 4), 6: ("f", 4),
    7: ("?", 1), 10: ("Q", 8), 11: ("q", 8), 12: ("d", 8),
}
_STRING, _ARRAY = 8, 9
GGML_MAX_DIMS = 4
GGML_MAX_NAME = 64
# Numeric arrays up to this length are kept (per-layer head counts, window patterns); longer
# ones, and string arrays beyond KEEP_STRINGS (tokenizer lists), are skipped: only the length is kept.
KEEP_ARRAY = 1 << 16
KEEP_STRINGS = 1 << 10
_INT64_MAX = (1 << 63) - 1
_SPLIT = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$")


@dataclass(frozen=True)
class SkippedArray:
    """A metadata array too long to keep: its element type and length."""

    type: int
    count: int


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]   # ggml order: ne[0] is the row (innermost) length
    type: str                # ggml type name: "q4_K", "f16", ...
    nbytes: int


@dataclass(frozen=True)
class GGUFFile:
    path: str
    version: int
    metadata: Mapping[str, Any] = field(repr=False)
    tensors: tuple[GGUFTensor, ...] = field(repr=False)
    data_offset: int = 0

    @property
    def bytes_by_type(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.type] = out.get(t.type, 0) + t.nbytes
        return dict(sorted(out.items()))


def tensor_nbytes(name: str, type_id: int, shape: tuple[int, ...]) -> tuple[str, int]:
    """(type name, bytes) of one tensor, as `ggml_nbytes` computes it for a contiguous tensor."""
    info = GGML_TYPES.get(type_id)
    if info is None:
        raise ModelError(f"tensor {name!r} has unknown or removed ggml type {type_id}")
    tname, block, size = info
    if shape[0] % block:
        raise ModelError(f"tensor {name!r} of type {tname} has {shape[0]} elements per row, not a multiple of {block}")
    return tname, shape[0] // block * size * prod(shape[1:])


class _Reader:
    """Reads from a file with every length checked against the file size and the cap."""

    def __init__(self, f: BinaryIO, path: str, size: int, cap: int, max_array: int):
        self.f, self.path, self.size, self.cap, self.pos = f, path, size, cap, 0
        self.max_array = max_array

    def _need(self, n: int, what: str) -> None:
        end = self.pos + n
        if end > self.size:
            raise ModelError(f"{self.path}: truncated GGUF: {what} needs {n} bytes at offset {self.pos}, the file has {self.size}")
        if end > self.cap:
            raise ModelError(
                f"{self.path}: GGUF metadata runs past the {self.cap}-byte cap at {what} "
                f"(ReadLimits.max_gguf_metadata)"
            )

    def read(self, n: int, what: str) -> bytes:
        self._need(n, what)
        data = self.f.read(n)
        if len(data) != n:
            raise ModelError(f"{self.path}: file shrank while reading {what}")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        self._need(n, what)
        self.f.seek(n, 1)
        self.pos += n

    def scalar(self, code: str, size: int, what: str) -> Any:
        return struct.unpack("<" + code, self.read(size, what))[0]

    def u32(self, what: str) -> int:
        return self.scalar("I", 4, what)

    def u64(self, what: str) -> int:
        return self.scalar("Q", 8, what)

    def skip_strings(self, count: int, what: str) -> None:
        """Skip `count` GGUF strings, reading lengths from 1 MiB chunks (a per-string read and
        seek costs ~2 us; a 2M-entry array must not take seconds)."""
        unpack = struct.Struct("<Q").unpack_from
        buf, off, base = b"", 0, self.pos   # buf[0] sits at file offset `base`
        size = 0
        limit = min(self.size, self.cap)
        left = count
        while left:
            # Fast path: walk the strings that lie wholly inside the buffer.
            while left and off + 8 <= size:
                end = off + 8 + unpack(buf, off)[0]
                if end > size:
                    break
                off = end
                left -= 1
            if not left:
                break
            if off + 8 <= size:        # a string running past the buffer: seek over its rest
                n = unpack(buf, off)[0]
                self.pos = base + off + 8
                self._need(n, what)
                base, buf, off, size = base + off + 8 + n, b"", 0, 0
                self.f.seek(base)
                left -= 1
                continue
            buf, base, off = buf[off:], base + off, 0
            buf += self.f.read(max(0, min(1 << 20, limit - base - len(buf))))
            size = len(buf)
            if size < 8:
                self.pos = base
                self._need(8, what)
        self.pos = base + off
        self.f.seek(self.pos)

    def string(self, what: str, keep: bool = True) -> str:
        n = self.u64(what)
        if not keep:
            self.skip(n, what)
            return ""
        return self.read(n, what).decode("utf-8", errors="replace")


def _value(r: _Reader, vtype: int, key: str) -> Any:
    if vtype in _SCALARS:
        code, size = _SCALARS[vtype]
        return r.scalar(code, size, f"value of {key!r}")
    if vtype == _STRING:
        return r.string(f"value of {key!r}")
    if vtype != _ARRAY:
        raise ModelError(f"{r.path}: key {key!r} has unknown GGUF value type {vtype}")
    etype, count = r.u32(f"array type of {key!r}"), r.u64(f"array length of {key!r}")
    if etype == _ARRAY:
        raise ModelError(f"{r.path}: key {key!r} is an array of arrays, which GGUF readers do not support")
    if etype != _STRING and etype not in _SCALARS:
        raise ModelError(f"{r.path}: key {key!r} is an array of unknown GGUF type {etype}")
    least = 8 if etype == _STRING else _SCALARS[etype][1]
    r._need(count * least, f"array {key!r} of {count} elements")  # checked before looping
    if count > r.max_array:
        raise ModelError(f"{r.path}: array {key!r} declares {count} elements, above the cap of {r.max_array} "
                         f"(ReadLimits.max_gguf_array)")
    if etype == _STRING:
        if count > KEEP_STRINGS:
            r.skip_strings(count, f"an element of {key!r}")
            return SkippedArray(etype, count)
        return tuple(r.string(f"an element of {key!r}") for _ in range(count))
    code, size = _SCALARS[etype]
    if count > KEEP_ARRAY:
        r.skip(count * size, f"array {key!r}")
        return SkippedArray(etype, count)
    return struct.unpack(f"<{count}{code}", r.read(count * size, f"array {key!r}"))


def read_gguf(path: str | Path, limits: ReadLimits = DEFAULT_LIMITS) -> GGUFFile:
    """Metadata and tensor infos of one GGUF file; the tensor data is only bounds-checked."""
    p = str(path)
    check_regular_file(Path(p))
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            return _parse(_Reader(f, p, size, limits.max_gguf_metadata, limits.max_gguf_array), limits)
    except OSError as e:
        raise ModelError(f"cannot read {p}: {e.strerror or e}") from None


def _parse(r: _Reader, limits: ReadLimits) -> GGUFFile:
    if r.size < 4 or r.read(4, "magic") != MAGIC:
        raise ModelError(f"{r.path} is not a GGUF file (no 'GGUF' magic)")
    version = r.u32("version")
    if version == 1:
        raise ModelError(f"{r.path}: GGUF version 1 is no longer supported by llama.cpp; re-convert the model")
    if version not in (2, 3):
        if version & 0xFFFF == 0:
            raise ModelError(f"{r.path}: a big-endian GGUF file; only little-endian files are supported")
        raise ModelError(f"{r.path}: unknown GGUF version {version} (supported: 2, 3)")
    n_tensors, n_kv = r.u64("tensor count"), r.u64("key/value count")
    # Each key/value takes at least 8 + 4 + 1 bytes, each tensor info at least 8 + 4 + 4 + 8.
    r._need(n_kv * 13 + n_tensors * 24, f"{n_kv} key/values and {n_tensors} tensor infos")
    if n_tensors > limits.max_gguf_tensors:
        raise ModelError(f"{r.path}: declares {n_tensors} tensors, above the cap of {limits.max_gguf_tensors} "
                         f"(ReadLimits.max_gguf_tensors)")
    if n_kv > limits.max_gguf_keys:
        raise ModelError(f"{r.path}: declares {n_kv} metadata keys, above the cap of {limits.max_gguf_keys} "
                         f"(ReadLimits.max_gguf_keys)")
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.string("a metadata key")
        if key in meta:
            raise ModelError(f"{r.path}: duplicate metadata key {key!r}")
        meta[key] = _value(r, r.u32(f"type of {key!r}"), key)
    alignment = meta.get("general.alignment", 32)
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ModelError(f"{r.path}: general.alignment must be a power of two, got {alignment!r}")

    infos = []
    names = set()
    for _ in range(n_tensors):
        name = r.string("a tensor name")
        if len(name.encode()) >= GGML_MAX_NAME:
            raise ModelError(f"{r.path}: tensor name {name[:80]!r} is longer than {GGML_MAX_NAME - 1} bytes")
        if name in names:
            raise ModelError(f"{r.path}: duplicate tensor name {name!r}")
        names.add(name)
        n_dims = r.u32(f"dims of {name!r}")
        if n_dims == 0 or n_dims > GGML_MAX_DIMS:
            raise ModelError(f"{r.path}: tensor {name!r} has {n_dims} dims (1 to {GGML_MAX_DIMS} allowed)")
        shape = tuple(r.u64(f"shape of {name!r}") for _ in range(n_dims))
        if any(d > _INT64_MAX for d in shape) or prod(shape) > _INT64_MAX:
            raise ModelError(f"{r.path}: tensor {name!r} declares an impossible shape {list(shape)}")
        type_id = r.u32(f"type of {name!r}")
        offset = r.u64(f"offset of {name!r}")
        tname, nbytes = tensor_nbytes(name, type_id, shape)
        infos.append((name, shape, tname, nbytes, offset))

    data_offset = (r.pos + alignment - 1) // alignment * alignment if n_tensors else r.pos
    data_size = r.size - data_offset
    expected = 0
    tensors = []
    for name, shape, tname, nbytes, offset in infos:
        if offset != expected:
            raise ModelError(f"{r.path}: tensor {name!r} has offset {offset}, expected {expected}")
        if offset + nbytes > data_size:
            raise ModelError(
                f"{r.path}: tensor {name!r} ({tname} {list(shape)}, {nbytes} bytes at data offset {offset}) "
                f"runs past the end of the file ({max(data_size, 0)} data bytes): truncated or corrupt"
            )
        expected += (nbytes + alignment - 1) // alignment * alignment
        tensors.append(GGUFTensor(name, shape, tname, nbytes))
    return GGUFFile(r.path, version, meta, tuple(tensors), data_offset)


def read_gguf_model(path: str | Path, limits: ReadLimits = DEFAULT_LIMITS) -> tuple[GGUFFile, tuple[GGUFTensor, ...], tuple[str, ...]]:
    """A GGUF model that may be split (`name-00001-of-00003.gguf`, llama.cpp's `llama_split_prefix`):
    the first file's metadata and the tensors of every part."""
    first = read_gguf(path, limits)
    count = first.metadata.get("split.count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ModelError(f"{path}: split.count must be a positive integer, got {count!r}")
    if count == 1:
        return first, first.tensors, (first.path,)
    m = _SPLIT.match(Path(path).name)
    if not m or first.metadata.get("split.no", 0) != 0:
        raise ModelError(f"{path}: part of a {count}-file split GGUF; give its first file (…-00001-of-{count:05d}.gguf)")
    if count > limits.max_files:
        raise ModelError(f"{path}: split into {count} files, above the cap of {limits.max_files} (ReadLimits.max_files)")
    tensors = list(first.tensors)
    files = [first.path]
    for i in range(2, count + 1):
        part = Path(path).with_name(f"{m.group(1)}-{i:05d}-of-{count:05d}.gguf")
        if not part.is_file():
            raise ModelError(f"{path}: split GGUF part {part.name} is missing")
        g = read_gguf(part, limits)
        if g.metadata.get("split.no") != i - 1:
            raise ModelError(f"{part}: split.no is {g.metadata.get('split.no')!r}, expected {i - 1}")
        tensors += g.tensors
        files.append(g.path)
        if len(tensors) > limits.max_tensors:
            raise ModelError(f"{path}: more than {limits.max_tensors} tensors in all (ReadLimits.max_tensors)")
    return first, tuple(tensors), tuple(files)
