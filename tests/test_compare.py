"""kvcap compare: one row per engine, through the CLI with --json; rows that fail say why and do not crash."""

from __future__ import annotations

import json
import types

import pytest

import kvcap
from kvcap.cli import main
from kvcap.commands import compare
from kvcap.errors import DeviceError, OptionsError

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
STATUSES = {"ok", "does_not_fit", "refused", "unavailable", "error"}


def run_json(capsys, *args) -> dict:
    rc = main(["compare", MODEL, *args, "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    return json.loads(out)


def test_apple_device_rows(capsys):
    doc = run_json(capsys, "--device", "m4-max-48gb", "--context", "32k", "--concurrency", "2")
    rows = {r["engine"]: r for r in doc["rows"]}
    # Metal: MLC, llama.cpp, Ollama and MLX-LM run there; vLLM and SGLang do not
    assert list(rows) == ["mlc", "llamacpp", "ollama", "mlx"]
    assert doc["context"] == 32768 and doc["concurrency"] == 2
    assert all(r["status"] in STATUSES for r in rows.values())
    mlx = rows["mlx"]
    # two sequences of 32,768 tokens, checked against the working set
    assert mlx["status"] == "ok" and mlx["kv_tokens"] == 65536
    direct = kvcap.plan(MODEL, "m4-max-48gb", engine="mlx", context=32768, batch=2)
    assert mlx["max_concurrency"] == direct.engine_config["max_batch"] >= 2
    assert mlx["binding"] == direct.binding.name


def test_cuda_device_rows(capsys):
    doc = run_json(capsys, "--device", "h100-sxm", "--context", "8192")
    rows = {r["engine"]: r for r in doc["rows"]}
    assert list(rows) == ["mlc", "vllm", "sglang", "llamacpp", "ollama"]
    sg = rows["sglang"]
    direct = kvcap.plan(MODEL, "h100-sxm", engine="sglang", context_length=8192)
    assert sg["status"] == "ok" and sg["kv_tokens"] == direct.kv_tokens
    # a pooled engine serves kv_tokens // context full-length sequences at once
    assert sg["max_concurrency"] == direct.kv_tokens // 8192
    assert sg["knob"].startswith("--")


def test_engine_refusing_the_device_gets_a_row(capsys):
    doc = run_json(capsys, "--device", "m4-max-48gb", "--engines", "sglang,mlx")
    rows = {r["engine"]: r for r in doc["rows"]}
    assert rows["sglang"]["status"] == "refused" and "cuda and rocm" in rows["sglang"]["reason"]
    assert rows["mlx"]["status"] == "ok"


def test_text_table(capsys):
    assert main(["compare", MODEL, "--device", "h100-sxm", "--engines", "sglang,mlx"]) == 0
    out = capsys.readouterr().out
    assert "sglang" in out and "refused" in out and "  mlx: kvcap models MLX-LM on Apple Metal" in out


def test_bad_input_exits_2(capsys):
    assert main(["compare", MODEL, "--device", "h100-sxm", "--engines", "nosuch"]) == 2
    assert "unknown engine 'nosuch'" in capsys.readouterr().err
    assert main(["compare", MODEL, "--device", "h100-sxm", "--context", "lots"]) == 2


def test_option_translation():
    known = {k: "" for k in ("n_ctx", "n_seq_max")}
    # llama.cpp's n_ctx counts the tokens of every sequence
    assert compare.engine_options("llamacpp", known, 4096, 3) == {"n_ctx": 12288, "n_seq_max": 3}
    ollama = {k: "" for k in ("num_ctx", "OLLAMA_NUM_PARALLEL")}
    assert compare.engine_options("ollama", ollama, 4096, 3) == {"num_ctx": 4096, "OLLAMA_NUM_PARALLEL": 3}
    mlc = {k: "" for k in ("mode", "max_single_sequence_length", "max_num_sequence", "context_window_size")}
    assert compare.engine_options("mlc", mlc, 4096, None) == {"mode": "server", "max_single_sequence_length": 4096}
    assert compare.engine_options("sglang", {"context_length": ""}, None, None) == {}
    with pytest.raises(OptionsError, match="no context-length option"):
        compare.engine_options("vllm", {}, 4096, None)


def test_row_level_errors_are_explicit(monkeypatch):
    model = kvcap.load_model(MODEL)
    device = kvcap.get_device("h100-sxm")

    def fake(plan):
        return types.SimpleNamespace(OPTIONS={"max_model_len": ""}, plan=plan)

    def crash(m, d, o):
        raise RuntimeError("boom")

    def refuse(m, d, o):
        raise DeviceError("no such GPU support")

    modules = {"vllm": fake(crash), "sglang": fake(refuse)}
    rows = compare.compare_rows(model, device, ["vllm", "sglang"], None, None, get_engine=modules.__getitem__)
    assert [(r.engine, r.status) for r in rows] == [("vllm", "error"), ("sglang", "refused")]
    assert "internal error in the vllm policy: RuntimeError: boom" == rows[0].reason
    assert rows[1].reason == "no such GPU support"
    # an engine kvcap knows whose policy module is not installed
    from kvcap import engines
    monkeypatch.setitem(engines.ENGINES, "ghost", "ghost_engine_not_here")
    rows = compare.compare_rows(model, device, ["ghost"], None, None)
    assert rows[0].status == "unavailable" and "not in this build" in rows[0].reason


def test_default_engines_by_backend():
    assert compare.default_engines("cuda") == ["mlc", "vllm", "sglang", "llamacpp", "ollama"]
    assert compare.default_engines("rocm") == ["mlc", "vllm", "sglang", "llamacpp", "ollama"]
    assert compare.default_engines("metal") == ["mlc", "llamacpp", "ollama", "mlx"]
    assert compare.default_engines("vulkan") == ["mlc", "llamacpp", "ollama"]
