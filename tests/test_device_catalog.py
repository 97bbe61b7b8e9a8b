"""The device catalog: coverage of research/devices.md, forgiving lookup, every entry well formed."""

import json
import re

import pytest

from kvcap.device import catalog, get_device
from kvcap.device.spec import BACKENDS
from kvcap.errors import DeviceError

GiB = 1 << 30
MiB = 1 << 20


# --- lookup ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, key", [
    ("M2 Max 64GB", "m2-max-64gb"), ("m2-max-64gb", "m2-max-64gb"), ("M2 MAX 64 GB", "m2-max-64gb"),
    ("Apple M2 Max 64GB", "m2-max-64gb"), ("m2_max_64", "m2-max-64gb"), ("M3 Ultra 512GB", "m3-ultra-512gb"),
    ("M1 8GB", "m1-8gb"), ("m1 16gb", "m1-16gb"),
    ("iPhone 15 Pro", "iphone-15-pro"), ("iphone-15-pro-max", "iphone-15-pro-max"), ("iPhone 15", "iphone-15"),
    ("h100-80gb", "h100-sxm"), ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("H100 SXM", "h100-sxm"),
    ("h100 pcie", "h100-pcie"), ("NVIDIA H200", "h200"),
    ("rtx-4090", "rtx-4090"), ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("RTX4090", "rtx-4090"), ("4090", "rtx-4090"),
    ("NVIDIA A100-SXM4-80GB", "a100-80gb-sxm"), ("a100-80gb", "a100-80gb-sxm"), ("NVIDIA A10G", "a10g"),
    ("AMD Radeon RX 7900 XTX", "rx-7900-xtx"), ("AMD Instinct MI300X", "mi300x"), ("Intel Arc A770", "arc-a770"),
    ("jetson agx orin 64gb", "jetson-agx-orin-64gb"),
])
def test_forgiving_names(name, key):
    assert catalog.lookup(name).key == key


@pytest.mark.parametrize("name, expected", [
    ("h100", {"h100-sxm", "h100-pcie", "h100-nvl"}),
    ("M2 Max", {"m2-max-32gb", "m2-max-64gb", "m2-max-96gb"}),
    ("a100", {"a100-40gb-pcie", "a100-40gb-sxm", "a100-80gb-sxm", "a100-80gb-pcie"}),
    ("m3 max", {"m3-max-36gb", "m3-max-96gb", "m3-max-48gb", "m3-max-64gb", "m3-max-128gb"}),
])
def test_ambiguous_name_lists_candidates(name, expected):
    with pytest.raises(DeviceError, match="ambiguous; candidates: ") as e:
        catalog.lookup(name)
    listed = set(str(e.value).split("candidates: ", 1)[1].split(", "))
    assert listed == expected


def test_candidates_in_natural_order():
    with pytest.raises(DeviceError) as e:
        catalog.lookup("m2 max")
    assert "m2-max-32gb, m2-max-64gb, m2-max-96gb" in str(e.value)


def test_unknown_device_says_how_to_list():
    with pytest.raises(DeviceError, match=r"unknown device 'tpu-v9'.*`kvcap devices`"):
        catalog.lookup("tpu-v9")
    with pytest.raises(DeviceError, match="not a device name"):
        catalog.lookup("  --  ")


def test_chips_that_do_not_exist_say_so():
    with pytest.raises(DeviceError, match="M4 Ultra does not exist"):
        catalog.lookup("M4 Ultra 256GB")
    with pytest.raises(DeviceError, match="M5 Ultra is not announced"):
        catalog.lookup("m5-ultra")


def test_mac_knobs_refused_for_other_devices():
    with pytest.raises(DeviceError, match="--macos applies to Macs"):
        catalog.lookup("rtx-4090", macos=15)
    with pytest.raises(DeviceError, match="not a Mac"):
        catalog.lookup("iphone-15-pro", wired_limit_mb=4000)
    with pytest.raises(DeviceError, match="--macos applies to Macs"):
        catalog.lookup("iphone-15-pro", macos=26)


def test_get_device_replaces_memory_and_backend_and_count():
    d = get_device("rtx-4090", memory="23GiB", count=2)
    assert d.memory_bytes == 23 * GiB and d.count == 2 and d.bandwidth_gbps == 1008
    assert get_device("m2-max-64gb", backend="vulkan").backend == "vulkan"


# --- coverage of research/devices.md §1 (hand-copied table) -----------------------------------------

MACS = {  # chip -> unified memory options (GB), devices.md §1
    "m1": (8, 16), "m1-pro": (16, 32), "m1-max": (32, 64), "m1-ultra": (64, 128),
    "m2": (8, 16, 24), "m2-pro": (16, 32), "m2-max": (32, 64, 96), "m2-ultra": (64, 128, 192),
    "m3": (8, 16, 24), "m3-pro": (18, 36), "m3-max": (36, 96, 48, 64, 128), "m3-ultra": (96, 256, 512),
    "m4": (16, 24, 32), "m4-pro": (24, 48, 64), "m4-max": (36, 48, 64, 128),
    "m5": (16, 24, 32), "m5-pro": (24, 48, 64), "m5-max": (36, 48, 64, 128),
}
BANDWIDTH = {"m1-8gb": 68.25, "m1-pro-32gb": 200, "m1-ultra-128gb": 800, "m2-24gb": 100, "m3-pro-18gb": 150,
             "m3-max-36gb": 300, "m3-max-96gb": 300, "m3-max-48gb": 400, "m3-ultra-512gb": 819, "m4-32gb": 120,
             "m4-pro-48gb": 273, "m4-max-36gb": 410, "m4-max-128gb": 546, "m5-16gb": 153, "m5-pro-64gb": 307,
             "m5-max-128gb": 614}


def test_every_mac_memory_option_is_in_the_catalog():
    macs = {d.key: d for d in catalog.entries() if d.kind == "mac"}
    expected = {f"{chip}-{ram}gb" for chip, rams in MACS.items() for ram in rams}
    assert set(macs) == expected
    for key, d in macs.items():
        assert d.ram_bytes == int(re.search(r"-(\d+)gb$", key).group(1)) * GiB
    for key, bw in BANDWIDTH.items():
        assert macs[key].bandwidth_gbps == bw


def test_phones_and_tablets_from_section_5():
    ram = {d.key: d.ram_bytes // GiB for d in catalog.entries() if d.kind in ("phone", "tablet")}
    assert ram["iphone-15"] == 6 and ram["iphone-15-pro"] == 8 and ram["iphone-16"] == 8
    assert ram["iphone-17-pro"] == 12 and ram["iphone-air"] == 12 and ram["ipad-pro-m4-8gb"] == 8
    assert ram["ipad-pro-m5-12gb"] == 12 and ram["ipad-pro-m5-16gb"] == 16 and ram["ipad-air-m2"] == 8


def test_app_memory_limits_with_and_without_entitlement():
    p = catalog.lookup("iphone-15-pro")          # ~3 -> ~6 GB (rtabmap PR #1446)
    assert (p.app_memory_limit_bytes, p.app_memory_limit_increased_bytes) == (3 * 10**9, 6 * 10**9)
    p = catalog.lookup("iphone-15")              # 6 GB class: 3.12 -> 4.20 GB (pocketpal PR #651)
    assert p.app_memory_limit_increased_bytes == 4_200_000_000
    assert p.app_memory_limit_bytes < p.app_memory_limit_increased_bytes < p.ram_bytes
    assert catalog.lookup("iphone-17-pro").app_memory_limit_bytes is None   # not measured: no guess


# --- research/devices.md §6, parsed from the shared file -------------------------------------------

SECTION6_KEYS = {
    "RTX 3060 12 GB": ["rtx-3060"], "RTX 3090": ["rtx-3090"], "RTX 4070": ["rtx-4070"], "RTX 4090": ["rtx-4090"],
    "RTX 5090": ["rtx-5090"], "A10 (and A10G)": ["a10", "a10g"], "L4": ["l4"], "T4 (for reference)": ["t4"],
    "L40S": ["l40s"], "A100 40GB PCIe": ["a100-40gb-pcie"], "A100 40GB SXM4": ["a100-40gb-sxm"],
    "A100 80GB (SXM4 and PCIe)": ["a100-80gb-sxm", "a100-80gb-pcie"],
    'H100 80GB SXM ("H100 80GB HBM3")': ["h100-sxm"], "H100 PCIe 80GB": ["h100-pcie"],
    "H100 NVL (94 GB)": ["h100-nvl"], "H200 (141 GB)": ["h200"], "B200": ["b200"], "AMD MI300X": ["mi300x"],
    "AMD RX 7900 XTX": ["rx-7900-xtx"], "Intel Arc A770 16GB": ["arc-a770"], "Intel Arc B580 12GB": ["arc-b580"],
    "Intel Arc Pro B60 24GB": ["arc-pro-b60"],
}
MEASURED_HERE = {"h100-sxm", "h200"}   # cudaDeviceProp.totalGlobalMem read on the card, below NVML's total


def _section6_rows(shared):
    text = (shared / "research" / "devices.md").read_text()
    body = text.split("## 6.", 1)[1].split("\n## ", 1)[0]
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0] in SECTION6_KEYS:
            yield cells


def test_section6_memory_and_bandwidth(shared):
    seen = set()
    for cells in _section6_rows(shared):
        name, reported, exact, bandwidth = cells[:4]
        digits = exact.replace(",", "") if exact.replace(",", "").isdigit() else \
            re.search(r"[\d,]{9,}", reported).group(0).replace(",", "")
        doc_bytes = int(digits)
        for key in SECTION6_KEYS[name]:
            d = catalog.lookup(key)
            seen.add(key)
            if key in MEASURED_HERE:
                # The CUDA total sits below NVML's by the driver's reservation (< 1 GiB).
                assert 0 < doc_bytes - d.memory_bytes < GiB
                assert f"{doc_bytes // MiB} MiB" in d.memory_source
            elif d.backend == "cuda" and d.memory_source.startswith("nvidia-smi"):
                # Only nvidia-smi's total is documented: the catalog takes off the driver's
                # reservation (estimated on the safe side), since engines budget CUDA's total.
                assert d.memory_bytes == doc_bytes - catalog.CUDA_RESERVED_ESTIMATE, key
                assert "reservation" in d.memory_source
            else:
                assert d.memory_bytes == doc_bytes, key
            bw = re.match(r"^([\d.]+) GB/s", bandwidth)
            if bw:
                assert d.bandwidth_gbps == float(bw.group(1)), key
    assert seen == {k for ks in SECTION6_KEYS.values() for k in ks}


def test_measured_cuda_totals_match_validation_logs(shared):
    """vLLM cases log the CUDA total of an H100 80GB; the measured catalog value sits within 0.1 %.
    Devices listed by their nvidia-smi figure, less the estimated driver reservation, sit at or
    below the CUDA total (the safe side), by less than 0.75 GiB."""
    checked = 0
    for line in (shared / "validation" / "vllm.jsonl").read_text().splitlines():
        dev = json.loads(line)["device"]
        if not dev.get("total_memory_bytes") or not dev.get("name"):
            continue
        d = catalog.lookup(dev["name"])
        logged = dev["total_memory_bytes"]
        if d.key in MEASURED_HERE:
            assert abs(d.memory_bytes - logged) < logged * 0.001, dev
        else:
            assert 0 <= logged - d.memory_bytes < 0.75 * GiB, dev
        checked += 1
    assert checked >= 8


# --- every entry well formed ------------------------------------------------------------------------

@pytest.mark.parametrize("macos", [15, 26])
def test_every_entry_is_valid(macos):
    devices = catalog.entries(macos=macos)
    keys = [d.key for d in devices]
    assert len(keys) == len(set(keys)) and len(keys) > 100
    for d in devices:
        assert d.memory_bytes > 0 and isinstance(d.memory_bytes, int), d.key
        assert d.backend in BACKENDS, d.key
        assert d.source and d.memory_source, d.key
        assert d.confidence in ("A", "B", "C"), d.key
        assert d.vendor in catalog.vendors() and d.name
        assert d.bandwidth_gbps is None or d.bandwidth_gbps > 0
        if d.unified:
            assert d.ram_bytes and d.memory_bytes <= d.ram_bytes, d.key
        if d.max_buffer_bytes is not None:
            assert 0 < d.max_buffer_bytes <= (d.ram_bytes or d.memory_bytes), d.key
        if d.kind == "mac":
            assert d.macos == macos and d.backend == "metal"
        assert catalog.lookup(d.key).key == d.key   # every key finds itself, never ambiguous


def test_nominal_entries_say_so():
    for d in catalog.entries():
        if d.memory_source.startswith("NOMINAL"):
            assert d.confidence == "C" and "--memory" in d.memory_source, d.key


def test_data_files_are_all_used():
    files = {p.name for p in catalog.DATA.glob("*.json")}
    assert files == {"apple_mac.json", "apple_mobile.json"} | {f for _, f in catalog.FIXED_FILES}
