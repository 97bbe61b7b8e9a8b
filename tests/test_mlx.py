"""The MLX-LM policy on a Mac: working set, MLX's memory limit, maxBufferLength, rotating and quantized caches."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcap.device import custom_device
from kvcap.engines import mlx
from kvcap.engines.mlx_memory import launch_from, need_at
from kvcap.errors import DeviceError, ModelError, OptionsError
from kvcap.model.spec import COL, EMBED, FULL, LINEAR, MLA, RECURRENT, REP, SLIDING, Layer, ModelSpec, StateTensor, Tensor
from kvcap.plan import CONTEXT_WINDOW, INSUFFICIENT, MEMORY, USER_OVERRIDE

GiB, MiB = 1 << 30, 1 << 20


def spec(layers, ctx=131072, kv=8, hd=128, heads=32, tensors=None, config=None) -> ModelSpec:
    # 1 GiB of fp16 weights in one array: 8192 x 65536 x 2 B
    tensors = tensors or (Tensor("w", (8192, 65536), LINEAR, COL),)
    return ModelSpec(name="t", model_type="llama", source="test", hidden_size=1024, num_hidden_layers=len(layers),
                     num_attention_heads=heads, num_key_value_heads=kv, head_dim=hd, vocab_size=1024,
                     intermediate_size=2048, context_window=ctx, dtype="float16", tie_word_embeddings=True,
                     layers=tuple(layers), tensors=tuple(tensors), config=config or {})


def mac(ws_gib=16.0, ram_gib=None, max_buffer=None):
    d = custom_device("metal", int(ws_gib * GiB), name="mac")
    return dataclasses.replace(d, ram_bytes=None if ram_gib is None else int(ram_gib * GiB), max_buffer_bytes=max_buffer)


GQA = [Layer(FULL, 8, 128, 128, 32)] * 4   # K and V: 8 x 128 x 2 B = 2 KiB per token per layer each


def test_kv_arrays_at_a_given_context():
    p = mlx.plan(spec(GQA), mac(16, 32), {"context": 5000})
    # 5000 tokens -> 5120 per array; 4 layers x (K + V) x 5120 x 8 heads x 128 x 2 B = 80 MiB
    assert p.line("kv_cache") == 4 * 2 * 5120 * 8 * 128 * 2 == 80 * MiB
    assert p.line("weights") == 1 * GiB
    assert p.kv_tokens == 5000 and p.binding.name == USER_OVERRIDE
    # batch 3 makes every array three times larger
    p3 = mlx.plan(spec(GQA), mac(16, 32), {"context": 5000, "batch": 3})
    assert p3.line("kv_cache") == 3 * 80 * MiB and p3.kv_tokens == 15000


def test_memory_limit_by_version_and_ram():
    m = spec(GQA)
    # MLX >= 0.13: min(1.5 x 16 GiB, 0.95 x 32 GiB) = 24 GiB; with 20 GiB of RAM 0.95 x 20 = 19 GiB
    assert launch_from(m, mac(16, 32), {}).memory_limit == 24 * GiB
    assert launch_from(m, mac(16, 20), {}).memory_limit == int(0.95 * 20 * GiB)
    # before 0.13 the RAM term did not exist
    assert launch_from(m, mac(16, 20), {"mlx_version": "0.12.0"}).memory_limit == 24 * GiB
    assert launch_from(m, mac(16, 20), {"memory_limit": 10 * GiB}).memory_limit == 10 * GiB


def test_largest_context_in_the_working_set():
    m = spec(GQA, ctx=10_000_000)
    p = mlx.plan(m, mac(4, 8), {})
    n = need_at(launch_from(m, mac(4, 8), {}), p.kv_tokens, 1)
    after = need_at(launch_from(m, mac(4, 8), {}), p.kv_tokens + 1, 1)
    assert n.total <= 4 * GiB < after.total
    assert p.binding.name == MEMORY
    # the paging band reaches further, up to MLX's memory limit min(6, 7.6) GiB
    assert p.line("context_in_memory_limit") > p.line("context_in_working_set") == p.kv_tokens


def test_fits_but_will_page_band():
    m = spec(GQA)
    # 3 GiB of KV at 196,608 tokens (4 layers x 2 arrays x 2 KiB x 196,608) + 1 GiB weights > 3.5 GiB working set
    p = mlx.plan(m, mac(3.5, 8), {"context": 196608})
    assert p.line("kv_cache") == 3 * GiB
    assert p.binding.name == mlx.PAGING and p.fits and p.kv_tokens == 196608
    assert any("page" in w for w in p.warnings)
    # past MLX's memory limit min(1.5 x 3.5, 0.95 x 8) = 5.25 GiB it does not fit
    over = mlx.plan(m, mac(3.5, 8), {"context": 196608 * 2})
    assert over.binding.name == INSUFFICIENT and not over.fits


def test_max_buffer_length_binds_before_the_working_set():
    # 32 KV heads x 128 x 2 B = 8 KiB per token per array; a 1 GiB maxBufferLength holds 131,072 tokens
    m = spec([Layer(FULL, 32, 128, 128, 32)] * 2, ctx=1_000_000)
    d = mac(100, 128, max_buffer=1 * GiB)
    p = mlx.plan(m, d, {})
    assert p.binding.name == mlx.MAX_BUFFER
    assert p.kv_tokens == 131072
    given_ctx = mlx.plan(m, d, {"context": 131073})
    assert given_ctx.binding.name == INSUFFICIENT
    assert "[metal::malloc] Attempting to allocate 1075838976 bytes" in given_ctx.binding.reason  # 131,328 x 8 KiB


def test_unfused_attention_scores_count_against_the_buffer_limit():
    # head dim 256 takes the unfused path: a 2048-token chunk's scores are [1, 8 q heads, 2048, kv] fp16
    m = spec([Layer(FULL, 2, 256, 256, 8)] * 2, ctx=1_000_000, kv=2, hd=256, heads=8)
    d = mac(100, 128, max_buffer=1 * GiB)
    p = mlx.plan(m, d, {})
    assert p.binding.name == mlx.MAX_BUFFER
    # 8 x 2048 x kv x 2 B <= 1 GiB  ->  kv <= 32,768 for the last full chunk
    assert 32768 <= p.kv_tokens < 36000
    assert "scores" in need_at(launch_from(m, d, {}), p.kv_tokens + 4096, 1).largest_name


def test_rotating_cache_bounds_memory():
    m = spec(GQA, ctx=1_000_000)
    p = mlx.plan(m, mac(4, 8), {"max_kv_size": 4096})
    # the arrays stop growing at 4096 (+ a 2047-token prefill overhang), so the model's window binds
    assert p.binding.name == CONTEXT_WINDOW and p.kv_tokens == 1_000_000
    assert p.line("cache_tokens") == "RotatingKVCache(4096): 6,143"
    assert any("keeps the last 4,096 tokens" in w for w in p.warnings)


def test_sliding_layers_use_their_window_and_ignore_max_kv_size():
    layers = [Layer(SLIDING, 8, 128, 128, 32, window=1024), Layer(FULL, 8, 128, 128, 32)] * 2
    p = mlx.plan(spec(layers), mac(16, 32), {"context": 10000, "max_kv_size": 2048})
    # sliding: peak 1023 + 2048 = 3071 tokens; full: 10,240
    assert p.line("cache_tokens") == "RotatingKVCache(1024): 3,071, KVCache: 10,240"
    assert any("ignores --max-kv-size" in w for w in p.warnings)


def test_quantized_cache_after_the_start():
    m = spec(GQA)
    plain = mlx.plan(m, mac(16, 32), {"context": 8192})
    q = mlx.plan(m, mac(16, 32), {"context": 8192, "kv_bits": 4, "quantized_kv_start": 0})
    # 8192 tokens x 4 layers x 2 x 8 heads x (16 words x 4 B + 2 x 2 x 2 B) = 72/256 of the fp16 bytes
    assert q.line("kv_cache") == plain.line("kv_cache") * 72 // 256
    # below --quantized-kv-start (default 5000) the cache is still fp16
    short = mlx.plan(m, mac(16, 32), {"context": 4096, "kv_bits": 4})
    assert short.line("kv_cache") == mlx.plan(m, mac(16, 32), {"context": 4096}).line("kv_cache")
    # past it, the fp16 arrays and their quantized copy coexist at the conversion
    late = need_at(launch_from(m, mac(16, 32), {"kv_bits": 4}), 6000, 1)
    assert late.kv > need_at(launch_from(m, mac(16, 32), {"kv_bits": 4, "quantized_kv_start": 0}), 6000, 1).kv


def test_mla_caches_the_latent():
    layers = [Layer(MLA, 16, 192, 128, 16, kv_lora_rank=512, qk_rope_head_dim=64)] * 2
    m = spec(layers, kv=16, hd=192, heads=16)
    p = mlx.plan(m, mac(16, 32), {"context": 256})
    # keys: the 512-wide latent, values: the 64-wide rope key, one head: (512 + 64) x 2 B x 256 x 2 layers
    assert p.line("kv_cache") == (512 + 64) * 2 * 256 * 2


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=2.0, max_value=64.0), st.floats(min_value=0.5, max_value=32.0))
def test_more_working_set_never_fewer_tokens(ws, extra):
    m = spec(GQA, ctx=4_000_000)
    small = mlx.plan(m, mac(ws, 128), {})
    big = mlx.plan(m, mac(ws + extra, 128), {})
    assert big.kv_tokens >= small.kv_tokens


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=300_000), st.sampled_from([2, 4, 8]))
def test_quantized_kv_never_more_cache_bytes(context, bits):
    m = spec(GQA)
    fp16 = need_at(launch_from(m, mac(16, 32), {}), context, 1)
    q = need_at(launch_from(m, mac(16, 32), {"kv_bits": bits, "quantized_kv_start": 0}), context, 1)
    assert q.kv <= fp16.kv


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=3.0, max_value=48.0), st.sampled_from([4, 8]))
def test_quantized_kv_never_fewer_tokens_where_scores_are_materialised_anyway(ws, bits):
    # head dim 256 has no fused prompt kernel, so quantizing adds no score arrays
    m = spec([Layer(FULL, 4, 256, 256, 16)] * 8, ctx=4_000_000, kv=4, hd=256, heads=16)
    plain = mlx.plan(m, mac(ws, 128), {})
    q = mlx.plan(m, mac(ws, 128), {"kv_bits": bits, "quantized_kv_start": 0})
    assert q.kv_tokens >= plain.kv_tokens


def test_quantized_kv_materialises_scores_for_fused_head_dims():
    """mlx-lm's quantized attention (models/base.py quantized_scaled_dot_product_attention) computes
    the scores with quantized_matmul, so a long prompt chunk costs [B, heads, 2048, kv] again."""
    m = spec(GQA)
    fused = need_at(launch_from(m, mac(16, 32), {}), 65536, 1)
    quant = need_at(launch_from(m, mac(16, 32), {"kv_bits": 4, "quantized_kv_start": 0}), 65536, 1)
    # chunks: 31 x 2048, then 2047 against all 65,535 keys -> the biggest scores are
    # 32 q heads x 2047 x 65,535 x 2 B, held twice (scores and softmax)
    assert quant.activations - fused.activations >= 2 * 32 * 2047 * 65535 * 2
    assert quant.largest_array == 32 * 2047 * 65535 * 2


def test_refusals():
    m = spec(GQA)
    with pytest.raises(DeviceError, match="Metal"):
        mlx.plan(m, custom_device("cuda", 80 * GiB), {})
    with pytest.raises(OptionsError, match="NYI"):
        mlx.plan(m, mac(), {"kv_bits": 4, "max_kv_size": 1024})
    with pytest.raises(OptionsError, match="kv-bits"):
        mlx.plan(m, mac(), {"kv_bits": 7})
    with pytest.raises(OptionsError, match="no option"):
        mlx.plan(m, mac(), {"n_ctx": 4096})
    rec = [Layer(RECURRENT, state=(StateTensor("s", (8, 64)),)), Layer(FULL, 8, 128, 128, 32)]
    with pytest.raises(ModelError, match="ArraysCache"):
        mlx.plan(spec(rec), mac(), {})
    gptq = spec(GQA, config={"quantization_config": {"quant_method": "gptq"}})
    with pytest.raises(ModelError, match="MLX-format"):
        mlx.plan(gptq, mac(), {})


def test_mlx_checkpoint_quantization_and_convert_option():
    m = spec(GQA, tensors=(Tensor("embed_tokens", (32768, 4096), EMBED, REP),), config={"quantization": {"group_size": 64, "bits": 4}})
    p = mlx.plan(m, mac(16, 32), {"context": 256})
    # 32768 x 4096 / 2 = 64 MiB of words + 32768 x 64 groups x 2 B x 2 = 8 MiB
    assert p.line("weights") == 72 * MiB
    with pytest.raises(OptionsError, match="already quantized"):
        mlx.plan(m, mac(16, 32), {"q_bits": 8})
    plain = spec(GQA, tensors=(Tensor("embed_tokens", (32768, 4096), EMBED, REP),))
    assert mlx.plan(plain, mac(16, 32), {"context": 256, "q_bits": 4}).line("weights") == 72 * MiB
