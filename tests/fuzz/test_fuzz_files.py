"""Fuzz the model file readers: a tiny valid GGUF, safetensors checkpoint and MLC folder,
truncated, byte-flipped, with lengths, counts, dims and offsets set near 2^64 or past the end,
unknown dtypes and huge dims. Each ends in a model (then planned) or a one-line ModelError,
within a time bound and without allocating more than a few MiB (tracemalloc)."""

from __future__ import annotations

import struct
import tracemalloc

from hypothesis import HealthCheck, given, settings, strategies as st

from fuzzkit import files, oracle, targets
from fuzzkit.fixtures import world  # noqa: F401 - a fixture, found by its name
from fuzzkit.oracle import assert_clean

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
# The tiny files are ~200 KB; a reader that trusts a declared size allocates far more.
PEAK_BYTES = 8 << 20


def _load_bounded(path) -> oracle.Outcome:
    tracemalloc.start()
    try:
        outcome = oracle.call(targets.load_only, path, timeout_s=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if not outcome.bad and peak > PEAK_BYTES:
        return oracle.Outcome(oracle.TRACEBACK, f"reading allocated {peak} bytes")
    return outcome


@FUZZ
@given(st.randoms(use_true_random=False))
def test_corrupted_gguf(world, rng):
    path = world.gguf_file(rng)
    outcome = _load_bounded(path)
    assert_clean(outcome, path.read_bytes()[:300])
    if outcome.kind == oracle.RESULT:
        assert_clean(oracle.call(targets.load_and_plan, path, rng, timeout_s=10), path)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_corrupted_safetensors_checkpoint(world, rng):
    path = world.safetensors_folder(rng)
    outcome = _load_bounded(path)
    assert_clean(outcome, path)
    if outcome.kind == oracle.RESULT:
        assert_clean(oracle.call(targets.load_and_plan, path, rng, timeout_s=10), path)


@settings(FUZZ, max_examples=150)
@given(st.randoms(use_true_random=False))
def test_corrupted_mlc_folder(world, rng):
    path = world.mlc_folder(rng)
    outcome = _load_bounded(path)
    assert_clean(outcome, path)
    if outcome.kind == oracle.RESULT:
        assert_clean(oracle.call(targets.load_and_plan, path, rng, timeout_s=10), path)


@settings(FUZZ, max_examples=150)
@given(n=st.sampled_from(files.SPECIAL_U64 + (2**64 - 9, 12345)), cut=st.integers(min_value=0, max_value=4000))
def test_safetensors_declared_length_and_truncation(tmp_path_factory, n, cut):
    """Header lengths near 2^64 and files cut anywhere: refused before anything is allocated."""
    folder = tmp_path_factory.mktemp("st")
    doc, size = files.st_doc(files.tiny_st_tensors())
    data = files.st_bytes(doc, size)
    (folder / "config.json").write_text(__import__("json").dumps(files.TINY_CONFIG))
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", n) + data[8:cut])
    outcome = _load_bounded(folder)
    assert_clean(outcome, (n, cut))
    assert outcome.kind == oracle.ERROR      # no such file is whole


@settings(FUZZ, max_examples=150)
@given(field=st.integers(min_value=0), value=st.sampled_from(files.SPECIAL_U64))
def test_gguf_every_integer_field_set_near_2_64(tmp_path_factory, field, value):
    """Each length, count, dim, type and offset field of a valid GGUF, set to an extreme value."""
    data, ints = files.gguf_bytes(files.TINY_GGUF_META, files.tiny_gguf_tensors())
    off, size = ints[field % len(ints)]
    data = bytearray(data)
    data[off:off + size] = (value % (1 << (8 * size))).to_bytes(size, "little")
    path = tmp_path_factory.mktemp("gguf") / "m.gguf"
    path.write_bytes(bytes(data))
    assert_clean(_load_bounded(path), (off, size, value))
