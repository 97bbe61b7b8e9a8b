"""Ranked what-ifs: the change that relaxes the binding limit, ranked by gain, with its cost."""

import json

import pytest

import kvcap
from kvcap.advise.report import plan_extras
from kvcap.advise.whatif import next_tier, ranked_what_ifs
from kvcap.cli import main
from kvcap.device import get_device

KIB = 1024
GIB = 1 << 30


@pytest.fixture(scope="module")
def metal_cap_plan():
    return kvcap.plan("llama3_1_8b", "m2-max-64gb", engine="mlc", mode="interactive")


def test_metal_cap_binds_top_is_cuda_or_an_engine_without_the_cap(metal_cap_plan):
    p = metal_cap_plan
    assert p.binding.name == "device_cap" and p.kv_tokens == 32768
    # Memory is not what binds: MLC's own memory capacity is far above the cap.
    assert p.line("capacity_memory") > 131072
    items = ranked_what_ifs(p)
    top = items[0]
    assert top.category in ("engine", "backend")
    assert top.engine != "mlc" or top.category == "backend"
    # Without the cap the model's window binds: 131,072 tokens, 131072 / 32768 = ×4.
    assert top.usable_tokens == p.model.context_window == 131072
    assert top.gain == pytest.approx(131072 / 32768)
    assert top.concurrency == 1                       # one sequence of the plan's 131,072-token context
    # Running past the cap in MLC itself gains as much, but ranks after every other way to get it.
    cats = [r.category for r in items]
    assert "no_cap" in cats
    assert all(r.category != "no_cap" for r in items[:cats.index("no_cap")])
    assert cats.index("no_cap") > max(i for i, c in enumerate(cats) if c in ("engine", "backend"))
    # A KV dtype does not lift a cap counted in tokens: not offered.
    assert "kv_dtype" not in cats


def test_memory_binds_top_is_kv_quantization_or_more_memory():
    # Llama-3.1-8B: 32 layers × 8 KV heads × 128 × (K+V) × 2 bytes = 131,072 B = 128 KiB a token at f16.
    # n_ctx 131,072 → 16 GiB of KV at f16, 8.5 GiB at q8_0 (8.5 bits), 4.5 GiB at q4_0 (4.5 bits).
    # An M1 16 GB reports an 11.84 GiB working set; Q4_K_M weights are ~4.6 GiB: only q4_0 leaves every
    # layer on the GPU, so memory binds and the top change is the KV dtype.
    p = kvcap.plan("llama3_1_8b", "m1-16gb", engine="llamacpp", n_ctx=131072)
    per_token = 32 * 8 * 128 * 2 * 2
    assert per_token == 128 * KIB
    assert p.engine_config["n_gpu_layers"] <= 32           # layers left on the CPU: memory binds
    assert 131072 * per_token * 8.5 / 16 + 4.5 * GIB > p.device.memory_bytes
    assert 131072 * per_token * 4.5 / 16 + 4.6 * GIB < p.device.memory_bytes
    items = ranked_what_ifs(p)
    assert items, "memory binds: some change must relax it"
    top = items[0]
    assert top.category in ("kv_dtype", "memory", "wired_limit")
    assert top.category == "kv_dtype" and top.options["type_k"] == "q4_0"
    assert top.usable_tokens == 131072 and top.gain is None     # the plan itself leaves layers on the CPU
    assert "quality" in top.cost


def test_vllm_memory_binds_offers_kv_quantization_and_more_memory():
    p = kvcap.plan("llama3_1_8b", "l4", engine="vllm", max_model_len=8192)
    assert p.binding.name == "memory"
    items = ranked_what_ifs(p)
    cats = {r.category for r in items}
    assert {"kv_dtype", "memory", "tensor_parallel"} <= cats
    fp8 = next(r for r in items if r.category == "kv_dtype")
    # fp8 halves the bytes a token takes, and the memory left for KV stays: about ×2.
    assert 1.9 < fp8.gain <= 2.05
    more = next(r for r in items if r.category == "memory")
    assert more.device == next_tier(p.device).key
    assert all(r.gain > 1 for r in items)
    gains = [r.gain for r in items]
    assert gains == sorted(gains, reverse=True)


def test_context_window_binds_nothing_raises_it():
    p = kvcap.plan("llama3_1_8b", "m2-max-64gb", engine="mlx")
    assert p.binding.name == "context_window"
    assert ranked_what_ifs(p) == ()
    text, doc = plan_extras(p)
    assert "no single change" in text and doc["ranked_what_if"] == []


def test_next_tier_is_the_next_larger_device_of_its_kind():
    assert next_tier(get_device("m2-max-64gb")).key == "m2-max-96gb"          # same chip first
    t = next_tier(get_device("rtx-4090"))
    assert t.backend == "cuda" and t.memory_bytes > get_device("rtx-4090").memory_bytes
    smaller = [d for d in __import__("kvcap.device.catalog", fromlist=["entries"]).entries()
               if d.backend == "cuda" and d.kind == "gpu"
               and get_device("rtx-4090").memory_bytes < d.memory_bytes < t.memory_bytes]
    assert smaller == []


def test_wired_limit_what_if_on_a_mac_where_memory_binds():
    p = kvcap.plan("llama3_1_70b", "m2-max-64gb", engine="llamacpp", n_ctx=32768)
    items = ranked_what_ifs(p)
    wired = [r for r in items if r.category == "wired_limit"]
    assert wired and "iogpu.wired_limit_mb=57344" in wired[0].knob     # 64 GiB − 8 GiB = 57,344 MiB


def test_plan_cli_text_and_json_carry_ranked_what_ifs(capsys):
    assert main(["plan", "llama3_1_8b", "-d", "m2-max-64gb", "--mode", "interactive"]) == 0
    out = capsys.readouterr().out
    assert "What if" in out and "Ranked what-ifs" in out
    assert main(["plan", "llama3_1_8b", "-d", "m2-max-64gb", "--mode", "interactive", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["what_if"], "the engine's own what-ifs stay"
    assert doc["ranked_what_if"][0]["gain"] == pytest.approx(4.0)
    assert main(["plan", "llama3_1_8b", "-d", "m2-max-64gb", "--no-advise", "--json"]) == 0
    assert "ranked_what_if" not in json.loads(capsys.readouterr().out)
