"""The device the probe runs on, through torch: identity, memory, timing, out-of-memory.

torch is the probe's optional extra; `require_torch` turns its absence into one line naming the
extra. Timing uses device events where the backend has them (CUDA/ROCm, XPU, MPS) and a
synchronised host clock on the CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import DeviceError, ProbeError

EXTRA_HINT = "pip install 'kvcap[probe]'"


def require_torch():
    try:
        import torch
    except ImportError:
        raise ProbeError(f"the probe needs torch (and triton on CUDA/ROCm): {EXTRA_HINT}") from None
    return torch


def is_oom(exc: BaseException) -> bool:
    """An allocation failure, whatever the backend calls it."""
    torch = require_torch()
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "failed to allocate" in text
                                              or "can't allocate memory" in text)


@dataclass
class Device:
    torch_device: Any
    name: str
    backend: str                 # kvcap's word: cuda, rocm, metal, xpu, cpu
    total_memory_bytes: int
    detail: str = ""

    @property
    def type(self) -> str:
        return self.torch_device.type

    def free_bytes(self) -> int:
        """Memory the backend says is free now (on CPU and MPS: an estimate from the OS)."""
        torch = require_torch()
        t = self.type
        if t == "cuda":
            return int(torch.cuda.mem_get_info(self.torch_device)[0])
        if t == "xpu" and hasattr(torch.xpu, "mem_get_info"):
            return int(torch.xpu.mem_get_info(self.torch_device)[0])
        if t == "mps":
            return max(0, int(torch.mps.recommended_max_memory()) - int(torch.mps.driver_allocated_memory()))
        return _host_available()

    def synchronize(self) -> None:
        torch = require_torch()
        t = self.type
        if t == "cuda":
            torch.cuda.synchronize(self.torch_device)
        elif t == "mps":
            torch.mps.synchronize()
        elif t == "xpu":
            torch.xpu.synchronize(self.torch_device)

    def release(self) -> None:
        """Give cached blocks back to the device, so the next pool size starts clean."""
        import gc
        torch = require_torch()
        gc.collect()
        t = self.type
        if t == "cuda":
            torch.cuda.empty_cache()
        elif t == "mps":
            torch.mps.empty_cache()
        elif t == "xpu":
            torch.xpu.empty_cache()

    def time_steps(self, fn: Callable[[], Any], repeats: int, warmup: int) -> list[float]:
        """Seconds per call of `fn`, one per repeat, after `warmup` untimed calls."""
        torch = require_torch()
        for _ in range(warmup):
            fn()
        self.synchronize()
        t = self.type
        events = {"cuda": getattr(torch.cuda, "Event", None), "xpu": getattr(getattr(torch, "xpu", None), "Event", None),
                  "mps": getattr(getattr(torch, "mps", None), "event", None) and getattr(torch.mps.event, "Event", None)}
        Event = events.get(t)
        if Event is None:
            out = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                self.synchronize()
                out.append(time.perf_counter() - start)
            return out
        pairs = [(Event(enable_timing=True), Event(enable_timing=True)) for _ in range(repeats)]
        for a, b in pairs:
            a.record()
            fn()
            b.record()
        self.synchronize()
        return [a.elapsed_time(b) / 1e3 for a, b in pairs]


def _host_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def _host_total() -> int:
    import os
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def open_device(spec: str = "auto") -> Device:
    """'cuda', 'cuda:1', 'mps', 'xpu', 'cpu' or 'auto' (the first accelerator, else cpu)."""
    torch = require_torch()
    text = (spec or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            text = "cuda:0"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            text = "mps"
        elif hasattr(torch, "xpu") and torch.xpu.is_available():
            text = "xpu:0"
        else:
            text = "cpu"
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise DeviceError(f"unknown device {spec!r}; use cuda[:N], mps, xpu[:N] or cpu") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r}: torch sees no CUDA/ROCm GPU here; try --device cpu")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r}: only {torch.cuda.device_count()} GPU(s) here (cuda:0..)")
        dev = torch.device("cuda", index)
        props = torch.cuda.get_device_properties(index)
        backend = "rocm" if getattr(torch.version, "hip", None) else "cuda"
        cap = f"sm_{props.major}{props.minor}" if backend == "cuda" else getattr(props, "gcnArchName", "")
        detail = f"{cap}, {props.multi_processor_count} SMs, torch {torch.__version__}"
        return Device(dev, props.name, backend, int(props.total_memory), detail)
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"device {spec!r}: MPS is not available here; try --device cpu")
        # Metal budgets the recommended working set, not the unified RAM (research/devices.md).
        return Device(dev, "Apple GPU (MPS)", "metal", int(torch.mps.recommended_max_memory()),
                      f"torch {torch.__version__}")
    if dev.type == "xpu":
        if not (hasattr(torch, "xpu") and torch.xpu.is_available()):
            raise DeviceError(f"device {spec!r}: torch sees no XPU here; try --device cpu")
        index = dev.index or 0
        props = torch.xpu.get_device_properties(index)
        return Device(torch.device("xpu", index), props.name, "xpu", int(props.total_memory),
                      f"torch {torch.__version__}")
    if dev.type == "cpu":
        import platform
        return Device(dev, platform.processor() or platform.machine() or "cpu", "cpu", _host_total(),
                      f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    raise DeviceError(f"unsupported device {spec!r}; use cuda[:N], mps, xpu[:N] or cpu")


def copy_bandwidth(device: Device, nbytes: int, repeats: int = 20, warmup: int = 3) -> float:
    """GB/s (decimal) of a device-to-device copy, counting bytes read plus bytes written."""
    torch = require_torch()
    n = max(1, nbytes // 2)
    src = torch.empty(n, dtype=torch.float16, device=device.torch_device).normal_()
    dst = torch.empty_like(src)
    try:
        times = device.time_steps(lambda: dst.copy_(src), repeats, warmup)
    finally:
        del src, dst
        device.release()
    import statistics
    return 2 * n * 2 / statistics.median(times) / 1e9
