"""SGLang's mem_fraction_static / chunked_prefill_size / cuda_graph_max_bs defaults, worked by hand per release."""

from __future__ import annotations

import pytest

from kvcap.engines.sglang_defaults import check_version, memory_defaults, parse_version, read_wheel
from kvcap.errors import OptionsError

H100, H200, B200, L4, RTX4090, A100_80 = 81559, 143771, 183359, 23034, 24564, 81920  # nvidia-smi MiB


def test_newest_h100_reserve_and_fraction():
    d = memory_defaults("0.5.23", H100, "cuda", 1, mla=False)
    # H100 tier: chunked_prefill_size 8192, decode max_bs 256 (tp < 4). Prefill graphs up to 8192 tokens:
    # 4..32 by 4 (8) + 48..256 by 16 (14) + 288..512 by 32 (8) + 576..1024 by 64 (8) + 1280..4096 by 256 (12)
    # + 4608..8192 by 512 (8) = 58 sizes x 8 MiB = 464 MiB.
    # reserved = 512 + 8192 x 1.5 + 256 x 2 + 1/8 x 1024 + 464 = 512 + 12288 + 512 + 128 + 464 = 13904 MiB
    assert (d.chunked_prefill_size, d.cuda_graph_max_bs) == (8192, 256)
    assert d.reserved_mib == 13904
    # (81559 - 13904) / 81559 = 0.82952... -> 0.83
    assert d.mem_fraction_static == 0.83


def test_newest_mla_on_h200_tp8():
    d = memory_defaults("0.5.23", H200, "cuda", 8, mla=True)
    # 512 + 8192 x 1.5 + 512 x 2 (tp >= 4) + 8/8 x 1024 + 1536 (MLA prefill graphs) = 16384 MiB
    assert d.reserved_mib == 16384
    # (143771 - 16384) / 143771 = 0.88604 -> 0.886
    assert d.mem_fraction_static == 0.886


def test_ten_gib_floor_on_big_gpus():
    # No cuda graphs, a small chunk: 512 + 2048 x 1.5 + 1/8 x 1024 = 3712 < 10240 -> floor
    d = memory_defaults("0.5.23", H100, "cuda", 1, mla=False, chunked_prefill_size=2048, disable_cuda_graph=True)
    assert d.reserved_mib == 10240
    assert d.mem_fraction_static == round((H100 - 10240) / H100, 3) == 0.874


def test_small_gpu_has_no_floor_0_5_3():
    d = memory_defaults("0.5.3", RTX4090, "cuda", 1, mla=False)
    # under 35 GiB in 0.5.3: chunked 2048, max_bs 16 (24 from 0.5.5); no prefill graphs yet
    assert (d.chunked_prefill_size, d.cuda_graph_max_bs) == (2048, 16)
    # 512 + 3072 + 32 + 128 = 3744 -> (24564 - 3744) / 24564 = 0.84758 -> 0.848
    assert d.reserved_mib == 3744 and d.mem_fraction_static == 0.848
    assert memory_defaults("0.5.5", RTX4090, "cuda", 1, mla=False).cuda_graph_max_bs == 24
    # 0.5.20 raised this tier to chunked 4096 and max_bs 48
    newer = memory_defaults("0.5.20", RTX4090, "cuda", 1, mla=False)
    assert (newer.chunked_prefill_size, newer.cuda_graph_max_bs) == (4096, 48)


def test_tiered_reserve_era():
    # 0.4.7.post1 - 0.5.2: 35-90 GiB reserves (9.5 + tp/2) GiB; tp 2 -> 10.5 GiB = 10752 MiB
    d = memory_defaults("0.5.1", A100_80, "cuda", 2, mla=False)
    assert d.reserved_mib == 10752
    assert d.mem_fraction_static == 0.869  # (81920 - 10752) / 81920 = 0.86875
    # T4-class (< 35 GiB): (2.8 + 1/10) GiB
    t = memory_defaults("0.4.8", L4, "cuda", 1, mla=False)
    assert t.reserved_mib == pytest.approx(2.9 * 1024)
    assert t.chunked_prefill_size == 2048


def test_tp_table_era():
    assert memory_defaults("0.4.0", H100, "cuda", 1, mla=False).mem_fraction_static == 0.88
    assert memory_defaults("0.4.3", L4, "cuda", 4, mla=False).mem_fraction_static == 0.85
    assert memory_defaults("0.4.5", H100, "cuda", 8, mla=False).mem_fraction_static == 0.81
    assert memory_defaults("0.4.5", H100, "cuda", 16, mla=False).mem_fraction_static == 0.79
    # under 25,000 MiB: chunked 2048 and (from 0.4.3) max_bs 8 below tp 4, 80 from tp 4
    d = memory_defaults("0.4.3", L4, "cuda", 4, mla=False)
    assert (d.chunked_prefill_size, d.cuda_graph_max_bs) == (2048, 80)


def test_0_4_6_large_gpus():
    # 0.4.6: over 80 GiB, (gpu - 13 GiB) / gpu, unrounded
    assert memory_defaults("0.4.6", H200, "cuda", 1, mla=False).mem_fraction_static == pytest.approx(
        (143771 - 13312) / 143771)
    # 0.4.6.post3+: over 96 GiB, min(f + 48 GiB (1 - f) / gpu, (gpu - 18 GiB) / gpu) with f = 0.88
    f = memory_defaults("0.4.6.post5", H200, "cuda", 1, mla=False).mem_fraction_static
    assert f == pytest.approx(min(0.88 + 49152 * 0.12 / 143771, (143771 - 18432) / 143771))
    assert f == pytest.approx(0.871797, abs=1e-6)
    # 0.4.7: CUDA GPUs over 180,000 MiB get 0.79
    assert memory_defaults("0.4.7", B200, "cuda", 1, mla=False).mem_fraction_static == 0.79


def test_user_value_wins():
    d = memory_defaults("0.5.23", H100, "cuda", 1, mla=False, mem_fraction_static=0.7)
    assert d.mem_fraction_static == 0.7 and d.given


def test_versions():
    assert parse_version("0.4.6.post5") == (0, 4, 6, 5)
    assert parse_version("0.5.0rc0") < parse_version("0.5.0") < parse_version("0.5.0.post1")
    # a release between two read wheels follows the older one
    assert read_wheel(parse_version("0.4.6.post4")) == "0.4.6.post3"
    for bad in ("0.3.6", "0.6.0", "latest"):
        with pytest.raises(OptionsError):
            check_version(bad)


def test_a_huge_chunked_prefill_size_plans_quickly():
    # The prefill graph sizes are counted, not listed: 2**36 tokens must not build a list.
    import time
    import kvcap
    t = time.perf_counter()
    kvcap.plan("llama3_1_8b", "h100-sxm", engine="sglang", chunked_prefill_size=2**36)
    assert time.perf_counter() - t < 5
