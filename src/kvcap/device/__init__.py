"""Devices: the catalog, custom devices from flags, and (optionally) the local device."""

from __future__ import annotations

import dataclasses
from importlib.util import find_spec

from ..errors import DeviceError
from .custom import custom_device
from .spec import BACKENDS, DeviceSpec


def get_device(name: str | None = None, *, backend: str | None = None, memory: str | int | None = None,
               macos: int | None = None, wired_limit_mb: int | None = None, count: int = 1) -> DeviceSpec:
    """A catalog device by name, the machine's own (`"local"`), or a custom one from backend + memory.

    With a name and `memory`, the catalog device is kept (bandwidth, buffer limits) and its
    memory replaced; with a name and `backend`, the backend is replaced.
    """
    if name is None:
        if backend is None or memory is None:
            raise DeviceError("give --device NAME (see `kvcap devices`) or both --backend and --memory")
        return custom_device(backend, memory, count=count)
    if name.strip().lower() == "local":
        # The machine kvcap runs on (issue 6 item 5); optional libraries imported only here.
        from .detect import detect_local
        dev = detect_local(macos=macos, wired_limit_mb=wired_limit_mb)
    else:
        if find_spec(f"{__name__}.catalog") is None:
            raise DeviceError("the device catalog is not available; use --backend and --memory")
        from .catalog import lookup
        dev = lookup(name, macos=macos, wired_limit_mb=wired_limit_mb)
    if memory is not None:
        dev = dataclasses.replace(dev, memory_bytes=custom_device(dev.backend, memory).memory_bytes,
                                  memory_source="given with --memory")
    if backend is not None:
        if backend not in BACKENDS:
            raise DeviceError(f"unknown backend {backend!r}; supported: {', '.join(BACKENDS)}")
        dev = dataclasses.replace(dev, backend=backend)
    if count != 1:
        if count < 1:
            raise DeviceError(f"device count must be at least 1, got {count}")
        dev = dataclasses.replace(dev, count=count)
    return dev


__all__ = ["BACKENDS", "DeviceSpec", "get_device", "custom_device"]
