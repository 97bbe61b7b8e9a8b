"""Fuzz config.json: every catalog config as a seed, mutated (fields missing, wrong-typed,
negative, huge, NaN/Infinity, nested junk), loaded and planned under a random engine, device
and options. Each input ends in a plan or a one-line kvcap error, within a time bound."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fuzzkit import oracle, targets
from fuzzkit.world import catalog_configs
from fuzzkit.fixtures import world  # noqa: F401 - a fixture, found by its name
from fuzzkit.oracle import assert_clean

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_mutated_config_dict(world, rng):
    cfg = world.config_dict(rng)
    assert_clean(oracle.call(targets.load_and_plan, cfg, rng, timeout_s=10), cfg)


@settings(FUZZ, max_examples=100)
@given(st.randoms(use_true_random=False))
def test_mutated_config_file(world, rng):
    # The file path adds JSON-level junk: NaN literals, 100k-deep nesting, binary, truncation.
    path = world.config_file(rng)
    assert_clean(oracle.call(targets.load_and_plan, path, rng, timeout_s=10), path.read_bytes()[:400])


@pytest.mark.parametrize("engine, device", [("mlc", "rtx-4090"), ("vllm", "h100-sxm"), ("llamacpp", "m2-max-32gb"),
                                            ("ollama", "rtx-4090"), ("sglang", "h100-sxm"), ("mlx", "m4-max-128gb")])
def test_every_catalog_config_plans_or_is_refused_in_one_line(engine, device):
    """The seeds themselves, unmutated (this found Kimi-K2 crashing MLC and RWKV crashing SGLang)."""
    import kvcap
    for name, cfg in catalog_configs():
        def run():
            kvcap.plan(kvcap.load_model(name, offline=True), device, engine=engine)
        assert_clean(oracle.call(run, timeout_s=10), (name, engine, device))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-0.0", "4096.5"])
@pytest.mark.parametrize("key", ["hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings"])
def test_non_finite_literals_in_a_config_file(tmp_path, key, literal):
    import kvcap
    from fuzzkit.files import TINY_CONFIG
    p = tmp_path / "config.json"
    p.write_text(json.dumps({**TINY_CONFIG, key: "@"}).replace('"@"', literal))
    outcome = oracle.call(kvcap.load_model, p, timeout_s=10)
    assert outcome.kind == oracle.ERROR and repr(key) in outcome.detail, outcome
