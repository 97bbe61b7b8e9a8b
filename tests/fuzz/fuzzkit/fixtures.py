"""Fixtures of the fuzz tests (imported by name into each test module; a second conftest.py
would shadow tests/conftest.py as the module `conftest`)."""

from __future__ import annotations

import json

import pytest

from .world import World


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture
def cases(shared) -> list[dict]:
    """The real validation cases (../shared/validation), the seeds of case-file fuzzing."""
    out = []
    for f in sorted((shared / "validation").glob("*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out
