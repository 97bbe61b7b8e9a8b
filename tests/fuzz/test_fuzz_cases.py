"""Fuzz validation-case files: the real cases mutated (sections of the wrong type, numbers
negative, huge or NaN, fields missing), junk lines, binary files, deep nesting. `validate` ends
in a report or a one-line CaseFileError — never a traceback from inside a replay."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from fuzzkit import oracle, targets
from fuzzkit.world import World
from fuzzkit.fixtures import cases  # noqa: F401 - a fixture, found by its name
from fuzzkit.oracle import assert_clean

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_mutated_case_files(tmp_path_factory, cases, rng):
    world = World(tmp_path_factory.getbasetemp() / "cases-world", cases)
    path = world.case_file(rng)
    assert_clean(oracle.call(targets.validate_file, path, timeout_s=60), path.read_bytes()[:1500])


@settings(FUZZ, max_examples=40)
@given(st.randoms(use_true_random=False))
def test_mutated_case_files_through_the_cli(tmp_path_factory, cases, rng):
    world = World(tmp_path_factory.getbasetemp() / "cases-world-cli", cases)
    args = ["validate", str(world.case_file(rng))] + rng.choice(([], ["--json"], ["--check"]))
    assert_clean(oracle.cli(args, timeout_s=60), args)


def test_the_real_cases_seed_the_fuzzer(cases):
    assert len(cases) >= 40 and {c["engine"] for c in cases} >= {"mlc", "vllm", "llamacpp"}
