"""`kvcap inspect` and `kvcap models` through the CLI entry point."""

import json

import pytest

from kvcap.cli import main
from kvcap.model import catalog

# Catalog entries kvcap refuses on purpose, with the reason it must give.
EXPECTED_ERRORS = {
    "snowflake-arctic-embed-m": "encoder-only models have no KV cache",
    # the catalog copy is a subset without mamba_d_ssm, contradicting its Mamba-2 head count
    "tiiuae/Falcon-H1-0.5B": "the config needs mamba_d_ssm",
}


@pytest.mark.parametrize("key", [e.key for e in catalog.entries()])
def test_inspect_every_catalog_entry(key, capsys):
    rc = main(["inspect", key])
    out, err = capsys.readouterr()
    if key in EXPECTED_ERRORS:
        assert rc == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith("kvcap: error: ") and EXPECTED_ERRORS[key] in err
        return
    assert rc == 0, err
    assert key in out.splitlines()[0] and "KV cache" in out and "Parameters:" in out


def test_inspect_json_prices_the_windows(capsys):
    assert main(["inspect", "openai/gpt-oss-120b", "--json", "--context", "1000"]) == 0
    doc = json.loads(capsys.readouterr().out)
    kv = doc["kv"]
    per_layer = 8 * 64 * 2
    assert kv["elems_per_token"] == 36 * per_layer
    assert kv["bytes_per_token"] == {"fp16/bf16": 73_728, "fp8": 36_864,
                                     "q8_0": 36 * per_layer // 32 * 34, "q4_0": 36 * per_layer // 32 * 18}
    # 18 full layers keep 1000 tokens, 18 sliding layers 128
    assert kv["sequence_bytes"]["fp16/bf16"] == 18 * per_layer * 2 * (1000 + 128)
    assert kv["sequence_bytes_all_full"]["fp16/bf16"] == 36 * per_layer * 2 * 1000
    assert doc["layer_kinds"] == {"sliding": 18, "full": 18}
    assert doc["moe"]["num_experts"] == 128
    assert doc["params"]["count"] == 116_829_156_672


def test_inspect_json_state_and_mla(capsys):
    assert main(["inspect", "Qwen/Qwen3-Next-80B-A3B-Thinking", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)["state"]
    assert st["layers"] == 36 and st["elems_per_sequence"] == 36 * (8192 * 3 + 32 * 128 * 128)
    assert st["bytes_per_sequence"] == {"bfloat16": 36 * (8192 * 3 + 32 * 128 * 128) * 2}
    assert main(["inspect", "deepseek-ai/DeepSeek-V3", "--json", "--context", "4k"]) == 0
    kv = json.loads(capsys.readouterr().out)["kv"]
    assert kv["bytes_per_token"]["fp16/bf16"] == 61 * 576 * 2
    assert kv["sequence_bytes"]["fp16/bf16"] == 61 * 576 * 2 * 4096
    assert kv["mtp_elems_per_token"] == 576


def test_inspect_text_mentions_what_matters(capsys):
    assert main(["inspect", "google/gemma-3-27b-it"]) == 0
    out = capsys.readouterr().out
    assert "52 x sliding" in out and "10 x full" in out and "window 1,024" in out
    assert "vision" in out and "text_config leaves" in out


def test_inspect_rejects_a_bad_context(capsys):
    assert main(["inspect", "gpt2", "--context", "lots"]) == 2
    assert "--context" in capsys.readouterr().err


def test_models_lists_families_and_filters(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(catalog.entries())
    by_name = {r["name"]: r for r in rows}
    assert by_name["openai/gpt-oss-120b"]["family"] == "gpt-oss"
    assert by_name["openai/gpt-oss-120b"]["kv_bytes_per_token_16bit"] == 73_728
    assert by_name["llama3_1_8b"]["source"] == "mlc-preset"
    assert "unsupported" in by_name["snowflake-arctic-embed-m"]
    assert main(["models", "--family", "DeepSeek", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["family"] for r in rows} == {"deepseek"}
    assert main(["models", "--family", "nope"]) == 2
    assert "families:" in capsys.readouterr().err
    assert main(["models", "-f", "gemma"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gemma") and "google/gemma-3-27b-it" in out
