"""Ollama: default num_ctx by version and VRAM, parallelism, KV cache type gating, runners."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from kvcap.device import custom_device
from kvcap.engines import ollama
from kvcap.engines.ollama_engine import causal_cells
from kvcap.engines.ollama_versions import runner_kind
from kvcap.errors import OptionsError
from kvcap.model import load_model
from kvcap.model.spec import FULL, SLIDING, Layer, ModelSpec

GiB, MiB = 1 << 30, 1 << 20
LLAMA8B = load_model("meta-llama/Llama-3.1-8B-Instruct")   # arch "llama": the CGO runner until v0.30


def plan(memory="24GiB", model=LLAMA8B, backend="cuda", **options):
    options.setdefault("version", "0.24.0")
    return ollama.plan(model, custom_device(backend, memory), options)


@pytest.mark.parametrize("memory, num_ctx", [("8GiB", 4096), ("22.9GiB", 4096), ("23GiB", 32768), ("46GiB", 32768)])
def test_vram_tiers(memory, num_ctx):
    p = plan(memory)
    assert p.engine_config["num_ctx"] == num_ctx and p.kv_tokens == num_ctx
    assert p.binding.name == "mode_default"


def test_top_tier_is_capped_to_the_training_context():
    p = plan("48GiB")   # 262144 > Llama-3.1's 131072
    assert p.engine_config["num_ctx"] == 131072 and p.binding.name == "context_window"
    assert any("requested context size too large for model" in w for w in p.warnings)


def test_gpu_overhead_lowers_the_tier():
    assert plan("24GiB", OLLAMA_GPU_OVERHEAD=2 * GiB).engine_config["num_ctx"] == 4096


@pytest.mark.parametrize("version, num_ctx", [("0.6.6", 2048), ("0.6.7", 4096), ("0.15.4", 4096), ("0.15.5", 32768)])
def test_default_num_ctx_by_version(version, num_ctx):
    assert plan(version=version).engine_config["num_ctx"] == num_ctx


def test_context_length_env_and_num_ctx():
    assert plan(OLLAMA_CONTEXT_LENGTH=8192).engine_config["num_ctx"] == 8192
    p = plan(num_ctx=16384, OLLAMA_CONTEXT_LENGTH=8192)
    assert p.engine_config["num_ctx"] == 16384 and p.binding.name == "user_override"


def test_parallel_multiplies_cells_and_llama_cpp_rounds_them():
    # v0.24 CGO runner: n_ctx = 1000 x 3 = 3000 -> GGML_PAD 3072 -> 3072 / 3 = 1024 per stream
    p = plan(num_ctx=1000, OLLAMA_NUM_PARALLEL=3)
    assert p.line("kv_cells_requested") == 3000
    c = p.engine_config
    assert (c["num_parallel"], c["n_ctx"], c["n_ctx_seq"], c["kv_unified"]) == (3, 3072, 1024, False)
    assert p.kv_tokens == 3072


def test_auto_parallel_before_0_10():
    assert plan(version="0.5.0", num_ctx=2048).engine_config["num_parallel"] == 4     # fits: 4
    assert plan(version="0.6.7", num_ctx=2048).engine_config["num_parallel"] == 2     # defaultParallel 2
    assert plan(version="0.10.0", num_ctx=2048).engine_config["num_parallel"] == 1
    # 4 x 32768 cells of 128 KiB = 16 GiB of KV does not fit a 12 GiB card fully: 1
    assert plan("12GiB", version="0.5.0", num_ctx=32768).engine_config["num_parallel"] == 1


def test_quantized_kv_needs_flash_attention_on_the_cgo_runner():
    p = plan(num_ctx=8192, OLLAMA_KV_CACHE_TYPE="q8_0")
    assert p.engine_config["type_k"] == "f16"
    assert any("OLLAMA_FLASH_ATTENTION must be enabled" in w for w in p.warnings)
    q = plan(num_ctx=8192, OLLAMA_KV_CACHE_TYPE="q8_0", OLLAMA_FLASH_ATTENTION="1")
    assert q.engine_config["type_k"] == "q8_0"
    # 32 layers x 2 x (1024 / 32 x 34 B) x 8192 cells
    assert q.line("kv_bytes") == 32 * 2 * 1088 * 8192 == 544 * MiB


def test_llama_server_runner_passes_the_cache_type():
    p = plan(version="0.33.0", num_ctx=8192, OLLAMA_KV_CACHE_TYPE="q4_0")
    assert p.engine_config["runner"] == "llama-server" and p.engine_config["type_v"] == "q4_0"
    assert p.line("kv_bytes") == 32 * 2 * 576 * 8192


def test_cache_type_before_0_5_and_unsupported_types():
    assert any("does not exist before" in w for w in plan(version="0.4.0", OLLAMA_KV_CACHE_TYPE="q8_0").warnings)
    assert plan(OLLAMA_KV_CACHE_TYPE="q5_1", OLLAMA_FLASH_ATTENTION=True).engine_config["type_k"] == "f16"


def gemma3_4b() -> ModelSpec:
    # 34 layers, every 6th global, window 1024, 4 KV heads x 256
    layers = tuple(Layer(FULL if i % 6 == 5 else SLIDING, 4, 256, 256, 8, window=None if i % 6 == 5 else 1024)
                   for i in range(34))
    return ModelSpec(name="gemma-3-4b", model_type="gemma3_text", source="test", hidden_size=2560, num_hidden_layers=34,
                     num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=262208,
                     intermediate_size=10240, context_window=131072, dtype="bfloat16", tie_word_embeddings=True,
                     layers=layers, tensors=())


def test_causal_cells_worked():
    # full layers: 1 x 4096; SWA: 1024 + 512 -> 1536 (multiple of 256)
    assert causal_cells(4096, 1, 512, None, 256) == 4096
    assert causal_cells(4096, 1, 512, 1024, 256) == 1536
    # two sequences keep window + 1 each: 2 x 1025 + 512 = 2562 -> 2816
    assert causal_cells(4096, 2, 512, 1024, 256) == 2816
    # a window as large as the capacity is a full cache
    assert causal_cells(1024, 1, 512, 1024, 256) == 1024
    # 32-cell padding without flash attention before v0.13.2
    assert causal_cells(1000, 1, 512, None, 32) == 1024


def test_go_engine_sizes_gemma3():
    p = plan(model=gemma3_4b(), num_ctx=4096)
    assert p.engine_config["runner"] == "ollama"
    assert (p.line("kv_cells"), p.line("kv_swa_cells")) == (4096, 1536)
    # layers 5, 11, 17, 23, 29 global (5 x 4096 cells), 29 sliding x 1536 cells; a cell is 4 x 256 x 2 (K, V) x 2 B
    assert p.line("kv_bytes") + p.line("kv_swa_bytes") == (5 * 4096 + 29 * 1536) * 4096
    assert runner_kind((0, 5, 0), "gemma3") == "llama" and runner_kind((0, 33, 0), "gemma3") == "llama-server"


def test_refusals():
    with pytest.raises(OptionsError, match="ollama has no option 'n_ctx'"):
        plan(n_ctx=4096)
    with pytest.raises(OptionsError, match="not a version"):
        plan(version="latest")
    with pytest.raises(OptionsError, match="newer than"):
        plan(version="1.0.0")


@settings(max_examples=30, deadline=None)
@given(a=st.integers(2, 96), b=st.integers(2, 96))
def test_more_vram_never_fewer_tokens(a, b):
    lo, hi = sorted((a, b))
    assert plan(f"{hi}GiB").kv_tokens >= plan(f"{lo}GiB").kv_tokens
