"""llama.cpp plans: defaults by frontend and era, offload, --fit, refusals, and properties."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from kvcap.device import custom_device
from kvcap.engines import llamacpp
from kvcap.engines.llamacpp_fit import MiB
from kvcap.errors import OptionsError
from kvcap.model import load_model
from kvcap.model.spec import EMBED, FULL, LM_HEAD, NORM, Layer, ModelSpec, Tensor

GiB = 1 << 30
LLAMA8B = load_model("meta-llama/Llama-3.1-8B-Instruct")   # 32 layers x 8 KV heads x 128, n_ctx_train 131072


def plan(model=LLAMA8B, memory="24GiB", backend="cuda", **options):
    return llamacpp.plan(model, custom_device(backend, memory), options)


def line(p, name):
    return p.line(name)


def test_server_default_in_dec_2025_is_the_training_context_on_4_unified_sequences():
    p = plan(memory="80GiB", era="2025-12")
    c = p.engine_config
    assert (c["n_ctx"], c["n_seq_max"], c["kv_unified"]) == (131072, 4, True)
    # 32 layers x 2 x 1024 x 2 B = 128 KiB per cell
    assert line(p, "kv_bytes_per_token") == 131072 and line(p, "kv_bytes") == 131072 * 131072
    assert p.binding.name == "context_window" and p.kv_tokens == 131072


def test_frontend_and_era_defaults():
    assert plan(era="2025-06").engine_config["n_ctx"] == 4096          # -c 4096 (PR #10136)
    lib = plan(frontend="libllama").engine_config
    assert (lib["n_ctx"], lib["n_seq_max"], lib["swa_full"]) == (512, 1, True)
    assert plan(frontend="libllama").binding.name == "mode_default"
    with pytest.raises(OptionsError, match="give n_ctx"):
        plan(era="2024-06")


def test_user_context_is_padded_and_named():
    p = plan(n_ctx=5000, n_seq_max=1)
    assert p.engine_config["n_ctx"] == 5120          # GGML_PAD(5000, 256)
    assert p.binding.name == "user_override" and "padded to 5120" in p.binding.reason


def test_partial_offload_splits_kv_between_device_and_host():
    # Ollama #790 gemma-7b: 28 layers x 16 heads x 256, 2048 cells -> 32 MiB per layer;
    # -ngl 25 keeps layers 0..2 on the host: 96 MiB there, 800 MiB on CUDA0
    gemma = ModelSpec(name="gemma-7b", model_type="gemma", source="test", hidden_size=3072, num_hidden_layers=28,
                      num_attention_heads=16, num_key_value_heads=16, head_dim=256, vocab_size=256000,
                      intermediate_size=24576, context_window=8192, dtype="bfloat16", tie_word_embeddings=True,
                      layers=(Layer(FULL, 16, 256, 256, 16),) * 28, tensors=())
    p = plan(gemma, n_ctx=2048, n_gpu_layers=25, era="2024-03")
    assert (p.memory["kv_cache"], p.memory["host_kv_cache"]) == (800 * MiB, 96 * MiB)
    assert plan(gemma, n_ctx=2048, n_gpu_layers=25, offload_kqv=False).memory["kv_cache"] == 0


def test_fit_shrinks_the_context_linearly():
    # Llama-3.1-8B @ 131072 needs 16 GiB of KV: on 12 GiB --fit cuts n_ctx by
    # ceil(deficit / bytes_per_ctx) tokens (bytes_per_ctx = 128 KiB), then llama_context pads it to 256
    p = plan(memory="12GiB", n_seq_max=1)
    assert p.binding.name == "memory"
    reduced = next(l.value for l in p.ledger if l.name.startswith("fit_") and "reduced" in l.value)
    fit_ctx = int(reduced.split(" to ")[1].split()[0])
    n_ctx = p.engine_config["n_ctx"]
    assert 4096 < fit_ctx <= n_ctx < fit_ctx + 256 and n_ctx % 256 == 0
    # weights and compute do not change with n_ctx (flash attention): the linear model is exact, so
    # fit_ctx is the largest context that keeps the 1 GiB margin
    used_at_fit = sum(p.memory[k] for k in ("weights", "kv_cache", "compute")) - (n_ctx - fit_ctx) * 131072
    target = 12 * GiB - 1024 * MiB
    assert used_at_fit <= target < used_at_fit + 131072


def test_fit_stops_at_fitc_then_moves_layers():
    p = plan(memory="4GiB", n_seq_max=1)
    assert p.engine_config["n_ctx"] == 4096
    assert p.engine_config["n_gpu_layers"] < 32
    assert any("layers on the device" in w for w in p.warnings)
    # with -ngl set by the user, fit keeps the shorter context but cannot move layers
    q = plan(memory="4GiB", n_seq_max=1, n_gpu_layers=33)
    assert q.engine_config["n_ctx"] == 4096
    assert any("n_gpu_layers already set by user to 33" in w for w in q.warnings)
    assert q.binding.name == "insufficient_memory" and q.kv_tokens == 0


def test_fit_off_and_user_context_can_be_insufficient():
    p = plan(memory="8GiB", n_ctx=131072, n_seq_max=1, fit=False)
    assert p.binding.name == "insufficient_memory" and not p.fits
    m = plan(memory="8GiB", backend="metal", n_ctx=131072, n_seq_max=1, fit=False)
    assert "recommendedMaxWorkingSetSize" in m.binding.reason


def qwen3_30b_a3b_f16() -> ModelSpec:
    """Qwen3-30B-A3B as its GGUF holds it (48 layers, 128 experts of 768, vocab 151936), F16."""
    h, layers, tensors = 2048, [], [Tensor("token_embd", (151936, 2048), EMBED), Tensor("output", (151936, 2048), LM_HEAD),
                                    Tensor("output_norm", (2048,), NORM)]
    for i in range(48):
        p = f"blk.{i}."
        tensors += [Tensor(p + "attn_q", (4096, h)), Tensor(p + "attn_k", (512, h)), Tensor(p + "attn_v", (512, h)),
                    Tensor(p + "attn_output", (h, 4096)), Tensor(p + "attn_norm", (h,), NORM),
                    Tensor(p + "ffn_norm", (h,), NORM), Tensor(p + "attn_q_norm", (128,), NORM),
                    Tensor(p + "attn_k_norm", (128,), NORM), Tensor(p + "ffn_gate_inp", (128, h), "router")]
        tensors += [Tensor(p + f"ffn_{w}_exps", (128, 768, h)) for w in ("gate", "up", "down")]
        layers.append(Layer(FULL, 4, 128, 128, 32))
    return ModelSpec(name="Qwen3-30B-A3B", model_type="qwen3_moe", source="test", hidden_size=h, num_hidden_layers=48,
                     num_attention_heads=32, num_key_value_heads=4, head_dim=128, vocab_size=151936,
                     intermediate_size=6144, context_window=40960, dtype="bfloat16", tie_word_embeddings=False,
                     layers=tuple(layers), tensors=tuple(tensors), num_experts=128, experts_per_token=8)


def test_fit_reproduces_the_fit_params_readme():
    # tools/fit-params/README.md, RTX 4090: total 24077 MiB, free 20387 MiB
    # (61807 + 1024 - 42444, backed out of the logged deficit)
    p = llamacpp.plan(qwen3_30b_a3b_f16(), custom_device("cuda", 24077 * MiB),
                      {"era": "2025-12", "gguf_file_type": "F16", "free_memory": f"{20387}MiB"})
    log = [l.value for l in p.ledger if l.name.startswith("fit_")]
    assert log[0] == "projected to use 61807 MiB of device memory vs. 24077 MiB of free device memory"
    assert log[1] == "cannot fulfill margin of 1024 MiB, need to reduce device memory by 42444 MiB"
    # 36864 tokens x 96 KiB = 3456 MiB
    assert log[2] == "context size reduced from 40960 to 4096 -> need 3456 MiB less memory in total"
    assert p.engine_config["n_ctx"] == 4096 and p.line("kv_bytes") == 384 * MiB
    # logged: "48 layers (34 overflowing), 19187 MiB used, 1199 MiB free"
    assert p.line("overflowing_layers") == 34 and p.engine_config["n_gpu_layers"] == 49
    assert abs(p.line("device_used_bytes") - 19187 * MiB) < 64 * MiB


def test_metal_max_buffer_binds_a_single_huge_tensor():
    dev = dataclasses.replace(custom_device("metal", "64GiB"), max_buffer_bytes=1 * GiB)
    # one layer's K at 131072 cells: 1024 x 2 B x 131072 = 256 MiB: fine
    assert llamacpp.plan(LLAMA8B, dev, {"n_ctx": 131072, "n_seq_max": 1}).fits
    wide = dataclasses.replace(LLAMA8B, layers=(Layer(FULL, 64, 128, 128, 64),) * 32)   # 8192 wide: 2 GiB
    p = llamacpp.plan(wide, dev, {"n_ctx": 131072, "n_seq_max": 1})
    assert p.binding.name == "insufficient_memory" and "maxBufferLength" in p.binding.reason


@pytest.mark.parametrize("options, message", [
    ({"ctx_size": 4096}, "llamacpp has no option 'ctx_size'"),
    ({"type_k": "q3_k"}, "unsupported cache type"),
    ({"type_v": "q8_0", "flash_attn": "off"}, "requires flash_attn"),
    ({"flash_attn": "on", "era": "2024-03", "n_ctx": 4096}, "flash attention does not exist"),
    ({"era": "2023-06"}, "start at 2024-01"),
    ({"era": "June"}, "not a month"),
    ({"n_seq_max": 0}, "n_seq_max must be at least 1"),
    ({"fit": True, "frontend": "libllama"}, "--fit exists"),
    ({"frontend": "koboldcpp"}, "frontend 'koboldcpp'"),
])
def test_refusals(options, message):
    with pytest.raises(OptionsError, match=message):
        plan(**options)


def test_quantized_v_with_auto_fa_on_a_device_without_fa():
    with pytest.raises(OptionsError, match="requires Flash Attention"):
        plan(backend="webgpu", type_v="q8_0")


def test_weights_are_marked_estimates_with_the_default_file_type():
    p = plan()
    w = next(l for l in p.ledger if l.name == "weights_bytes")
    assert w.estimate and "Q4_K_M" in w.formula and "default" in w.note
    f16 = next(l for l in plan(gguf_file_type="F16").ledger if l.name == "weights_bytes")
    # F16 GGUF: 2-D weights at 2 B, 1-D at 4 B; Llama-3.1-8B has 8.03 B parameters
    assert 16.0e9 < f16.value < 16.1e9
    assert next(l for l in p.ledger if l.name == "compute_bytes").estimate


def test_compute_estimate_matches_pythia_on_metal():
    # ggml-ci pythia-1.4b, Metal, no FA, n_ctx 2048, ub 512: "Metal compute buffer size = 102.25 MiB"
    # = logits 50304 x 512 x 4 B + hidden 2048 x 512 x 4 B
    pythia = ModelSpec(name="pythia-1.4b", model_type="gpt_neox", source="test", hidden_size=2048, num_hidden_layers=24,
                       num_attention_heads=16, num_key_value_heads=16, head_dim=128, vocab_size=50304,
                       intermediate_size=8192, context_window=2048, dtype="float16", tie_word_embeddings=False,
                       layers=(Layer(FULL, 16, 128, 128, 16),) * 24, tensors=())
    p = plan(pythia, backend="metal", memory="10922MiB", n_ctx=2048, flash_attn=False, era="2025-02")
    assert p.memory["compute"] == int(102.25 * MiB)


# ---- properties -------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(a=st.integers(2, 96), b=st.integers(2, 96))
def test_more_memory_never_fewer_tokens(a, b):
    lo, hi = sorted((a, b))
    t_lo = plan(memory=f"{lo}GiB", n_seq_max=1).kv_tokens
    t_hi = plan(memory=f"{hi}GiB", n_seq_max=1).kv_tokens
    assert t_hi >= t_lo


@settings(max_examples=30, deadline=None)
@given(gib=st.integers(4, 40), kv=st.sampled_from(["q8_0", "q4_0", "q5_1", "iq4_nl", "q4_1", "q5_0"]))
def test_quantized_kv_never_fewer_tokens(gib, kv):
    f16 = plan(memory=f"{gib}GiB", n_seq_max=1, flash_attn="on").kv_tokens
    quant = plan(memory=f"{gib}GiB", n_seq_max=1, flash_attn="on", type_k=kv, type_v=kv).kv_tokens
    assert quant >= f16


def test_what_ifs_when_memory_binds():
    p = plan(memory="12GiB", n_seq_max=1)
    by = {w.change: w for w in p.what_if}
    q8 = by["q8_0 KV cache"]
    assert q8.kv_tokens > p.kv_tokens and q8.engine_config["type_k"] == "q8_0" and "-ctk q8_0" in q8.knob
    assert by["twice the device memory"].kv_tokens >= q8.kv_tokens or by["twice the device memory"].binding == "context_window"
    # a context the user set is not bound by memory: no KV-type what-if to offer
    assert not [w for w in plan(n_ctx=8192).what_if if "KV cache" in w.change]
