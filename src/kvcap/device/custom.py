"""A device described on the command line: `--backend metal --memory 21845MiB`."""

from __future__ import annotations

from ..errors import DeviceError
from ..units import parse_size
from ..errors import OptionsError
from .spec import BACKENDS, DeviceSpec


def custom_device(backend: str, memory: str | int, name: str = "", count: int = 1) -> DeviceSpec:
    """`memory` is what the backend reports (on Metal: recommendedMaxWorkingSetSize)."""
    if backend not in BACKENDS:
        raise DeviceError(f"unknown backend {backend!r}; supported: {', '.join(BACKENDS)}")
    try:
        size = parse_size(memory, "--memory")
    except OptionsError as e:
        raise DeviceError(str(e)) from None
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise DeviceError(f"device count must be an integer of at least 1, got {count!r}")
    return DeviceSpec(
        name=name or f"custom {backend} device", backend=backend, memory_bytes=size, count=count,
        unified=backend == "metal", memory_source="given with --memory",
        kind="gpu" if backend != "cpu" else "cpu",
    )
