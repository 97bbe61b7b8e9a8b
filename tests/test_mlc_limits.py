"""MLC limits and switches: the Metal cap, the OpenCL floor, overrides, TP/PP, drafts, RNN, eras."""

import dataclasses

import pytest

from kvcap import plan
from kvcap.device import custom_device
from kvcap.errors import ModelError, OptionsError
from kvcap.model import load_model
from kvcap.model.spec import RECURRENT, SLIDING, Layer

MiB, GiB = 1 << 20, 1 << 30
TEMP = 100 * MiB  # a compiled temp buffer given outright, so these tests do not depend on the estimate


@pytest.fixture(scope="module")
def llama31():
    return load_model("llama3_1_8b")   # context 131072, GQA 8 KV heads × 128, 32 layers


def mlc(model, device, **opts):
    opts.setdefault("temp_buffer_bytes", TEMP)
    opts.setdefault("quantization", "q4f16_1")
    return plan(model, device, engine="mlc", **opts)


# ---- the Metal cap ---------------------------------------------------------------------------
def test_metal_caps_at_32768_after_the_memory_budget(llama31):
    p = mlc(llama31, custom_device("metal", "48GiB"), mode="interactive")
    kv_per_token = 128 * 8 * 32 * 4 + 1.25
    assert p.line("capacity_memory") > 200_000                 # memory alone would allow far more
    assert p.line("capacity_memory") == int(
        (48 * GiB * 0.85 - p.line("params_bytes") - 2 * TEMP - p.line("kv_aux_workspace")
         - p.line("model_workspace") - p.line("logit_processor_workspace")) / kv_per_token)
    assert p.kv_tokens == 32768 and p.binding.name == "device_cap"
    assert "PR #1943" in p.binding.source and "config.cc" in p.binding.source
    assert any("counts tokens" in w and "does not lift it" in w for w in p.warnings)
    # the same memory on CUDA: no cap, the context window binds
    q = mlc(llama31, custom_device("cuda", "48GiB"), mode="interactive")
    assert q.kv_tokens == 131072 and q.binding.name == "context_window"


def test_metal_cap_applies_in_every_mode_and_counts_tokens(llama31):
    metal = custom_device("metal", "96GiB")
    assert mlc(llama31, metal, mode="server").kv_tokens == 32768
    assert mlc(llama31, metal, mode="local").kv_tokens == 8192
    # a smaller per-token footprint (a smaller model, the same cap) does not lift it
    small = load_model("llama3_2_1b")
    assert mlc(small, metal, mode="interactive").kv_tokens == 32768


def test_metal_cap_does_not_touch_a_user_capacity(llama31):
    p = mlc(llama31, custom_device("metal", "48GiB"), mode="interactive", max_total_sequence_length=65536)
    assert p.kv_tokens == 65536 and p.binding.name == "user_override"


def test_memory_binds_on_a_small_mac(llama31):
    p = mlc(llama31, custom_device("metal", "10GiB"), mode="interactive")     # a 16 GB Mac with a raised limit
    assert 0 < p.kv_tokens < 32768 and p.binding.name == "memory"
    assert p.kv_tokens == p.line("capacity_memory")


def test_cap_and_no_cap_options(llama31):
    cuda = custom_device("cuda", "48GiB")
    p = mlc(llama31, cuda, mode="interactive", cap=16384)
    assert p.kv_tokens == 16384 and p.binding.name == "device_cap" and "you set" in p.binding.reason
    q = mlc(llama31, custom_device("metal", "48GiB"), mode="interactive", no_cap=True)
    assert q.kv_tokens == 131072 and any("drops that cap" in w for w in q.warnings)
    with pytest.raises(OptionsError, match="either cap N or no_cap"):
        mlc(llama31, cuda, cap=100, no_cap=True)


# ---- the OpenCL floor -----------------------------------------------------------------------
def test_opencl_reports_at_least_5_gib(llama31):
    phone = custom_device("opencl", "3GiB")
    p = mlc(llama31, phone, mode="interactive", compile_context_window_size=2048, compile_prefill_chunk_size=128)
    assert p.line("device_memory") == 3 * GiB
    assert p.line("gpu_size_bytes") == 5 * GiB
    assert p.line("budget") == 5 * GiB * 0.85
    # before #2410 (May 2024) the device's own figure was used: 3 GiB × 0.85 cannot hold 4.3 GB of weights
    old = mlc(llama31, phone, mode="interactive", engine_era="cpp-2024-05",
              compile_context_window_size=2048, compile_prefill_chunk_size=128)
    assert old.binding.name == "insufficient_memory" and old.line("budget") == 3 * GiB * 0.85


# ---- user overrides ---------------------------------------------------------------------------
def test_overrides_are_taken_and_clamped_like_mlc(llama31):
    cuda = custom_device("cuda", "80GiB")
    lib = dict(compile_context_window_size=8192)
    p = mlc(llama31, cuda, mode="local", max_num_sequence=8, prefill_chunk_size=512, **lib)
    assert p.engine_config["max_num_sequence"] == 8 and p.engine_config["prefill_chunk_size"] == 512
    # #2692: 131072 asked of a library compiled for 8192 gives 8192
    q = mlc(llama31, cuda, mode="interactive", context_window_size=131072, **lib)
    assert q.engine_config["max_single_sequence_length"] == 8192 and q.kv_tokens == 8192
    r = mlc(llama31, cuda, mode="interactive", context_window_size=2048, **lib)
    assert r.kv_tokens == 2048 and r.binding.name == "user_override"
    assert r.engine_config["prefill_chunk_size"] == 2048          # min(prefill, KV, context)


def test_bad_options_are_one_line_errors(llama31):
    cuda = custom_device("cuda", "24GiB")
    with pytest.raises(OptionsError, match="mlc has no option 'n_ctx'; its options: .*max_total_sequence_length"):
        mlc(llama31, cuda, n_ctx=4096)
    with pytest.raises(OptionsError, match="mode 'batch' is not an MLC mode"):
        mlc(llama31, cuda, mode="batch")
    with pytest.raises(OptionsError, match=r"gpu_memory_utilization must be in \(0, 1\]"):
        mlc(llama31, cuda, gpu_memory_utilization=1.5)
    with pytest.raises(OptionsError, match="KV cache does not support max_history_size"):
        mlc(llama31, cuda, max_history_size=4)
    with pytest.raises(OptionsError, match="same setting"):
        mlc(llama31, cuda, context_window_size=4096, max_single_sequence_length=2048)
    with pytest.raises(OptionsError, match="unknown quantization"):
        mlc(llama31, cuda, quantization="q9f16")


# ---- tensor and pipeline parallelism ------------------------------------------------------------
def test_tensor_parallel_divides_heads_and_weights_per_gpu(llama31):
    cuda = custom_device("cuda", "24GiB", count=2)
    one, two = mlc(llama31, cuda, quantization="q0f16"), mlc(llama31, cuda, quantization="q0f16", tensor_parallel_shards=2)
    assert two.line("kv_cache_metadata") == "layers 32, qo heads 16, kv heads 4, head_dim 128"
    assert two.line("kv_bytes_per_token") == 128 * 4 * 32 * 4 + 1.25
    # linears halve; the 2 × 128256 × 4096 embedding and lm_head and the norms stay whole
    replicated = 2 * (2 * 128256 * 4096 + 65 * 4096)
    assert two.line("params_bytes") == (one.line("params_bytes") - replicated) // 2 + replicated
    with pytest.raises(OptionsError, match="must divide the 8 KV heads"):
        mlc(llama31, cuda, tensor_parallel_shards=3)
    with pytest.raises(OptionsError, match="must divide the 8 KV heads"):
        mlc(llama31, cuda, tensor_parallel_shards=16)


def test_pipeline_stages_split_weights_and_layers_evenly(llama31):
    cuda = custom_device("cuda", "24GiB")
    one, two = mlc(llama31, cuda), mlc(llama31, cuda, pipeline_parallel_stages=2)
    assert two.line("params_bytes") == one.line("params_bytes") // 2
    assert two.line("kv_bytes_per_token") == 128 * 8 * 16 * 4 + 1.25
    # before #2823 (August 2024) neither was divided
    old = mlc(llama31, cuda, pipeline_parallel_stages=2, engine_era="cpp-2024-06")
    assert old.line("params_bytes") == one.line("params_bytes")
    with pytest.raises(OptionsError, match="pipeline_parallel_stages 40"):
        mlc(llama31, cuda, pipeline_parallel_stages=40)


# ---- several models: a speculative draft ------------------------------------------------------------
def test_a_draft_model_adds_every_term(llama31):
    cuda = custom_device("cuda", "24GiB")
    draft = load_model("llama3_2_1b")   # 16 layers, 8 KV heads × 64, hidden 2048, 32 q heads
    alone = mlc(llama31, cuda, mode="server")
    d_alone = mlc(draft, cuda, mode="server")
    both = mlc(llama31, cuda, mode="server", additional_models=[(draft, "q4f16_1")])
    assert both.line("params_bytes") == alone.line("params_bytes") + d_alone.line("params_bytes")
    assert both.line("kv_bytes_per_token") == (128 * 8 * 32 * 4 + 1.25) + (64 * 8 * 16 * 4 + 1.25)
    for term in ("kv_aux_workspace", "model_workspace", "logit_processor_workspace"):
        assert both.line(term) == alone.line(term) + d_alone.line(term)
    assert both.line("temp_buffer_bytes") == 2 * TEMP           # the max over models, doubled
    assert both.line("params[1: llama3_2_1b]") == d_alone.line("params_bytes")
    assert both.kv_tokens < alone.kv_tokens
    # a draft given as a config dict works too
    cfg = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
           "num_hidden_layers": 2, "vocab_size": 128256, "max_position_embeddings": 131072}
    assert mlc(llama31, cuda, additional_models=[(cfg, "q0f16")]).line("kv_bytes_per_token") > alone.line("kv_bytes_per_token")


# ---- the RNN-state path (RWKV) --------------------------------------------------------------------
def rwkv(base):
    return dataclasses.replace(base, name="rwkv-test", model_type="rwkv5", layers=(Layer(RECURRENT),) * 32,
                               config={"head_size": 64}, mlc={"prefill_chunk_size": 8192, "max_batch_size": 128})


def test_rnn_state_path_by_hand(llama31):
    model, cuda = rwkv(llama31), custom_device("cuda", "24GiB")
    p = mlc(model, cuda, mode="interactive")
    bs, hidden, layers, heads, hs, pcs, vocab = 1, 4096, 32, 4096 // 64, 64, 8192, 128256
    base = bs * hidden * layers * 2 * 2 + bs * heads * hs * hs * layers * 2
    mws = pcs * 4 + bs * 4 + (pcs * 2 + bs) * hidden * 2
    lws = bs * 20 + bs * vocab * 16.125
    history = int((24 * GiB * 0.85 - p.line("params_bytes") - TEMP - mws - lws) / base)  # Σ, not doubled
    assert p.line("temp_buffer_bytes") == TEMP
    assert p.engine_config["max_history_size"] == history
    assert p.engine_config["max_total_sequence_length"] == 32768              # fixed, not memory-based
    assert p.engine_config["prefill_chunk_size"] == 4096                      # min(8192, 4096)
    assert p.binding.name == "mode_default"
    assert mlc(model, cuda, mode="server").engine_config["max_num_sequence"] == 4   # local and server alike
    with pytest.raises(OptionsError, match="RNN state does not support max_single_sequence_length"):
        mlc(model, cuda, context_window_size=4096)
    with pytest.raises(OptionsError, match="all RNN model or none"):
        mlc(llama31, cuda, additional_models=[(model, "q4f16_1")])


# ---- sliding window (Mistral v0.1) ---------------------------------------------------------------
def test_sliding_window_means_no_context_limit(llama31):
    mistral = dataclasses.replace(llama31, model_type="mistral", mlc={},
                                  layers=tuple(dataclasses.replace(l, kind=SLIDING, window=4096) for l in llama31.layers))
    cuda = custom_device("cuda", "24GiB")
    p = mlc(mistral, cuda, mode="server")
    assert p.line("compile.context_window_size") == -1
    assert p.engine_config["max_single_sequence_length"] is None
    assert p.kv_tokens == p.line("capacity_memory")        # server: the whole budget
    assert mlc(mistral, cuda, mode="interactive").binding.name == "memory"       # since #3248
    # between #2364 and #3248 interactive mode stopped at the window
    old = mlc(mistral, cuda, mode="interactive", engine_era="cpp-2024-08")
    assert old.kv_tokens == 4096 and old.binding.name == "context_window"
    with pytest.raises(OptionsError, match="sliding_window_size applies to sliding-window models"):
        mlc(llama31, cuda, sliding_window_size=4096)


def test_unsupported_layer_mixes_fail_closed(llama31):
    mixed = dataclasses.replace(llama31, layers=(Layer(SLIDING, 8, 128, 128, 32, window=512),) + llama31.layers[1:])
    with pytest.raises(ModelError, match="MLC policy supports"):
        mlc(mixed, custom_device("cuda", "24GiB"))
    uneven = dataclasses.replace(llama31, layers=(dataclasses.replace(llama31.layers[0], num_kv_heads=4),)
                                 + llama31.layers[1:])
    with pytest.raises(ModelError, match="one \\(heads, head_dim\\) for every layer"):
        mlc(uneven, custom_device("cuda", "24GiB"))
    shared = dataclasses.replace(llama31, layers=llama31.layers[:-1] + (dataclasses.replace(llama31.layers[0], kv_source=0),))
    with pytest.raises(ModelError, match="no shared-KV"):
        mlc(shared, custom_device("cuda", "24GiB"))


# ---- eras --------------------------------------------------------------------------------------------
def test_python_eras(llama31):
    cuda = custom_device("cuda", "24GiB")
    p = mlc(llama31, cuda, mode="server", engine_era="python-2024-04")
    assert p.line("gpu_memory_utilization") == 0.90 and p.line("temp_buffer_bytes") == TEMP
    q = mlc(llama31, cuda, engine_era="python-2024-03")
    assert q.mode is None and q.engine_config["max_num_sequence"] == 32
    assert q.kv_tokens == q.line("capacity_memory")         # no modes, no context clamp
    with pytest.raises(OptionsError, match="has no modes"):
        mlc(llama31, cuda, engine_era="python-2024-03", mode="local")
    with pytest.raises(OptionsError, match="#1603"):
        mlc(llama31, cuda, engine_era="python-2024-01")
    with pytest.raises(OptionsError, match="not an era"):
        mlc(llama31, cuda, engine_era="v0.1")
    tiny = custom_device("cuda", "2GiB")
    err = mlc(llama31, tiny, engine_era="python-2024-04")
    assert err.binding.reason.startswith("The model weight size 4517404672.0 may be larger than available GPU memory")


def test_gen_config_prefill_defaults_by_family_and_era(llama31):
    cuda = custom_device("cuda", "80GiB")
    assert mlc(llama31, cuda).line("compile.prefill_chunk_size") == 8192
    assert mlc(llama31, cuda, engine_era="cpp-2024-06").line("compile.prefill_chunk_size") == 2048
    assert mlc(llama31, cuda, engine_era="cpp-2024-06").line("compile.max_batch_size") == 80
    assert mlc(llama31, cuda, engine_era="python-2024-04").line("compile.prefill_chunk_size") == 131072
    qwen3 = load_model("qwen3_1.7b")
    assert mlc(qwen3, cuda).line("compile.prefill_chunk_size") == 2048
    preset = load_model("llama2_7b")       # the preset carries context_window_size / prefill 2048
    assert mlc(preset, cuda).line("compile.context_window_size") == 2048
