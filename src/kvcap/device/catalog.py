"""The device catalog: data/*.json from research/devices.md, looked up by forgiving names.

Three kinds of record:
- Macs (data/apple_mac.json): one row per chip bin, one entry per unified-memory option; the
  memory Metal reports is derived from RAM and macOS version by apple.py.
- iPhones/iPads (data/apple_mobile.json): RAM, the iOS working-set rule, and the app memory
  limit (jetsam) with and without the increased-memory-limit entitlement.
- Fixed devices (nvidia/amd/intel/arm.json): memory exactly as the named query reports it.

Lookup ignores case, punctuation and vendor words ("NVIDIA GeForce RTX 4090" finds `rtx-4090`,
"M2 Max 64GB" finds `m2-max-64gb`); a name that fits several entries lists them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import DeviceError
from . import apple
from .spec import BACKENDS, DeviceSpec

DATA = Path(__file__).parent / "data"
MiB = 1 << 20
# nvidia-smi total − CUDA total, rounded up past the largest reservation measured (615 MiB, H200).
CUDA_RESERVED_ESTIMATE = 640 * MiB
GiB = 1 << 30
FIXED_FILES = (("nvidia", "nvidia.json"), ("amd", "amd.json"), ("intel", "intel.json"), ("arm", "arm.json"))
# Words that name a vendor or a product line but never tell two catalog entries apart.
VENDOR_WORDS = frozenset({"apple", "nvidia", "geforce", "tesla", "amd", "radeon", "instinct", "intel"})
_CONFIDENCE_ORDER = "ABC"


@dataclass(frozen=True)
class Entry:
    """One catalog entry before the OS rule is applied (Apple) or as is (others)."""

    key: str
    name: str
    vendor: str
    record_kind: str                 # "mac", "mobile" or "fixed"
    record: Any                      # the JSON row (a chip row for Macs)
    ram_gb: int | None = None        # the memory option (Macs, phones, tablets)
    aliases: tuple[str, ...] = ()


def norm(name: str) -> str:
    """Lower case, alphanumerics only: 'M2 Max 64GB' and 'm2-max-64gb' both -> 'm2max64gb'."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _forms(name: str) -> set[str]:
    words = re.split(r"[^a-z0-9]+", name.lower())
    return {norm(name), "".join(w for w in words if w not in VENDOR_WORDS)} - {""}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


@lru_cache(maxsize=1)
def _entries() -> tuple[Entry, ...]:
    out: list[Entry] = []
    for chip in _load("apple_mac.json")["chips"]:
        for ram in chip["ram_gb"]:
            bin_ = chip.get("bin", "")
            label = f"{chip['chip']} ({bin_})" if bin_ else chip["chip"]
            aliases = (f"{chip['chip']} {ram}GB", f"{chip['chip']} {ram}", f"{chip['chip']} {bin_} {ram}GB")
            out.append(Entry(f"{_slug(chip['chip'])}-{ram}gb", f"Apple {label} {ram} GB", "apple", "mac",
                             chip, ram, aliases))
    mobile = _load("apple_mobile.json")
    for d in mobile["devices"]:
        out.append(Entry(d["key"], d["name"], "apple", "mobile", d, d["ram_gb"], tuple(d.get("aliases", ()))))
    for vendor, fname in FIXED_FILES:
        for d in _load(fname)["devices"]:
            out.append(Entry(d["key"], d["name"], vendor, "fixed", d, d.get("ram_gb"), tuple(d.get("aliases", ()))))
    return tuple(out)


@lru_cache(maxsize=1)
def _app_limits() -> dict:
    return _load("apple_mobile.json")["app_limits"]


@lru_cache(maxsize=1)
def _absent() -> tuple[tuple[str, str], ...]:
    return tuple((norm(a["name"]), a["reason"]) for a in _load("apple_mac.json")["absent"])


@lru_cache(maxsize=1)
def _index() -> dict[str, tuple[Entry, ...]]:
    idx: dict[str, list[Entry]] = {}
    for e in _entries():
        for text in (e.key, e.name, *e.aliases):
            for f in _forms(text):
                if e not in idx.setdefault(f, []):
                    idx[f].append(e)
    return {k: tuple(v) for k, v in idx.items()}


def _natural(key: str) -> list:
    """'m1-8gb' before 'm1-16gb': numbers compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _worst(*tags: str) -> str:
    return max((t for t in tags if t), key=_CONFIDENCE_ORDER.index, default="")


def _build(e: Entry, macos: int | None, wired_limit_mb: int | None) -> DeviceSpec:
    r = e.record
    if e.record_kind != "mac" and macos is not None:
        raise DeviceError(f"--macos applies to Macs; {e.key} is not one")
    if e.record_kind != "mac" and wired_limit_mb is not None:
        raise DeviceError(f"--wired-limit-mb models a macOS sysctl; {e.key} is not a Mac")
    if e.record_kind == "fixed":
        memory = r["memory_bytes"] if "memory_bytes" in r else r["memory_mib"] * MiB
        memory_source = r["memory_source"]
        if r["backend"] == "cuda" and "memory_mib" in r and r["memory_source"].startswith("nvidia-smi"):
            # Engines budget from CUDA's total (cudaDeviceProp.totalGlobalMem / cudaMemGetInfo),
            # which is nvidia-smi's total less what the driver reserves. Only an nvidia-smi
            # reading is known here, so subtract at least the largest reservation measured:
            # erring low keeps a plan from promising memory the engine will not see.
            memory -= CUDA_RESERVED_ESTIMATE
            memory_source += (f"; kvcap subtracts {CUDA_RESERVED_ESTIMATE // MiB} MiB for the driver's reservation "
                              "(estimate; measured 441-615 MiB: RTX 3090 via an MLC log, H100 and H200 on this "
                              "project's device machine)")
        return DeviceSpec(
            name=e.name, backend=r["backend"], memory_bytes=memory, key=e.key, vendor=e.vendor,
            bandwidth_gbps=r.get("bandwidth_gbps"), max_buffer_bytes=r.get("max_buffer_bytes"),
            unified=bool(r.get("unified", False)), ram_bytes=r["ram_gb"] * GiB if "ram_gb" in r else None,
            memory_source=memory_source, kind=r.get("kind", "gpu"), source=r["source"],
            confidence=r["confidence"],
        )
    ram = e.ram_gb * GiB
    if e.record_kind == "mobile":
        ws = apple.working_set(ram, os_name="ios")
        limits = _app_limits().get(r.get("app_limits", ""), {})
        source = r["source"] + (f"; app memory limit: {limits['source']}" if limits else "")
        return DeviceSpec(
            name=f"Apple {e.name}", backend="metal", memory_bytes=ws.bytes, key=e.key, vendor="apple",
            bandwidth_gbps=r.get("bandwidth_gbps"), unified=True, ram_bytes=ram, memory_source=ws.source,
            kind=r["kind"], source=source, confidence=_worst(r["confidence"], ws.confidence),
            app_memory_limit_bytes=int(limits["default_gb"] * 10**9) if limits else None,
            app_memory_limit_increased_bytes=int(limits["increased_gb"] * 10**9) if limits else None,
        )
    ws = apple.working_set(ram, macos=macos, wired_limit_mb=wired_limit_mb)
    buffers = [b for b in r.get("max_buffer", ()) if b["ram_gb"] == e.ram_gb]
    source = r["source"] + "".join(f"; {b['source']}" for b in buffers)
    cores = r.get("gpu_cores", ())
    return DeviceSpec(
        name=e.name, backend="metal", memory_bytes=ws.bytes, key=e.key, vendor="apple",
        bandwidth_gbps=r["bandwidth_gbps"], max_buffer_bytes=buffers[0]["bytes"] if buffers else None,
        unified=True, ram_bytes=ram, macos=ws.macos, memory_source=ws.source, kind="mac", source=source,
        confidence=_worst(r.get("ram_confidence", {}).get(str(e.ram_gb), r["confidence"]), ws.confidence),
        gpu_cores=cores[0] if len(cores) == 1 else None,
    )


def _find(name: str) -> Entry:
    forms = _forms(name)
    if not forms:
        raise DeviceError(f"{name!r} is not a device name; list the catalog with `kvcap devices`")
    idx = _index()
    for f in sorted(forms, key=len, reverse=True):  # the full form first, then without vendor words
        hits = idx.get(f)
        if hits and len(hits) == 1:
            return hits[0]
        if hits:
            raise DeviceError(f"device {name!r} is ambiguous; candidates: {', '.join(sorted((e.key for e in hits), key=_natural))}")
    # A part of a name ("4090", "m2 max"): unique -> that entry, several -> list them.
    close = sorted({e.key: e for f in forms for k, es in idx.items() if f in k for e in es}.items())
    if len(close) == 1:
        return close[0][1]
    if close:
        keys = sorted((k for k, _ in close), key=_natural)
        more = f" (and {len(keys) - 16} more)" if len(keys) > 16 else ""
        raise DeviceError(f"device {name!r} is ambiguous; candidates: {', '.join(keys[:16])}{more}")
    for f in forms:
        for absent, reason in _absent():
            if f.startswith(absent):
                raise DeviceError(reason)
    raise DeviceError(f"unknown device {name!r}: list the catalog with `kvcap devices`, "
                      f"or describe one with --backend and --memory")


def lookup(name: str, macos: int | None = None, wired_limit_mb: int | None = None) -> DeviceSpec:
    """The catalog device called `name`; on a Mac with the working set of `macos` (default:
    the newest rule) or of `sysctl iogpu.wired_limit_mb=wired_limit_mb`."""
    return _build(_find(name), macos, wired_limit_mb)


def entries(macos: int | None = None) -> tuple[DeviceSpec, ...]:
    """Every catalog device, Macs under the `macos` rule (default: the newest)."""
    return tuple(_build(e, macos if e.record_kind == "mac" else None, None) for e in _entries())


def vendors() -> tuple[str, ...]:
    return tuple(dict.fromkeys(e.vendor for e in _entries()))


__all__ = ["lookup", "entries", "vendors", "norm", "BACKENDS"]
