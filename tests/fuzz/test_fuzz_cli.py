"""Fuzz the command line: random arguments and option combinations for every command, built
from the parser itself (kvcap.cli.main in-process), plus a few real subprocess runs. Each ends
in exit 0/1 or a one-line `kvcap: error:` with exit 2 — never a traceback, never a hang."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fuzzkit import argv, oracle
from fuzzkit.fixtures import world  # noqa: F401 - a fixture, found by its name
from fuzzkit.oracle import assert_clean

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_random_command_lines(world, rng):
    args = argv.argv(rng, world)
    assert_clean(oracle.cli(args, timeout_s=60), args)


@pytest.mark.parametrize("command", sorted(argv.commands()))
def test_each_command(world, command):
    """A few dozen command lines per command, so that none is left to chance."""
    @settings(FUZZ, max_examples=15 if command in ("fit", "models", "plot") else 25)
    @given(st.randoms(use_true_random=False))
    def run(rng):
        args = argv.argv(rng, world, command)
        assert_clean(oracle.cli(args, timeout_s=60), args)
    run()


def test_every_command_is_fuzzed():
    from kvcap.cli import COMMANDS
    from importlib.util import find_spec
    present = {c for c in COMMANDS if find_spec(f"kvcap.commands.{c}") is not None}
    assert present - argv.SKIP == set(argv.commands())
    assert {"plan", "compare", "fit", "launch", "models", "inspect", "devices", "validate"} <= set(argv.commands())


@pytest.mark.parametrize("args, code", [
    (["plan", "llama-3.1-8b", "-d", "rtx-4090", "--no-advise"], 0),
    (["plan", "llama-3.1-8b", "-d", "nope-9000"], 2),
    (["plan", "/dev/zero", "-d", "rtx-4090"], 2),
    (["validate", "/dev/zero"], 2),
    (["plan", "llama-3.1-8b", "--memory", "1e400GiB", "--backend", "cuda"], 2),
])
def test_subprocess_runs_end_in_an_exit_code_not_a_traceback(args, code):
    """The real entry point (python -m kvcap), as a user runs it."""
    p = subprocess.run([sys.executable, "-m", "kvcap", *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr
    if code == 2:
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("kvcap: error: ")
