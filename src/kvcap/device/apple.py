"""Apple GPU working set: MTLDevice.recommendedMaxWorkingSetSize from RAM and OS version.

On Metal, engines budget from recommendedMaxWorkingSetSize, not from the unified RAM (TVM
`metal_device_api.mm` kTotalGlobalMemory; llama.cpp `ggml_metal_device_get_memory`). Apple
publishes no formula, so the rule here is a table of readings (research/devices.md §2.2 plus
exact byte values found by code search), each with its source and confidence. A RAM size with
no reading takes the fraction of the nearest measured size (by ratio), and says so.

Every exact byte reading is the fraction times RAM rounded *up* to a 16 KiB page (hw.pagesize
on Apple silicon): 8 GiB -> 5726633984, 16 GiB -> 11453251584 (2/3), 16 GiB on macOS 26 ->
12713115648 (0.74); 3/4 readings are exact multiples (36 GiB -> 28991029248).

`sysctl iogpu.wired_limit_mb=N` (N > 0) replaces the heuristic: Metal then reports exactly
N MiB, passed through verbatim above RAM, so it is clamped to RAM (devices.md §2.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from ..errors import DeviceError

PAGE = 16384
GiB = 1 << 30
MiB = 1 << 20

# macOS majors kvcap has a rule for. 13–15 share one rule (readings from 13, 14 and 15 agree).
MACOS_VERSIONS = (13, 14, 15, 26)
NEWEST_MACOS = 26


@dataclass(frozen=True)
class Reading:
    """One observed default working set (iogpu.wired_limit_mb = 0) at a RAM size."""

    ram_gb: int
    fraction: Fraction
    confidence: str
    source: str


TWO_THIRDS = Fraction(2, 3)
THREE_QUARTERS = Fraction(3, 4)

# macOS 13–15 (devices.md §2.2 "macOS ≤ 15" rows; mlc.md §2.6).
MACOS_15: tuple[Reading, ...] = (
    Reading(8, TWO_THIRDS, "B", "M1 8 GB, macOS 15: 5.3 GiB (ollama PR #17367); 5726633984 B in MLX device_info"),
    Reading(16, TWO_THIRDS, "B", "M1 16 GB, macOS 14 (ollama PR #17367); M4 mini 16 GB, macOS 15.6 (exo PR #1672); "
                                 "11453251584 B (llama.cpp CI, MLX device_info)"),
    Reading(32, TWO_THIRDS, "B", "M2 Pro 32 GB, macOS 14 (ollama PR #17367); M1/M2 Max 32 GB: 21845.34 MiB "
                                 "(ollama #434, llama.cpp PR #2011)"),
    Reading(36, THREE_QUARTERS, "C", "M4 Max 36 GB, macOS 15.7.7: 28991.03 MB = 27 GiB (llama.cpp log found by code "
                                     "search; not in devices.md)"),
    Reading(48, THREE_QUARTERS, "C", "M3 Max 48 GB: 38654.71 MB = 36 GiB (llama.cpp log found by code search, 2024; "
                                     "not in devices.md)"),
    Reading(64, THREE_QUARTERS, "B", "M1/M2 Max 64 GB: 49152 MiB (llama.cpp #1870, #9112; mlc.md §2.6)"),
    Reading(96, THREE_QUARTERS, "B", "M2 Max 96 GB, macOS 13: 73728 MiB (llama.cpp #3213)"),
    Reading(128, THREE_QUARTERS, "C", "M1 Ultra 128 GB ~96 GB (stencel.io); M3 Max 128 GB 96 GB (Rapid-MLX PR #183)"),
    Reading(192, THREE_QUARTERS, "B", "M2 Ultra 192 GB: 147456 MiB (llama.cpp #10473); TVM's example "
                                      "total_global_memory = 154618822656"),
    Reading(512, THREE_QUARTERS, "B", "M3 Ultra 512 GB, macOS 15: 384.0 GiB (ollama PR #17367)"),
)

# macOS 26: higher fractions, exact multiples of RAM (devices.md §2.2 "macOS 26" rows).
MACOS_26: tuple[Reading, ...] = (
    Reading(8, TWO_THIRDS, "C", "A18 Pro 8 GB Mac (Mac17,5), 2026: 5726633984 B in MLX device_info (found by code "
                                "search; not in devices.md)"),
    Reading(16, Fraction(74, 100), "B", "M3 16 GB: 11.84 GiB (llmfit PR #754); M4 16 GB, macOS 26: 12713115648 B "
                                        "(found by code search)"),
    Reading(18, Fraction(74, 100), "C", "M3 Pro 18 GB: 14302.25 MB (test fixture found by code search)"),
    Reading(24, Fraction(74, 100), "C", "24 GB Mac: 17.76 GiB (sglang PR #29949, via mlc.md §2.6)"),
    Reading(32, Fraction(78, 100), "B", "M4 32 GB: 26800.60 MB (Ollama/llama.cpp log, 2026)"),
    Reading(36, Fraction(78, 100), "C", "M3/M4 Max 36 GB: 30150.67 MB (notes found by code search)"),
    Reading(48, Fraction(78, 100), "B", "M5 Pro 48 GB, macOS 26.5.2: 37.44 GiB (torch.mps.recommended_max_memory, "
                                        "dev.to article)"),
    Reading(96, Fraction(84, 100), "C", "96 GB Mac: maxBufferLength 86586540032 B = 0.84 x 96 GiB hints the 0.84 tier "
                                        "(mlx-vlm test reports)"),
    Reading(128, Fraction(84, 100), "B", "M5 Max 128 GB, macOS 26: 107.52 GiB (antirez/ds4 #890, PR #893; osaurus "
                                         "PR #1958; ollama PR #17367)"),
)

# iOS/iPadOS 16+: only 8 GB devices were read (devices.md §5; research/llamacpp.md).
IOS: tuple[Reading, ...] = (
    Reading(8, TWO_THIRDS, "B", "iPhone 15 Pro 8 GB: 5461.34 MiB (llama.cpp PR #4936, research/llamacpp.md); "
                                "A18 Pro 8 GB: 5726633984 B"),
)


@dataclass(frozen=True)
class WorkingSet:
    bytes: int
    macos: int | None          # the macOS major whose rule applied (None on iOS)
    source: str                # the rule, its reading and confidence, in words
    confidence: str = "C"      # devices.md's tags: A, B, C


def rule_for(os_name: str, macos: int | None) -> tuple[str, tuple[Reading, ...], int | None]:
    """('macOS 26', readings, 26) for a Mac; ('iOS', readings, None) for an iPhone/iPad."""
    if os_name == "ios":
        if macos is not None:
            raise DeviceError("--macos applies to Macs; iPhones and iPads use the iOS working-set rule")
        return "iOS", IOS, None
    v = NEWEST_MACOS if macos is None else macos
    if v not in MACOS_VERSIONS:
        raise DeviceError(f"no working-set rule for macOS {v}; supported: {', '.join(map(str, MACOS_VERSIONS))}")
    return (("macOS 26", MACOS_26, 26) if v >= 26 else ("macOS 13-15", MACOS_15, v))


def nearest(readings: tuple[Reading, ...], ram_gb: float) -> Reading:
    """The reading at the closest RAM size by ratio; on a tie the smaller fraction (less memory)."""
    return min(readings, key=lambda r: (abs(math.log(ram_gb / r.ram_gb)), r.fraction))


def default_working_set(ram_bytes: int, readings: tuple[Reading, ...]) -> tuple[int, Reading]:
    ram_gb = ram_bytes / GiB
    r = nearest(readings, ram_gb)
    # Fraction arithmetic: bytes stay exact ints; rounded up to whole 16 KiB pages as observed.
    return math.ceil(ram_bytes * r.fraction / PAGE) * PAGE, r


def _fraction_text(f: Fraction) -> str:
    return "2/3" if f == TWO_THIRDS else "3/4" if f == THREE_QUARTERS else f"{float(f):.2f}"


def working_set(ram_bytes: int, *, macos: int | None = None, wired_limit_mb: int | None = None,
                os_name: str = "macos") -> WorkingSet:
    """recommendedMaxWorkingSetSize for a device with `ram_bytes` of unified memory."""
    if ram_bytes <= 0:
        raise DeviceError(f"unified memory must be positive, got {ram_bytes}")
    label, readings, applied = rule_for(os_name, macos)
    if wired_limit_mb is not None and wired_limit_mb != 0:
        if os_name == "ios":
            raise DeviceError("--wired-limit-mb models a macOS sysctl; iOS has no iogpu.wired_limit_mb")
        if wired_limit_mb < 0:
            raise DeviceError(f"--wired-limit-mb must be 0 (the default heuristic) or a positive MiB count, "
                              f"got {wired_limit_mb}")
        asked = wired_limit_mb * MiB
        size = min(asked, ram_bytes)
        text = (f"sysctl iogpu.wired_limit_mb={wired_limit_mb}: Metal reports exactly that many MiB "
                f"(llmfit PR #754, antirez/ds4 PR #893) [B]")
        if asked > ram_bytes:
            text += f"; clamped to RAM ({ram_bytes // MiB} MiB), since Metal passes larger values through verbatim"
        elif asked * 8 > ram_bytes * 7:
            text += "; note: macOS may refuse a limit above ~7/8 of RAM (vm.user_wire_limit; omlx #1533) [C]"
        return WorkingSet(size, applied, text, "B")
    size, r = default_working_set(ram_bytes, readings)
    ram_gb = ram_bytes / GiB
    frac = _fraction_text(r.fraction)
    if ram_bytes == r.ram_gb * GiB:
        how, conf = f"measured at {r.ram_gb} GB: {r.source}", r.confidence
    else:  # an inferred tier is never better than a single secondary reading
        how, conf = f"{ram_gb:g} GB not measured; nearest documented size {r.ram_gb} GB ({r.source})", "C"
    text = (f"recommendedMaxWorkingSetSize by kvcap's {label} rule: {frac} x RAM, rounded up to 16 KiB pages; "
            f"{how} [{conf}]")
    return WorkingSet(size, applied, text, conf)
