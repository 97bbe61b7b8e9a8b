"""Properties of the MLC policy (hypothesis), its what-ifs and warnings, and the CLI around it."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from kvcap import plan
from kvcap.cli import main
from kvcap.device import custom_device
from kvcap.model import load_model

GiB = 1 << 30
MODELS = {name: load_model(name) for name in ("llama3_1_8b", "llama2_7b", "qwen2_1_5b", "phi-3_5")}
model_names = st.sampled_from(sorted(MODELS))
modes = st.sampled_from(["local", "interactive", "server"])
quants = st.sampled_from(["q4f16_1", "q0f16", "q3f16_1"])
# Up to 4 TiB: beyond about 2^31 tokens MLC's own int32 cast overflows (tested separately).
memories = st.integers(1 * GiB, 4096 * GiB)


@settings(max_examples=150, deadline=None)
@given(name=model_names, mode=modes, q=quants, backend=st.sampled_from(["cuda", "metal", "vulkan"]),
       a=memories, b=memories)
def test_capacity_never_decreases_with_more_memory(name, mode, q, backend, a, b):
    small, large = sorted((a, b))
    p1 = plan(MODELS[name], custom_device(backend, small), engine="mlc", mode=mode, quantization=q)
    p2 = plan(MODELS[name], custom_device(backend, large), engine="mlc", mode=mode, quantization=q)
    assert p2.kv_tokens >= p1.kv_tokens
    assert p2.fits or not p1.fits


@settings(max_examples=150, deadline=None)
@given(name=model_names, mode=modes, q=quants, mem=memories, user=st.one_of(st.none(), st.integers(1, 10**6)))
def test_metal_never_exceeds_32768_unless_the_user_sets_the_capacity(name, mode, q, mem, user):
    opts = {} if user is None else {"max_total_sequence_length": user}
    p = plan(MODELS[name], custom_device("metal", mem), engine="mlc", mode=mode, quantization=q, **opts)
    if user is None:
        assert p.kv_tokens <= 32768
    elif p.fits:
        assert p.kv_tokens == user


@settings(max_examples=150, deadline=None)
@given(name=model_names, q=quants, mem=memories, backend=st.sampled_from(["cuda", "metal", "rocm", "opencl"]))
def test_local_mode_stays_small(name, q, mem, backend):
    p = plan(MODELS[name], custom_device(backend, mem), engine="mlc", mode="local", quantization=q)
    assert p.kv_tokens <= 8192
    assert p.engine_config["max_num_sequence"] <= 4


@settings(max_examples=60, deadline=None)
@given(name=model_names, mem=memories, mode=modes)
def test_logged_total_never_exceeds_the_budget_when_mlc_infers_the_capacity(name, mem, mode):
    p = plan(MODELS[name], custom_device("cuda", mem), engine="mlc", mode=mode, quantization="q4f16_1")
    if p.fits:
        assert p.line("estimated_total") <= p.line("budget")
        assert p.memory["total"] <= p.memory["budget"] + 1


def test_metal_what_ifs_name_their_knobs():
    p = plan(MODELS["llama3_1_8b"], custom_device("metal", "48GiB"), engine="mlc", mode="interactive",
             quantization="q4f16_1")
    by = {w.change: w for w in p.what_if}
    uncapped = next(w for c, w in by.items() if c.startswith("without the metal cap"))
    assert uncapped.kv_tokens == 131072 and 'max_total_seq_length=131072' in uncapped.knob
    cuda = by["on CUDA instead of Metal with the same memory"]
    assert cuda.kv_tokens == 131072 and cuda.binding == "context_window" and cuda.gain == 4.0
    assert by["in server mode"].knob == "--mode server" and by["in server mode"].kv_tokens == 32768
    assert by["in local mode"].kv_tokens == 8192
    more = next(w for c, w in by.items() if c.startswith("with 96.0 GiB"))
    assert more.kv_tokens == 32768 and more.binding == "device_cap" and "iogpu.wired_limit_mb" in more.knob
    for w in p.what_if:
        assert w.engine_config["max_total_sequence_length"] == w.kv_tokens


def test_memory_bound_what_ifs_raise_utilization_and_memory():
    p = plan(MODELS["llama3_1_8b"], custom_device("cuda", "12GiB"), engine="mlc", mode="interactive",
             quantization="q4f16_1")
    assert p.binding.name == "memory"
    util = next(w for w in p.what_if if "gpu_memory_utilization 0.95" in w.change)
    assert util.kv_tokens > p.kv_tokens and util.knob == '--overrides "gpu_memory_utilization=0.95"'
    more = next(w for w in p.what_if if w.change.startswith("with 24.0 GiB"))
    assert more.kv_tokens > util.kv_tokens


def test_estimates_are_marked_and_warned():
    p = plan(MODELS["llama3_1_8b"], custom_device("cuda", "24GiB"), engine="mlc")
    temp = next(l for l in p.ledger if l.name == "temp_func_bytes")
    assert temp.estimate and "82–98%" in temp.note
    assert any("temp_buffer_bytes" in w for w in p.warnings)
    assert any("q4f16_1" in w and "No quantization given" in w for w in p.warnings)
    assert any("FlashInfer" in w for w in p.warnings)
    exact = plan(MODELS["llama3_1_8b"], custom_device("cuda", "24GiB"), engine="mlc", temp_buffer_bytes="300MiB",
                 quantization="q4f16_1")
    assert not any(l.estimate for l in exact.ledger) and exact.line("temp_buffer_bytes") == 600 << 20


def test_every_ledger_line_has_a_formula_and_a_source():
    p = plan(MODELS["llama3_1_8b"], custom_device("metal", "48GiB"), engine="mlc", quantization="q4f16_1")
    for line in p.ledger:
        assert line.formula and line.source, line.name


def test_cli_plan_json_keys_and_metal_cap(capsys):
    assert main(["plan", "llama3_1_8b", "--backend", "metal", "--memory", "48GiB", "--mode", "interactive",
                 "--quant", "q4f16_1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"engine", "mode", "model", "device", "engine_config", "memory", "binding", "ledger", "what_if",
            "warnings"} <= set(doc)
    assert doc["binding"]["name"] == "device_cap" and doc["engine_config"]["max_total_sequence_length"] == 32768
    assert set(doc["memory"]) == {"params", "temp_buffer", "kv_cache", "kv_aux_workspace", "model_workspace",
                                  "logit_processor_workspace", "total", "budget"}
    assert all(isinstance(v, int) for v in doc["memory"].values())
    assert {"name", "value", "unit", "formula", "source"} <= set(doc["ledger"][0])
    assert {"change", "knob", "engine_config", "binding"} <= set(doc["what_if"][0])


def test_cli_insufficient_memory_exits_1_with_a_valid_document(capsys):
    assert main(["plan", "llama3_1_8b", "--backend", "cuda", "--memory", "4GiB", "--quant", "q4f16_1", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["binding"]["name"] == "insufficient_memory"
    assert doc["binding"]["reason"].startswith("Insufficient GPU memory error: The available single GPU memory is 3481.600 MB")
    assert main(["plan", "llama3_1_8b", "--backend", "cuda", "--memory", "4GiB", "--quant", "q4f16_1"]) == 1
    assert "Does not fit." in capsys.readouterr().out


def test_cli_bad_quantization_is_one_line_exit_2(capsys):
    assert main(["plan", "llama3_1_8b", "--backend", "cuda", "--memory", "24GiB", "--quant", "q5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown quantization 'q5'" in err
