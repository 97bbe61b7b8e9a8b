"""kvcap devices: list the device catalog (memory as each backend reports it)."""

from __future__ import annotations

import argparse
import dataclasses

from ..errors import OptionsError
from . import common

HELP = "list the device catalog: memory as the backend reports it, RAM, bandwidth, max buffer"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vendor", help="only this vendor: apple, nvidia, amd, intel or arm")
    p.add_argument("--backend", help="only this backend: cuda, rocm, metal, vulkan, opencl, webgpu or cpu")
    p.add_argument("--macos", type=int, choices=(13, 14, 15, 26),
                   help="macOS major for the Apple working-set rule (default: newest)")
    common.add_json(p)


def select(vendor: str | None, backend: str | None, macos: int | None):
    from ..device import catalog
    from ..device.spec import BACKENDS

    if vendor is not None and vendor.lower() not in catalog.vendors():
        raise OptionsError(f"unknown vendor {vendor!r}; the catalog has: {', '.join(catalog.vendors())}")
    if backend is not None and backend.lower() not in BACKENDS:
        raise OptionsError(f"unknown backend {backend!r}; supported: {', '.join(BACKENDS)}")
    return [d for d in catalog.entries(macos=macos)
            if (vendor is None or d.vendor == vendor.lower()) and (backend is None or d.backend == backend.lower())]


def _size(n: int | None) -> str:
    from ..units import fmt_bytes
    return fmt_bytes(n) if n else "-"


def _nominal(d) -> bool:
    """A catalog size from the spec sheet, not from the backend (memory_source says NOMINAL)."""
    return d.memory_source.startswith("NOMINAL")


def render(devices) -> str:
    head = ("KEY", "NAME", "BACKEND", "MEMORY", "RAM", "GB/s", "MAX BUFFER", "CONF")
    rows = [head] + [(d.key, d.name, d.backend, ("~" if _nominal(d) else "") + _size(d.memory_bytes), _size(d.ram_bytes),
                      f"{d.bandwidth_gbps:g}" if d.bandwidth_gbps else "-", _size(d.max_buffer_bytes),
                      d.confidence or "-") for d in devices]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    right = {3, 4, 5, 6}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    lines.append("")
    macs = [d for d in devices if d.kind == "mac"]
    rule = (f"; on Macs Metal's recommendedMaxWorkingSetSize under the macOS {macs[0].macos} rule "
            f"(--macos 15 for the older one)") if macs else ""
    lines.append(f"MEMORY is what the backend reports{rule}. CONF: devices.md's confidence. Sources: --json.")
    if any(_nominal(d) for d in devices):
        lines.append("~ nominal size from the spec sheet; the backend reports somewhat less (use --memory).")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    devices = select(args.vendor, args.backend, args.macos)
    if args.json:
        common.emit_json({"devices": [dataclasses.asdict(d) for d in devices]})
    else:
        print(render(devices) if devices else "no catalog device matches")
    return 0
