"""`--device local`: the real CPU fallback on this machine, and every other path with injected readings."""

import os
from types import SimpleNamespace

import pytest

from kvcap.device import detect, get_device
from kvcap.errors import DeviceError

GiB = 1 << 30
MiB = 1 << 20


def no_modules(name):
    raise ImportError(name)


def modules(**mods):
    def load(name):
        if name in mods:
            return mods[name]
        raise ImportError(name)
    return load


def commands(table):
    return lambda cmd: table.get(" ".join(cmd))


# --- the real machine ----------------------------------------------------------------------------

def _meminfo_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="reads Linux /proc/meminfo to check the RAM")
def test_real_fallback_reads_system_ram_and_says_why():
    # Nothing injected except "no GPU libraries": the RAM read is this machine's own.
    d = detect.detect_local(import_module=no_modules, run=lambda cmd: None, platform="linux")
    assert (d.backend, d.kind, d.key) == ("cpu", "cpu", "local")
    assert d.memory_bytes == d.ram_bytes == _meminfo_total()   # sysinfo totalram = MemTotal
    assert "no GPU found" in d.memory_source
    assert "pynvml: not installed" in d.memory_source and "nvidia-smi: not found" in d.memory_source


def test_real_detection_on_this_machine():
    # Whatever this machine has (CI has no GPU): a valid device, through get_device("local").
    d = get_device("local")
    assert d.key == "local" and d.memory_bytes > 0 and d.memory_source
    if not os.path.exists("/dev/nvidiactl") and not os.path.exists("/dev/kfd") and os.uname().sysname == "Linux":
        assert d.backend == "cpu" and "no GPU found" in d.memory_source


def test_local_is_case_insensitive_and_keeps_overrides():
    d = get_device("LOCAL", memory="8GiB")
    assert d.memory_bytes == 8 * GiB and d.memory_source == "given with --memory"


# --- parsers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("17179869184\n", 17179869184), ("hw.memsize: 68719476736", 68719476736), ("0\n", 0),
    ("", None), (None, None), ("sysctl: unknown oid 'iogpu.wired_limit_mb'", None), ("-5", None),
])
def test_parse_sysctl_int(text, value):
    assert detect.parse_sysctl_int(text) == value


def test_parse_nvidia_smi():
    text = "NVIDIA H100 80GB HBM3, 81559\nNVIDIA H100 80GB HBM3, 81559 MiB\n\nNo devices were found\n"
    assert detect.parse_nvidia_smi(text) == [("NVIDIA H100 80GB HBM3", 81559)] * 2
    assert detect.parse_nvidia_smi("NVIDIA GeForce RTX 3090, 24576") == [("NVIDIA GeForce RTX 3090", 24576)]
    assert detect.parse_nvidia_smi(None) == []


# --- NVIDIA ------------------------------------------------------------------------------------------

def fake_nvml(names, total, reserved=None, fail_init=False):
    def init():
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def meminfo(handle, version=None):
        if version is not None and reserved is None:
            raise TypeError("version")    # old bindings: no v2
        return SimpleNamespace(total=total, reserved=reserved or 0)
    return SimpleNamespace(
        nvmlInit=init, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: len(names),
        nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetName=lambda h: names[h].encode(),
        nvmlDeviceGetMemoryInfo=meminfo, nvmlMemory_v2=2)


def test_nvml_reading_gives_cuda_total():
    # Measured on an H100 80GB HBM3: NVML 85520809984 - 503316480 reserved = 85017493504 = totalGlobalMem.
    nvml = fake_nvml(["NVIDIA H100 80GB HBM3"] * 2, 85520809984, 503316480)
    d = detect.detect_local(import_module=modules(pynvml=nvml), run=lambda c: None, platform="linux")
    assert d.memory_bytes == 85017493504 and d.count == 2 and d.backend == "cuda"
    assert d.bandwidth_gbps == 3350 and "h100-sxm" in d.source
    assert "reserved" in d.memory_source


def test_nvml_v1_keeps_nvml_total_and_says_it_is_higher():
    nvml = fake_nvml(["NVIDIA GeForce RTX 4090"], 24564 * MiB)
    d = detect.detect_local(import_module=modules(pynvml=nvml), run=lambda c: None, platform="linux")
    assert d.memory_bytes == 24564 * MiB and "0.3-0.7 GiB lower" in d.memory_source and d.count == 1


def test_broken_nvml_falls_through_to_torch_rocm():
    props = SimpleNamespace(name="AMD Radeon RX 7900 XTX", total_memory=25753026560)
    torch = SimpleNamespace(
        cuda=SimpleNamespace(is_available=lambda: True, get_device_properties=lambda i: props,
                             device_count=lambda: 1),
        version=SimpleNamespace(hip="6.2"))
    d = detect.detect_local(import_module=modules(pynvml=fake_nvml([], 0, fail_init=True), torch=torch),
                            run=lambda c: None, platform="linux")
    assert (d.backend, d.memory_bytes, d.bandwidth_gbps) == ("rocm", 25753026560, 960)
    assert "hipDeviceProp_t.totalGlobalMem" in d.memory_source


def test_nvidia_smi_is_the_last_gpu_probe():
    run = commands({"nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits":
                    "NVIDIA L4, 23034\n"})
    d = detect.detect_local(import_module=no_modules, run=run, platform="linux")
    assert d.backend == "cuda" and d.memory_bytes == 23034 * MiB and d.bandwidth_gbps == 300


def test_mac_knobs_on_a_non_mac_fail():
    with pytest.raises(DeviceError, match="apply to a Mac"):
        detect.detect_local(import_module=no_modules, run=lambda c: None, platform="linux", macos=15)


# --- Apple ------------------------------------------------------------------------------------------

def mac(memsize, wired="0", brand="Apple M2 Max"):
    return commands({"sysctl -n machdep.cpu.brand_string": brand + "\n",
                     "sysctl -n hw.memsize": f"{memsize}\n", "sysctl -n iogpu.wired_limit_mb": wired})


def test_mac_live_metal_reading_wins_when_no_sysctl_limit():
    torch = SimpleNamespace(backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: True)),
                            mps=SimpleNamespace(recommended_max_memory=lambda: 51539607552))
    d = detect.detect_local(import_module=modules(torch=torch), run=mac(64 * GiB), platform="darwin",
                            mac_version="15.5")
    assert d.memory_bytes == 51539607552 and d.backend == "metal" and d.ram_bytes == 64 * GiB
    assert "torch.mps.recommended_max_memory()" in d.memory_source
    assert d.bandwidth_gbps == 400 and d.name.startswith("Apple M2 Max 64 GB")


def test_mac_nonzero_sysctl_limit_is_used_and_clamped():
    d = detect.detect_local(import_module=no_modules, run=mac(64 * GiB, "26000"), platform="darwin",
                            mac_version="15.5")
    assert d.memory_bytes == 26000 * MiB and "live sysctl iogpu.wired_limit_mb=26000" in d.memory_source
    d = detect.detect_local(import_module=no_modules, run=mac(16 * GiB, "99999"), platform="darwin",
                            mac_version="26.1")
    assert d.memory_bytes == 16 * GiB


def test_mac_without_libraries_uses_the_rule_of_the_running_macos():
    d = detect.detect_local(import_module=no_modules, run=mac(64 * GiB), platform="darwin", mac_version="15.5")
    assert d.memory_bytes == 48 * GiB and d.macos == 15 and "install torch, mlx" in d.memory_source
    d = detect.detect_local(import_module=no_modules, run=mac(64 * GiB, wired=""), platform="darwin",
                            mac_version="27.0")
    assert d.macos == 26 and "macOS 27 has no rule" in d.memory_source


def test_mac_what_if_knobs_model_instead_of_reading():
    d = detect.detect_local(import_module=no_modules, run=mac(32 * GiB), platform="darwin", mac_version="26.0",
                            macos=15)
    assert d.memory_bytes == 1398102 * 16384 and d.memory_source.startswith("modelled, not read")
    d = detect.detect_local(import_module=no_modules, run=mac(32 * GiB), platform="darwin", mac_version="26.0",
                            wired_limit_mb=28000)
    assert d.memory_bytes == 28000 * MiB


def test_intel_mac_falls_back_to_cpu_with_a_reason():
    d = detect.detect_local(import_module=no_modules, run=mac(16 * GiB, brand="Intel(R) Core(TM) i7"),
                            platform="darwin")
    assert d.backend == "cpu" and d.memory_bytes == 16 * GiB
    assert "macOS without Apple silicon" in d.memory_source


def test_importing_kvcap_device_stays_light():
    import subprocess
    import sys
    code = ("import sys, kvcap, kvcap.device; kvcap.get_device('rtx-4090'); "
            "print(sorted(m for m in ('torch', 'pynvml', 'numpy', 'mlx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
