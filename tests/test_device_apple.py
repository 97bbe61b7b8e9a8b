"""The Apple working-set rule (research/devices.md §2.2, §7), worked by hand against readings.

Each expected value is worked here from the fraction, the RAM and the 16 KiB page, and checked
against what a real Mac printed (the reading is quoted next to it).
"""

import math

import pytest
from hypothesis import given, strategies as st

from kvcap.device import apple, get_device
from kvcap.errors import DeviceError

GiB = 1 << 30
MiB = 1 << 20
PAGE = 16384


def ws(ram_gb, **kw):
    return apple.working_set(ram_gb * GiB, **kw)


# --- macOS 13-15: 2/3 up to 32 GB, 3/4 from 36 GB ---------------------------------------------

def test_macos15_8gb_is_two_thirds_rounded_up_to_a_page():
    # 2/3 x 8 GiB = 5726623061.33 B = 349525.33 pages -> 349526 pages = 5726633984 B,
    # exactly MLX's max_recommended_working_set_size on an 8 GB Mac.
    assert 349526 * PAGE == 5726633984
    assert ws(8, macos=15).bytes == 5726633984


def test_macos15_16gb_matches_llama_cpp_ci():
    # 2/3 x 16 GiB = 11453246122.67 B -> 699051 pages = 11453251584 B ("11453.25 MB" in ggml CI).
    assert ws(16, macos=15).bytes == 699051 * PAGE == 11453251584
    assert f"{ws(16, macos=15).bytes / 1e6:.2f}" == "11453.25"


def test_macos14_32gb_prints_like_ollama_434():
    # 2/3 x 32 GiB = 22906492245.33 B -> 1398102 pages; llama.cpp printed "21845.34 MB" (MiB).
    got = ws(32, macos=14).bytes
    assert got == 1398102 * PAGE
    assert f"{got / MiB:.2f}" == "21845.34"


@pytest.mark.parametrize("ram_gb, macos, expected", [
    (36, 15, 27 * GiB),       # M4 Max 36 GB, macOS 15.7.7: 28991.03 MB = 27 GiB
    (48, 14, 36 * GiB),       # M3 Max 48 GB: 38654.71 MB = 36 GiB
    (64, 14, 49152 * MiB),    # 64 GB: 49152 MiB
    (96, 13, 73728 * MiB),    # M2 Max 96 GB, macOS 13: 73728 MiB
    (192, 15, 147456 * MiB),  # M2 Ultra: 147456 MiB; TVM example 154618822656 B
    (512, 15, 384 * GiB),     # M3 Ultra 512 GB, macOS 15: 384.0 GiB
])
def test_macos15_three_quarters_from_36gb(ram_gb, macos, expected):
    assert ws(ram_gb, macos=macos).bytes == expected


def test_macos13_14_15_share_one_rule():
    for ram in (8, 16, 24, 36, 64, 128):
        assert ws(ram, macos=13).bytes == ws(ram, macos=14).bytes == ws(ram, macos=15).bytes


def test_macos15_unmeasured_24gb_takes_nearest_tier_and_says_so():
    # 24 GB: 32 GB is nearer by ratio (1.33) than 16 GB (1.5) -> 2/3 -> exactly 16 GiB.
    w = ws(24, macos=15)
    assert w.bytes == 16 * GiB
    assert "24 GB not measured" in w.source and "nearest documented size 32 GB" in w.source
    assert w.confidence == "C"


# --- macOS 26: 0.74 / 0.78 / 0.84 -----------------------------------------------------------------

@pytest.mark.parametrize("ram_gb, pages, reading", [
    # 0.74 x 16 GiB = 12713103196.16 B = 775946.24 pages -> 775947; an M4 16 GB on macOS 26 read 12713115648 B.
    (16, 775947, 12713115648),
    # 0.74 x 18 GiB = 14302241095.68 B -> 872940 pages; a fixture read "14302.25 MB".
    (18, 872940, None),
    # 0.78 x 32 GiB = 26800595927.04 B -> 1635779 pages; a log read "26800.60 MB".
    (32, 1635779, None),
    # 0.78 x 48 GiB = 40200893890.56 B = 2453667.84 pages -> 2453668 = 37.44 GiB (torch.mps on an M5 Pro).
    (48, 2453668, None),
    # 0.84 x 128 GiB = 115448720916.48 B -> 7046431 pages = 107.52 GiB (M5 Max).
    (128, 7046431, None),
])
def test_macos26_fractions(ram_gb, pages, reading):
    got = ws(ram_gb, macos=26).bytes
    assert got == pages * PAGE
    if reading is not None:
        assert got == reading


def test_macos26_printed_values():
    assert f"{ws(18, macos=26).bytes / 1e6:.2f}" == "14302.25"
    assert f"{ws(32, macos=26).bytes / 1e6:.2f}" == "26800.60"
    assert f"{ws(48, macos=26).bytes / GiB:.2f}" == "37.44"
    assert f"{ws(128, macos=26).bytes / GiB:.2f}" == "107.52"


def test_newest_rule_is_the_default():
    for ram in (8, 16, 48, 128, 512):
        assert ws(ram).bytes == ws(ram, macos=26).bytes
        assert ws(ram).macos == 26


def test_macos26_unmeasured_sizes_take_the_nearest_documented_tier():
    # 64 GB: 48 GB (ratio 1.33) is nearer than 96 GB (1.5) -> 0.78 x 64 GiB -> 3271558 pages.
    w = ws(64, macos=26)
    assert w.bytes == 3271558 * PAGE
    assert "64 GB not measured" in w.source and "nearest documented size 48 GB" in w.source
    # 512 GB: the largest reading is 128 GB -> 0.84 x 512 GiB = 430.08 GiB (rounded up to a page).
    w = ws(512, macos=26)
    assert w.bytes == math.ceil(512 * GiB * 84 / 100 / PAGE) * PAGE
    assert "nearest documented size 128 GB" in w.source and w.confidence == "C"


def test_measured_tier_states_its_reading_and_confidence():
    w = ws(128, macos=26)
    assert "measured at 128 GB" in w.source and "[B]" in w.source and w.confidence == "B"


def test_unknown_macos_fails_closed():
    with pytest.raises(DeviceError, match="supported: 13, 14, 15, 26"):
        ws(16, macos=12)
    with pytest.raises(DeviceError, match="macOS 27"):
        ws(16, macos=27)


# --- iogpu.wired_limit_mb -------------------------------------------------------------------------

def test_wired_limit_is_reported_verbatim():
    # M3 16 GB with iogpu.wired_limit_mb=12000: Metal reported exactly 12000 MiB (llmfit PR #754).
    assert ws(16, wired_limit_mb=12000).bytes == 12000 * MiB
    # M5 Max 128 GB with 114688: 107.52 GiB -> 112.00 GiB (antirez/ds4 PR #893).
    assert ws(128, wired_limit_mb=114688).bytes == 112 * GiB
    assert "iogpu.wired_limit_mb=114688" in ws(128, wired_limit_mb=114688).source


def test_wired_limit_is_clamped_to_ram_and_warns_near_it():
    w = ws(16, wired_limit_mb=20000)
    assert w.bytes == 16 * GiB and "clamped to RAM" in w.source
    assert "7/8" in ws(16, wired_limit_mb=15500).source   # 15500 MiB > 7/8 x 16384 MiB = 14336
    assert "7/8" not in ws(16, wired_limit_mb=14000).source


def test_wired_limit_zero_is_the_default_heuristic_not_unlimited():
    assert ws(16, wired_limit_mb=0, macos=15).bytes == ws(16, macos=15).bytes


def test_negative_wired_limit_fails():
    with pytest.raises(DeviceError, match="wired-limit-mb"):
        ws(16, wired_limit_mb=-1)


def test_ios_rule_refuses_mac_knobs():
    assert apple.working_set(8 * GiB, os_name="ios").bytes == 5726633984  # iPhone 15 Pro: 5461.34 MiB
    with pytest.raises(DeviceError, match="--macos applies to Macs"):
        apple.working_set(8 * GiB, os_name="ios", macos=15)
    with pytest.raises(DeviceError, match="iOS has no"):
        apple.working_set(8 * GiB, os_name="ios", wired_limit_mb=4000)


# --- through the catalog and get_device --------------------------------------------------------

def test_catalog_mac_uses_the_rule_for_each_macos():
    assert get_device("m2-max-64gb", macos=15).memory_bytes == 48 * GiB
    assert get_device("m2-max-64gb", macos=26).memory_bytes == 3271558 * PAGE
    assert get_device("m5-max-128gb").memory_bytes == 7046431 * PAGE
    d = get_device("m3-16gb", wired_limit_mb=14000)
    assert d.memory_bytes == 14000 * MiB and d.ram_bytes == 16 * GiB and d.macos == 26


# --- properties -----------------------------------------------------------------------------------

@given(st.integers(min_value=4, max_value=1024), st.sampled_from([13, 14, 15, 26]))
def test_default_working_set_is_a_page_multiple_between_two_thirds_and_084(ram_gb, macos):
    got = ws(ram_gb, macos=macos).bytes
    assert got % PAGE == 0
    assert ram_gb * GiB * 2 / 3 <= got < ram_gb * GiB * 0.84 + PAGE


@given(st.integers(min_value=4, max_value=1023), st.sampled_from([15, 26]))
def test_more_ram_never_gives_a_smaller_working_set(ram_gb, macos):
    assert ws(ram_gb + 1, macos=macos).bytes >= ws(ram_gb, macos=macos).bytes


@given(st.integers(min_value=4, max_value=512), st.integers(min_value=1, max_value=1 << 20))
def test_wired_limit_is_min_of_limit_and_ram(ram_gb, limit_mb):
    assert ws(ram_gb, wired_limit_mb=limit_mb).bytes == min(limit_mb * MiB, ram_gb * GiB)
