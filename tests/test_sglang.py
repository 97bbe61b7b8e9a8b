"""SGLang's KV pool, worked by hand: MHA/GQA, MLA, fp8, pages, caps, hybrid SWA, refusals, a real log."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kvcap
from kvcap.device import custom_device
from kvcap.engines import sglang
from kvcap.engines.sglang_weights import rank_numel
from kvcap.errors import DeviceError, ModelError, OptionsError
from kvcap.model.spec import COL, EMBED, FULL, LINEAR, MLA, RECURRENT, REP, ROW, SLIDING, Layer, ModelSpec, StateTensor, Tensor
from kvcap.plan import INSUFFICIENT, MEMORY, USER_OVERRIDE

GiB, MiB = 1 << 30, 1 << 20


def spec(layers, tensors=None, kv=2, hd=64, heads=8, arch="LlamaForCausalLM", ctx=32768, dtype="bfloat16") -> ModelSpec:
    # 64 MiB of bf16 weights: embed 2048 x 4096 + one linear 4096 x 6144 = 33,554,432 params
    tensors = tensors or (Tensor("embed_tokens", (2048, 4096), EMBED, REP), Tensor("w", (4096, 6144), LINEAR, COL))
    return ModelSpec(name="t", model_type="llama", source="test", hidden_size=512, num_hidden_layers=len(layers),
                     num_attention_heads=heads, num_key_value_heads=kv, head_dim=hd, vocab_size=2048,
                     intermediate_size=1024, context_window=ctx, dtype=dtype, tie_word_embeddings=True,
                     layers=tuple(layers), tensors=tuple(tensors), architecture=arch,
                     config={"max_position_embeddings": ctx})


def gpu(gib=10, count=1):
    return custom_device("cuda", gib * GiB, name="gpu", count=count)


BASE = dict(mem_fraction_static=0.5, startup_overhead=1 * GiB)


def test_gqa_pool_by_hand():
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4)
    p = sglang.plan(m, gpu(10), BASE)
    # pre = 10 - 1 = 9 GiB; weights = 33,554,432 x 2 B = 64 MiB = 0.0625 GiB; post = 8.9375 GiB
    # rest = 8.9375 - 9 x (1 - 0.5) = 4.4375 GiB = 4,764,729,344 B
    # cell = 2 KV heads x (64 + 64) x 4 layers x 2 B = 2048 B -> 2,326,528 tokens
    assert p.line("weights") == 64 * MiB
    assert p.line("cell_size") == 2048
    assert p.kv_tokens == 4_764_729_344 // 2048 == 2_326_528
    assert p.binding.name == MEMORY
    assert p.engine_config["max_total_num_tokens"] == p.kv_tokens
    # 0.5.23: max_running_requests = min(max(int(2,326,528 / 32768 x 512), 2048) capped at 4096, tokens // 2)
    assert p.engine_config["max_running_requests"] == 4096
    assert p.engine_config["max_req_len"] == 32767


def test_fp8_kv_halves_the_cell():
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4)
    p = sglang.plan(m, gpu(10), {**BASE, "kv_cache_dtype": "fp8_e4m3"})
    assert p.line("cell_size") == 1024
    assert p.kv_tokens == 4_764_729_344 // 1024


def test_page_size_rounds_down():
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4)
    p = sglang.plan(m, gpu(10), {**BASE, "page_size": 64})
    # 2,326,528 = 36,352 x 64 already; take a cell that leaves a remainder: 3 layers -> 1536 B
    assert p.kv_tokens % 64 == 0
    m3 = spec([Layer(FULL, 2, 64, 64, 8)] * 3)
    p3 = sglang.plan(m3, gpu(10), {**BASE, "page_size": 64})
    assert 4_764_729_344 // 1536 == 3_102_037
    assert p3.kv_tokens == 3_102_037 // 64 * 64 == 3_102_016


def test_tp_splits_weights_and_replicates_kv_heads():
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4, kv=2)
    k_proj = Tensor("layers.0.k_proj", (2 * 64, 512), LINEAR, COL)
    # 2 KV heads over 4 ranks: each rank keeps one whole head (QKVParallelLinear replicates)
    assert rank_numel(m, k_proj, 4) == 64 * 512
    assert rank_numel(m, Tensor("o", (512, 512), LINEAR, ROW), 4) == 512 * 128
    # the vocabulary pads to a multiple of 64 then splits: 1000 -> 1024 -> 256 rows per rank
    assert rank_numel(m, Tensor("embed_tokens", (1000, 512), EMBED, REP), 4) == 256 * 512
    p = sglang.plan(m, gpu(10, count=4), {**BASE, "tp_size": 4})
    # cell per rank: max(1, 2 // 4) = 1 head x 128 x 4 layers x 2 B = 1024 B
    assert p.line("cell_size") == 1024
    # weights per rank: embed 2048 x 4096 / 4 + linear 4096 x 6144 / 4 -> 16 MiB
    assert p.line("weights") == 16 * MiB
    # rest = (9 - 1/64) - 4.5 = 4.484375 GiB
    assert p.kv_tokens == int(4.484375 * GiB) // 1024


def test_mla_latent_is_not_split_by_tp():
    layers = [Layer(MLA, 128, 192, 128, 128, kv_lora_rank=512, qk_rope_head_dim=64)] * 3
    m = spec(layers, kv=128, hd=192, heads=128, arch="DeepseekV3ForCausalLM")
    one = sglang.plan(m, gpu(10), BASE)
    eight = sglang.plan(m, gpu(10, count=8), {**BASE, "tp_size": 8})
    # (512 + 64) x 3 layers x 2 B = 3456 B per token, on every rank
    assert one.line("cell_size") == eight.line("cell_size") == 3456
    assert one.kv_tokens == 4_764_729_344 // 3456


def test_max_total_tokens_caps_the_pool():
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4)
    p = sglang.plan(m, gpu(10), {**BASE, "max_total_tokens": 100_000})
    assert p.kv_tokens == 100_000 and p.binding.name == USER_OVERRIDE
    assert any(w.knob == "drop --max-total-tokens" for w in p.what_if)
    big = sglang.plan(m, gpu(10), {**BASE, "max_total_tokens": 10**9})
    assert big.kv_tokens == 2_326_528 and "larger than the profiled value" in big.warnings[0]


def test_weights_that_leave_no_pool_do_not_fit():
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4)
    p = sglang.plan(m, gpu(10), {**BASE, "mem_fraction_static": 0.005})
    # rest = 8.9375 - 9 x 0.995 < 0
    assert p.kv_tokens == 0 and p.binding.name == INSUFFICIENT and not p.fits
    assert "mem-fraction-static" in p.binding.reason


def test_small_pool_warns_about_the_context():
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4)
    p = sglang.plan(m, gpu(10), {**BASE, "max_total_tokens": 1000})
    assert p.engine_config["max_req_len"] == 999
    assert any("fewer than --context-length" in w for w in p.warnings)


def test_hybrid_swa_pool_for_listed_architectures():
    layers = [Layer(SLIDING, 2, 64, 64, 8, window=128), Layer(FULL, 2, 64, 64, 8)] * 2
    hybrid = sglang.plan(spec(layers, arch="GptOssForCausalLM"), gpu(10), BASE)
    # full layers: 2 x 2 heads x 128 x 2 B = 1024 B; SWA layers the same, times the ratio 0.8
    assert hybrid.line("cell_size") == pytest.approx(1024 + 0.8 * 1024)
    assert hybrid.kv_tokens == int(4_764_729_344 // (1024 + 0.8 * 1024))
    assert hybrid.line("swa_max_total_num_tokens") == int(hybrid.kv_tokens * 0.8)
    # an architecture SGLang does not list keeps its sliding layers in the full pool
    plain = sglang.plan(spec(layers, arch="Gemma2ForCausalLM"), gpu(10), BASE)
    assert plain.line("cell_size") == 2048 and plain.kv_tokens == 2_326_528


def test_refusals():
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4)
    with pytest.raises(OptionsError, match="SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN"):
        sglang.plan(m, gpu(), {"context_length": 65536})
    with pytest.raises(OptionsError, match="no option"):
        sglang.plan(m, gpu(), {"gpu_memory_utilization": 0.9})
    with pytest.raises(OptionsError, match="not a choice of this release"):
        sglang.plan(m, gpu(), {"kv_cache_dtype": "bf16", "engine_version": "0.4.6"})
    with pytest.raises(OptionsError, match="not a choice"):
        sglang.plan(m, gpu(), {"kv_cache_dtype": "fp4_e2m1"})
    with pytest.raises(OptionsError, match="in \\(0, 1\\]"):
        sglang.plan(m, gpu(), {"mem_fraction_static": 1.5})
    with pytest.raises(OptionsError, match="needs 2 GPUs"):
        sglang.plan(m, gpu(), {"tp_size": 2})
    with pytest.raises(OptionsError, match="not divisible"):
        sglang.plan(m, gpu(count=4), {"tp_size": 3})
    with pytest.raises(DeviceError, match="cuda and rocm"):
        sglang.plan(m, custom_device("metal", 32 * GiB), {})
    rec = [Layer(RECURRENT, state=(StateTensor("ssm", (8, 64, 16)),)), Layer(FULL, 2, 64, 64, 8)]
    with pytest.raises(ModelError, match="Mamba"):
        sglang.plan(spec(rec), gpu(), {})


def test_context_length_rule():
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4)
    m = dataclasses.replace(m, config={"max_position_embeddings": 32768, "rope_scaling": {"factor": 4.0, "type": "yarn"}})
    # SGLang multiplies by the rope-scaling factor unless it is llama3 or names the original length
    assert sglang.derived_context_length(m) == 131072
    m2 = dataclasses.replace(m, config={"max_position_embeddings": 131072,
                                        "rope_scaling": {"factor": 8.0, "rope_type": "llama3"}})
    assert sglang.derived_context_length(m2) == 131072


def test_default_fraction_is_not_monotone_in_memory():
    """SGLang's own heuristic: crossing 60 GiB picks a bigger prefill chunk and the 10 GiB floor."""
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4)
    below = sglang.plan(m, custom_device("cuda", 61439 * MiB), {"startup_overhead": GiB})
    above = sglang.plan(m, custom_device("cuda", 61440 * MiB), {"startup_overhead": GiB})
    # 61,439 MiB (< 60 GiB tier): 512 + 4096 x 1.5 + 32 x 2 + 128 + 50 x 8 = 7248 -> 0.882
    # 61,440 MiB (the 60 GiB tier): 512 + 12288 + 512 + 128 + 464 = 13904 -> 0.774
    assert below.line("mem_fraction_static") == 0.882 and above.line("mem_fraction_static") == 0.774
    assert above.kv_tokens < below.kv_tokens


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=4, max_value=200), st.integers(min_value=1, max_value=64))
def test_more_memory_never_fewer_tokens_at_a_fixed_fraction(gib, extra):
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4)
    small = sglang.plan(m, gpu(gib), BASE)
    big = sglang.plan(m, gpu(gib + extra), BASE)
    assert big.kv_tokens >= small.kv_tokens


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=2, max_value=200), st.sampled_from(["fp8_e4m3", "fp8_e5m2"]))
def test_fp8_kv_never_fewer_tokens(gib, kv):
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4)
    auto = sglang.plan(m, gpu(gib), {"startup_overhead": GiB})
    fp8 = sglang.plan(m, gpu(gib), {"startup_overhead": GiB, "kv_cache_dtype": kv})
    assert fp8.kv_tokens >= auto.kv_tokens


def test_real_log_qwq_32b_on_four_l4():
    """An SGLang ~0.4.3 launch (Mar 2025) of Qwen/QwQ-32B with --tensor-parallel-size 4 on 4 x L4 (23,034 MiB).

    From the log: mem_fraction_static=0.85, chunked_prefill_size=2048, cuda_graph_max_bs=80 (all defaults);
    "Load weight begin. avail mem=21.63 GB", "Load weight end ... avail mem=6.09 GB, mem usage=15.54 GB",
    "max_total_num_tokens=46611, … max_running_requests=2049, context_len=131072".
    QwQ-32B has Qwen2.5-32B's shapes (64 layers, 8 KV heads of 128, vocab 152064).
    """
    m = kvcap.load_model("Qwen/Qwen2.5-32B")
    l4 = custom_device("cuda", 23034 * MiB, name="L4", count=4)
    given = {"tp_size": 4, "engine_version": "0.4.3", "startup_overhead": 23034 * MiB - int(21.63 * GiB),
             "weights_memory": int(15.54 * GiB)}
    p = sglang.plan(m, l4, given)
    assert (p.line("mem_fraction_static"), p.line("chunked_prefill_size"), p.line("cuda_graph_max_bs")) == (0.85, 2048, 80)
    # rest = 6.09 - 21.63 x 0.15 = 2.8455 GiB; cell = 2 heads x 256 x 64 layers x 2 B = 65,536 B -> 46,621 tokens.
    # The log prints GB to two decimals (±0.005 each for pre and post: ±94 tokens).
    assert p.line("cell_size") == 65536
    assert abs(p.kv_tokens - 46611) <= 94
    # 0.4.x: min(tokens // 2, max_num_reqs + 1) with max_num_reqs = max(int(46,6xx / 131072 x 512), 2048)
    assert p.engine_config["max_running_requests"] == 2049
    assert p.engine_config["context_len"] == 131072
    # End to end the weights are exact (15.26 GiB per rank); the log's 15.54 GiB also holds loader
    # buffers, so the estimate is high by about 10 %.
    e2e = sglang.plan(m, l4, {"tp_size": 4, "engine_version": "0.4.3"})
    assert e2e.line("weights") / GiB == pytest.approx(15.258, abs=0.01)
    assert 1.0 < e2e.kv_tokens / 46611 < 1.15


def test_weights_bigger_than_the_gpu_suggest_tensor_parallelism():
    # 64 MiB of weights on a 1 GiB card with 1 GiB of startup overhead: nothing is free before loading
    tensors = (Tensor("embed_tokens", (2048, 4096), EMBED, REP), Tensor("w", (4096, 6144), LINEAR, COL))
    m = spec([Layer(FULL, 2, 64, 64, 8)] * 4, tensors=tensors)
    p = sglang.plan(m, custom_device("cuda", GiB + 40 * MiB, count=1), {**BASE})
    assert not p.fits and "do not fit" in p.binding.reason and "--tp-size" in p.binding.reason
    # tp 2: 40 - 32 = 8 MiB after loading, under the 40 x (1 - 0.5) = 20 MiB slack -> still no pool;
    # tp 4: 40 - 16 - 20 = 4 MiB for 1 head x 128 x 4 layers x 2 B = 1024 B per token -> 4096 tokens
    tps = [w for w in p.what_if if w.knob.startswith("--tp-size")]
    assert [(w.knob, w.kv_tokens) for w in tps] == [("--tp-size 4", 4096)]


def test_quantized_checkpoint_uses_its_stored_bytes():
    m = dataclasses.replace(spec([Layer(FULL, 2, 64, 64, 8)] * 4), quantization={"method": "fp8"},
                            stored_bytes={"float8_e4m3fn": 30 * MiB, "bfloat16": 2 * MiB})
    one = sglang.plan(m, gpu(10), BASE)
    assert one.line("weights") == 32 * MiB
    assert not next(l for l in one.ledger if l.name == "weights").estimate
    # tp 2: every tensor here splits in half, so each rank holds half the stored bytes (an estimate)
    two = sglang.plan(m, gpu(10, count=2), {**BASE, "tp_size": 2})
    line = next(l for l in two.ledger if l.name == "weights")
    assert line.value == 16 * MiB and line.estimate
    with pytest.raises(ModelError, match="HuggingFace checkpoints"):
        sglang.plan(dataclasses.replace(m, quantization={"format": "gguf"}), gpu(10), BASE)
