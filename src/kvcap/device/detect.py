"""`--device local`: the device of the machine kvcap runs on, read live.

Tried in order, each optional and imported only here:
- Apple (macOS on Apple silicon): `sysctl hw.memsize` and `iogpu.wired_limit_mb`; the live
  working set from PyObjC `Metal`, `mlx.core` or `torch.mps.recommended_max_memory()`, else the
  working-set rule of apple.py for the running macOS (research/devices.md §2.2, §7).
- NVIDIA: nvidia-ml-py (`pynvml`), then torch.cuda, then the `nvidia-smi` command.
- ROCm and Intel XPU: torch.
- Otherwise the CPU with the system RAM, saying why no GPU was used.

The pure builders (`nvidia_device`, `apple_device`, `cpu_device`) and the parsers take plain
values, so tests can drive every path with injected readings.
"""

from __future__ import annotations

import importlib
import os
import platform as _platform
import subprocess
import sys
from types import ModuleType
from typing import Callable

from ..errors import DeviceError
from . import apple
from .spec import DeviceSpec

MiB = 1 << 20
GiB = 1 << 30
Runner = Callable[[list[str]], "str | None"]
Importer = Callable[[str], ModuleType]


def run_command(cmd: list[str]) -> str | None:
    """stdout of `cmd`, or None when it is missing or fails (never raises)."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def parse_sysctl_int(text: str | None) -> int | None:
    """`sysctl -n hw.memsize` prints '17179869184\\n'; an unknown oid prints nothing or an error."""
    if text is None:
        return None
    value = text.strip()
    if ":" in value:  # "hw.memsize: 17179869184" (without -n)
        value = value.rsplit(":", 1)[1].strip()
    return int(value) if value.isdigit() else None


def parse_nvidia_smi(text: str | None) -> list[tuple[str, int]]:
    """`nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` -> [(name, MiB)]."""
    rows = []
    for line in (text or "").splitlines():
        name, sep, mib = line.rpartition(",")
        mib = mib.strip().removesuffix("MiB").strip()
        if sep and name.strip() and mib.isdigit():
            rows.append((name.strip(), int(mib)))
    return rows


def _catalog_match(name: str) -> DeviceSpec | None:
    from .catalog import lookup
    try:
        return lookup(name)
    except DeviceError:
        return None


def nvidia_device(name: str, total: int, reserved: int | None, count: int, how: str) -> DeviceSpec:
    """A CUDA device from NVML's reading. CUDA's totalGlobalMem = NVML total - reserved (measured
    equal on an H100 and an H200, driver 580.159.04); without `reserved` the NVML total is kept."""
    if reserved is not None:
        memory = total - reserved
        text = (f"{how}: NVML total {total} B - {reserved} B reserved by the driver = "
                f"cudaDeviceProp.totalGlobalMem (live reading)")
    else:
        memory = total
        text = (f"{how}: NVML/nvidia-smi total {total} B (live reading); CUDA's totalGlobalMem is "
                f"0.3-0.7 GiB lower (the driver's reservation, not reported here)")
    return _gpu(name, "cuda", memory, count, text)


def _gpu(name: str, backend: str, memory: int, count: int, text: str) -> DeviceSpec:
    match = _catalog_match(name)
    source = f"detected on this machine; bandwidth from catalog entry {match.key}" if match else \
        "detected on this machine (no catalog entry matched its name)"
    return DeviceSpec(name=f"{name} (local)", backend=backend, memory_bytes=memory, key="local",
                      vendor=match.vendor if match else "", count=count,
                      bandwidth_gbps=match.bandwidth_gbps if match else None, memory_source=text,
                      kind="gpu", source=source, unified=bool(match and match.unified))


def apple_device(brand: str, ram_bytes: int, os_major: int | None, *, wired_sysctl_mb: int | None = None,
                 metal_working_set: int | None = None, metal_how: str = "",
                 macos: int | None = None, wired_limit_mb: int | None = None) -> DeviceSpec:
    """A Mac from its sysctl readings. Preference (devices.md §2.2): a what-if the user asked for
    (--macos / --wired-limit-mb), a nonzero live iogpu.wired_limit_mb, a live Metal reading, the
    rule for the running macOS."""
    note = ""
    if macos is not None or wired_limit_mb is not None:
        ws = apple.working_set(ram_bytes, macos=macos if macos is not None else os_major,
                               wired_limit_mb=wired_limit_mb)
        memory, text, applied = ws.bytes, f"modelled, not read: {ws.source}", ws.macos
    elif wired_sysctl_mb:
        ws = apple.working_set(ram_bytes, macos=_known_macos(os_major)[0], wired_limit_mb=wired_sysctl_mb)
        memory, text, applied = ws.bytes, f"live sysctl iogpu.wired_limit_mb={wired_sysctl_mb}: {ws.source}", ws.macos
    elif metal_working_set:
        memory, applied = metal_working_set, os_major
        text = f"live recommendedMaxWorkingSetSize from {metal_how} (iogpu.wired_limit_mb = 0)"
    else:
        v, note = _known_macos(os_major)
        ws = apple.working_set(ram_bytes, macos=v)
        memory, text, applied = ws.bytes, ws.source + note, ws.macos
        text += "; install torch, mlx or pyobjc-framework-Metal for a live reading"
    match = _catalog_match(f"{brand} {ram_bytes // GiB}GB")
    return DeviceSpec(
        name=f"{brand} {ram_bytes // GiB} GB (local)", backend="metal", memory_bytes=memory, key="local",
        vendor="apple", bandwidth_gbps=match.bandwidth_gbps if match else None,
        max_buffer_bytes=None, unified=True, ram_bytes=ram_bytes, macos=applied, memory_source=text,
        kind="mac", gpu_cores=match.gpu_cores if match else None,
        source=f"detected on this machine (sysctl hw.memsize = {ram_bytes})"
               + (f"; bandwidth from catalog entry {match.key}" if match else ""),
    )


def _known_macos(os_major: int | None) -> tuple[int, str]:
    if os_major in apple.MACOS_VERSIONS:
        return os_major, ""
    return apple.NEWEST_MACOS, (f"; macOS {os_major} has no rule of its own, the macOS "
                                f"{apple.NEWEST_MACOS} rule was used")


def cpu_device(ram_bytes: int, tried: list[str]) -> DeviceSpec:
    """The fallback: the CPU and system RAM (what MLC's CPU backend reports: sysinfo totalram)."""
    why = "; ".join(tried) if tried else "no GPU probe applies here"
    return DeviceSpec(
        name=f"CPU ({_platform.machine() or 'unknown'}) (local)", backend="cpu", memory_bytes=ram_bytes,
        key="local", kind="cpu", unified=True, ram_bytes=ram_bytes,
        memory_source=f"no GPU found, so the CPU with system RAM ({ram_bytes} B, sysinfo totalram); tried: {why}",
        source="detected on this machine",
    )


def system_ram(run: Runner = run_command, platform: str = sys.platform) -> int:
    if platform == "darwin":
        ram = parse_sysctl_int(run(["sysctl", "-n", "hw.memsize"]))
        if ram:
            return ram
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        raise DeviceError("cannot read this machine's memory; give --backend and --memory") from None


def _optional(import_module: Importer, name: str, tried: list[str]) -> ModuleType | None:
    try:
        return import_module(name)
    except ImportError:
        tried.append(f"{name}: not installed")
        return None


def _from_nvml(import_module: Importer, tried: list[str]) -> DeviceSpec | None:
    nvml = _optional(import_module, "pynvml", tried)
    if nvml is None:
        return None
    try:
        nvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        tried.append(f"nvidia-ml-py: {e or type(e).__name__}")
        return None
    try:
        n = nvml.nvmlDeviceGetCount()
        if n == 0:
            tried.append("nvidia-ml-py: no NVIDIA GPU")
            return None
        names = [_text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(n)]
        h = nvml.nvmlDeviceGetHandleByIndex(0)
        try:
            mem = nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2)
            total, reserved = int(mem.total), int(mem.reserved)
        except Exception:  # older drivers/bindings: v1 only, no reserved figure
            total, reserved = int(nvml.nvmlDeviceGetMemoryInfo(h).total), None
    finally:
        nvml.nvmlShutdown()
    return nvidia_device(names[0], total, reserved, names.count(names[0]), "nvidia-ml-py")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _from_torch(import_module: Importer, tried: list[str]) -> DeviceSpec | None:
    torch = _optional(import_module, "torch", tried)
    if torch is None:
        return None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        hip = getattr(torch.version, "hip", None)
        names = [torch.cuda.get_device_properties(i).name for i in range(torch.cuda.device_count())]
        field = "hipDeviceProp_t.totalGlobalMem" if hip else "cudaDeviceProp.totalGlobalMem"
        return _gpu(props.name, "rocm" if hip else "cuda", int(props.total_memory), names.count(props.name),
                    f"torch.cuda.get_device_properties(0).total_memory = {field} (live reading)")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        props = xpu.get_device_properties(0)
        # Level Zero's total equals OpenCL's global memory size on Arc (devices.md §6).
        return _gpu(props.name, "opencl", int(props.total_memory), xpu.device_count(),
                    "torch.xpu.get_device_properties(0).total_memory (Level Zero; live reading)")
    tried.append("torch: no CUDA, ROCm or XPU device")
    return None


def _from_nvidia_smi(run: Runner, tried: list[str]) -> DeviceSpec | None:
    rows = parse_nvidia_smi(run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"]))
    if not rows:
        tried.append("nvidia-smi: not found or no GPU")
        return None
    name, mib = rows[0]
    return nvidia_device(name, mib * MiB, None, sum(r[0] == name for r in rows), "nvidia-smi")


def _metal_working_set(import_module: Importer) -> tuple[int | None, str]:
    """A live recommendedMaxWorkingSetSize from whichever library is installed."""
    for name in ("Metal", "mlx.core", "torch"):
        try:
            mod = import_module(name)
            if name == "Metal":
                return int(mod.MTLCreateSystemDefaultDevice().recommendedMaxWorkingSetSize()), "PyObjC Metal"
            if name == "mlx.core":
                info = mod.device_info() if hasattr(mod, "device_info") else mod.metal.device_info()
                return int(info["max_recommended_working_set_size"]), "mlx device_info"
            if mod.backends.mps.is_available():
                return int(mod.mps.recommended_max_memory()), "torch.mps.recommended_max_memory()"
        except Exception:  # not installed, or no Metal device: try the next one
            continue
    return None, ""


def detect_local(*, macos: int | None = None, wired_limit_mb: int | None = None, run: Runner = run_command,
                 import_module: Importer = importlib.import_module, platform: str = sys.platform,
                 mac_version: str | None = None) -> DeviceSpec:
    """The local device as its backend reports it, or the CPU with a note saying why."""
    tried: list[str] = []
    if platform == "darwin":
        brand = (run(["sysctl", "-n", "machdep.cpu.brand_string"]) or "").strip()
        ram = parse_sysctl_int(run(["sysctl", "-n", "hw.memsize"]))
        if brand.startswith("Apple") and ram:
            version = mac_version if mac_version is not None else _platform.mac_ver()[0]
            major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else None
            wired = parse_sysctl_int(run(["sysctl", "-n", "iogpu.wired_limit_mb"]))
            live, how = (None, "") if (macos is not None or wired_limit_mb is not None or wired) \
                else _metal_working_set(import_module)
            return apple_device(brand, ram, major, wired_sysctl_mb=wired, metal_working_set=live, metal_how=how,
                                macos=macos, wired_limit_mb=wired_limit_mb)
        tried.append(f"macOS without Apple silicon ({brand or 'unknown CPU'})")
    if macos is not None or wired_limit_mb is not None:
        raise DeviceError("--macos and --wired-limit-mb apply to a Mac; this machine is not one")
    if platform != "darwin":
        for probe in (lambda: _from_nvml(import_module, tried), lambda: _from_torch(import_module, tried),
                      lambda: _from_nvidia_smi(run, tried)):
            dev = probe()
            if dev is not None:
                return dev
    return cpu_device(system_ram(run, platform), tried)
