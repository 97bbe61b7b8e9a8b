"""DeviceSpec: what a device offers, with no model or engine knowledge."""

from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("cuda", "rocm", "metal", "vulkan", "opencl", "webgpu", "cpu")


@dataclass(frozen=True)
class DeviceSpec:
    """One accelerator (or `count` identical ones) as its backend reports it.

    `memory_bytes` is what the backend's own query returns, since that is what engines budget
    from: cudaDeviceProp.totalGlobalMem on CUDA, hipDeviceProp_t.totalGlobalMem on ROCm,
    MTLDevice.recommendedMaxWorkingSetSize on Metal (not the unified RAM), CL_DEVICE_GLOBAL_MEM_SIZE
    on OpenCL. For Apple the catalog derives it from RAM and macOS version.
    """

    name: str
    backend: str
    memory_bytes: int
    key: str = ""                       # catalog key, "" for a custom device
    vendor: str = ""
    count: int = 1                      # identical devices on one host
    bandwidth_gbps: float | None = None  # GB/s (decimal), as vendors state it
    max_buffer_bytes: int | None = None  # largest single allocation (Metal maxBufferLength, …)
    unified: bool = False               # memory shared with the CPU (Apple, Jetson, phones)
    ram_bytes: int | None = None        # unified RAM when `unified`
    macos: int | None = None            # the macOS major whose working-set rule was applied
    memory_source: str = ""             # how memory_bytes was obtained, in words
    kind: str = ""                      # "gpu", "mac", "phone", "tablet", "soc", "cpu"
    source: str = ""                    # where the catalog entry's facts come from (devices.md §, URLs)
    confidence: str = ""                # devices.md's tag for the memory figure: "A", "B" or "C"
    gpu_cores: int | None = None        # GPU cores (Apple) where the entry names one bin
    # iOS/iPadOS process memory limit (jetsam), approximately, without and with the
    # com.apple.developer.kernel.increased-memory-limit entitlement (devices.md §5).
    app_memory_limit_bytes: int | None = None
    app_memory_limit_increased_bytes: int | None = None
