"""Request parameters -> the same objects the CLI builds from its flags, checked at the door.

Only catalog names and upload tokens name a model; only catalog names or backend + memory name a
device: no parameter reaches the file system, the HF cache, the hub or the local-device probe.
Engine options are `o.NAME=VALUE`, parsed like the CLI's `--set NAME=VALUE`
(commands/common.py `parse_value`); the engine itself refuses names it does not have.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping
from urllib.parse import parse_qsl

from ..errors import DeviceError, ModelError, OptionsError

MAX_QUERY = 8192          # characters in a query string
MAX_FIELDS = 64
MAX_VALUE = 256           # characters in one value
MAX_NUMBER = 1 << 53      # larger numbers are not meaningful here (and not exact in JSON)
MAX_MEMORY = 1 << 50      # 1 PiB: above it a "device" is a typo
MAX_COUNT = 1024          # identical devices on a host
OPTION_PREFIX = "o."
_OPTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# A name a reader would treat as a path (load_model tries the disk first): refused here.
_PATHLIKE = re.compile(r"[\\\x00]|\.\.|^[./~]|\.(json|gguf|safetensors)$|^[A-Za-z]:", re.I)


def parse(query: str) -> dict[str, str]:
    """A query string -> {name: value}, one value per name, bounded in size."""
    if len(query) > MAX_QUERY:
        raise OptionsError(f"the query string is {len(query)} characters, above the limit of {MAX_QUERY}")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except UnicodeDecodeError:
        raise OptionsError("the query string is not UTF-8") from None
    except ValueError:
        raise OptionsError(f"more than {MAX_FIELDS} query parameters") from None
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in out:
            raise OptionsError(f"parameter {k[:40]!r} is given twice")
        if len(v) > MAX_VALUE:
            raise OptionsError(f"parameter {k[:40]!r} is {len(v)} characters, above the limit of {MAX_VALUE}")
        if any(ord(c) < 32 for c in v):
            raise OptionsError(f"parameter {k[:40]!r} holds control characters")
        out[k] = v
    return out


def _int(q: Mapping[str, str], key: str, lo: int, hi: int) -> int | None:
    text = q.get(key, "").strip()
    if not text:
        return None
    if not re.fullmatch(r"-?[0-9]{1,16}", text):
        raise OptionsError(f"{key} must be a whole number, got {text[:40]!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise OptionsError(f"{key} must be {lo} to {hi:,}, got {value:,}")
    return value


def model(q: Mapping[str, str], uploads):
    """`model=NAME` (catalog) or `model=upload:TOKEN` -> ModelSpec."""
    from ..model import from_catalog
    name = q.get("model", "").strip()
    if not name:
        raise ModelError("choose a model: a catalog name (search the catalog) or an upload")
    if name.startswith("upload:"):
        return uploads.get(name[len("upload:"):]).spec
    if _PATHLIKE.search(name) or name.count("/") > 1 or ":" in name:
        raise ModelError(f"{name[:80]!r} looks like a path or URL; the web page plans catalog models and "
                         f"uploaded files only (use `kvcap plan PATH` for a file on this machine)")
    return from_catalog(name)


def device(q: Mapping[str, str]):
    """`device=NAME` (catalog), or `backend=B&memory=24GiB` (custom), with optional `memory`
    (replaces a catalog device's), `count`, `macos`, `wired_limit_mb` -> DeviceSpec."""
    from ..device import get_device
    from ..units import parse_size
    name = q.get("device", "").strip() or None
    backend = q.get("backend", "").strip() or None
    memory_text = q.get("memory", "").strip() or None
    if name is not None and name.lower() == "local":
        raise DeviceError("the web page plans catalog or custom devices; `kvcap plan --device local` reads this machine's")
    memory = None
    if memory_text is not None:
        try:
            memory = parse_size(memory_text, "memory")
        except OptionsError as e:
            raise DeviceError(str(e)) from None
        if memory > MAX_MEMORY:
            raise DeviceError(f"memory {memory_text!r} is above 1 PiB; give the memory of one device")
    count = _int(q, "count", 1, MAX_COUNT) or 1
    macos = _int(q, "macos", 14, 26)
    if macos is not None and macos not in (14, 15, 26):
        raise DeviceError(f"macos must be 14, 15 or 26, got {macos}")
    wired = _int(q, "wired_limit_mb", 1, MAX_MEMORY >> 20)
    if name is None and backend is None and memory is None:
        raise DeviceError("choose a device: a catalog name (search the catalog) or a backend and its memory")
    return get_device(name, backend=backend, memory=memory, macos=macos, wired_limit_mb=wired, count=count)


def _option_value(name: str, text: str) -> Any:
    from ..commands.common import parse_value
    value = parse_value(text.strip())
    if isinstance(value, float) and not math.isfinite(value):
        raise OptionsError(f"option {name} must be a finite number, got {text[:40]!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        raise OptionsError(f"option {name} = {text[:40]} is out of range (at most 2^53)")
    return value


def engine(q: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """`engine=E` (default mlc) and its options `o.NAME=VALUE` (empty values are left out)."""
    name = q.get("engine", "").strip() or "mlc"
    options: dict[str, Any] = {}
    for key, text in q.items():
        if not key.startswith(OPTION_PREFIX):
            continue
        opt = key[len(OPTION_PREFIX):]
        if not _OPTION_NAME.match(opt):
            raise OptionsError(f"{key[:40]!r} is not an option name (letters, digits and _)")
        if text.strip():
            options[opt] = _option_value(opt, text)
    return name, options


def engines_list(q: Mapping[str, str], key: str = "engines") -> list[str] | None:
    text = q.get(key, "").strip()
    if not text:
        return None
    names = [e.strip() for e in text.split(",") if e.strip()]
    if len(names) > 12:
        raise OptionsError(f"{key}: at most 12 engines")
    return names


def context_and_concurrency(q: Mapping[str, str]) -> tuple[int | None, int | None]:
    from ..units import parse_count
    text = q.get("context", "").strip()
    context = parse_count(text, "context") if text else None
    if context is not None and context > 1 << 32:
        raise OptionsError(f"context {text!r} is above 2^32 tokens")
    return context, _int(q, "concurrency", 1, 1 << 20)
