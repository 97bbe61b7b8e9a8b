"""The cliff detector on a simulated device (no torch): a step time that jumps past a size."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcap.probe import cliff
from kvcap.probe.cliff import Point, detect, geometric_sizes

GiB = 1 << 30


def simulated(sizes, cliff_at, jump, base=150e-6, jitter=0.005, seed=0, runs=20):
    """A device whose step takes `base` (± jitter, relative) below `cliff_at` and base*(1+jump) from it."""
    rng = random.Random(seed)
    pts = []
    for i, s in enumerate(sizes):
        t = base * (1 + jump) if cliff_at is not None and s >= cliff_at else base
        n_meas = 2 if i == 0 else 1
        pts.append(Point(s, tuple(tuple(t * (1 + rng.uniform(-jitter, jitter)) for _ in range(runs))
                                  for _ in range(n_meas))))
    return pts


def test_hand_worked_threshold():
    # Baseline runs: medians 100 and 102 us -> baseline 100 (fastest), between-run noise 2 us;
    # within-run: (p90 - p10) / 2 of (99, 100, 101) = (100.8 - 99.2) / 2 = 0.8 us < 2 us.
    base = Point(GiB, ((99e-6, 100e-6, 101e-6), (101e-6, 102e-6, 103e-6)))
    ok = Point(2 * GiB, ((111e-6,),))          # 111 < 100 * 1.10 + 2 = 112
    slow = Point(4 * GiB, ((113e-6,),))        # 113 > 112
    v = detect([slow, base, ok], tolerance=0.10)
    assert v.baseline_s == pytest.approx(100e-6)
    assert v.noise_s == pytest.approx(2e-6)
    assert v.threshold_s == pytest.approx(112e-6)
    assert v.cliff_bytes == 4 * GiB and v.max_ok_bytes == 2 * GiB and v.measured_up_to_bytes == 4 * GiB


def test_no_jump_no_cliff():
    sizes = geometric_sizes(GiB, 64 * GiB)
    v = detect(simulated(sizes, None, 0.0))
    assert v.cliff_bytes is None and v.max_ok_bytes == 64 * GiB and v.slow == ()


def test_a_remeasured_blip_is_not_a_cliff():
    base = Point(GiB, ((100e-6,) * 5, (100e-6,) * 5))
    blip = Point(2 * GiB, ((150e-6,) * 5, (100.5e-6,) * 5))   # slow once, fine when measured again
    assert detect([base, blip]).cliff_bytes is None


def test_noise_widens_the_threshold():
    quiet = Point(GiB, ((100e-6,) * 9, (100e-6,) * 9))
    noisy = Point(GiB, ((80e-6, 90e-6, 100e-6, 110e-6, 120e-6), (100e-6,) * 5))
    later = Point(2 * GiB, ((125e-6,),))
    assert detect([quiet, later]).cliff_bytes == 2 * GiB
    assert detect([noisy, later]).cliff_bytes is None     # 125 < 100*1.1 + (116 - 84)/2 = 126


@settings(max_examples=60, deadline=None)
@given(at=st.integers(1, 7), jump=st.floats(0.25, 5.0), seed=st.integers(0, 10_000))
def test_simulated_cliff_found_where_it_starts(at, jump, seed):
    sizes = geometric_sizes(GiB, 128 * GiB)        # 1, 2, 4, ..., 128 GiB
    v = detect(simulated(sizes, sizes[at], jump, seed=seed))
    assert v.cliff_bytes == sizes[at]
    assert v.max_ok_bytes == sizes[at - 1]
    assert set(v.slow) == set(sizes[at:])


@settings(max_examples=60, deadline=None)
@given(small=st.integers(1, 1 << 40), ratio=st.floats(1.0, 1000.0), factor=st.floats(1.1, 4.0),
       align=st.sampled_from([1, 4096, 65536]))
def test_geometric_sizes(small, ratio, factor, align):
    large = max(small, int(small * ratio))
    sizes = geometric_sizes(small, large, factor, align)
    assert sizes == sorted(set(sizes))
    assert all(s % align == 0 for s in sizes)
    assert sizes[-1] == max(align, large // align * align)
    for a, b in zip(sizes, sizes[1:-1]):
        assert b <= (a + align) * factor


def test_bad_input():
    with pytest.raises(ValueError):
        detect([])
    with pytest.raises(ValueError):
        geometric_sizes(0, 10)
    with pytest.raises(ValueError):
        detect([Point(GiB, ((1.0,),))], tolerance=-1)
    assert cliff.quantile([3.0, 1.0, 2.0], 0.5) == 2.0
