import pytest
from hypothesis import given, strategies as st

from kvcap.errors import OptionsError
from kvcap.units import fmt_bytes, parse_count, parse_fraction, parse_size


def test_sizes():
    assert parse_size("24GiB") == 24 * 2**30
    assert parse_size("21845MiB") == 21845 * 2**20
    assert parse_size("80GB") == 80 * 10**9
    assert parse_size("1.5GiB") == 3 * 2**29
    assert parse_size(4096) == 4096


@pytest.mark.parametrize("bad", ["", "abc", "-1GiB", "0", "12 parsecs", "1e9"])
def test_bad_sizes(bad):
    with pytest.raises(OptionsError):
        parse_size(bad)


def test_counts_and_fractions():
    assert parse_count("128k") == 131072
    assert parse_count("4096") == 4096
    assert parse_fraction("0.85") == 0.85
    for bad in ("0", "1.5", "nan", "x"):
        with pytest.raises(OptionsError):
            parse_fraction(bad)


@given(st.integers(min_value=1, max_value=2**50))
def test_size_roundtrip_bytes(n):
    assert parse_size(str(n)) == n
    assert fmt_bytes(n)


def test_engine_option_counts_and_switches():
    from kvcap.engines.base import truth, whole
    assert whole("n_ctx", 8192) == whole("n_ctx", "8192") == whole("n_ctx", 8192.0) == 8192
    assert whole("max_model_len", "128k") == 131072
    for bad in (True, 1.5, "x", float("nan"), [1], 0):
        with pytest.raises(OptionsError):
            whole("n", bad)
    with pytest.raises(OptionsError, match="at most"):
        whole("n", 1 << 32, maximum=1 << 31)
    assert truth("fa", "on") is True and truth("fa", 0) is False and truth("fa", False) is False
    with pytest.raises(OptionsError, match="true or false"):
        truth("fa", "maybe")
