"""The vLLM policy end to end: budget, defaults by release, refusals in vLLM's words, auto-fit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

import kvcap
from kvcap.cli import main
from kvcap.device import custom_device
from kvcap.engines import vllm
from kvcap.errors import OptionsError

GiB = 1 << 30
LLAMA31_8B_PARAMS = 8_030_261_248          # meta-llama/Llama-3.1-8B, as published
DEV80 = custom_device("cuda", "80GiB")


def plan(model="meta-llama/Llama-3.1-8B-Instruct", device=DEV80, available=None, **options):
    m = kvcap.load_model(model)
    return vllm.plan(m, device, options, available=available)


def test_budget_chain_for_llama31_8b():
    p = plan(engine_version="0.11.0", max_model_len=8192)
    total = 80 * GiB
    assert p.line("requested_memory") == int(total * 0.9) == 72 * GiB     # 0.11 default util 0.90
    # Weights: bf16 parameters plus the 131072 x 128 RoPE cos/sin table, also bf16.
    assert p.line("weights") == LLAMA31_8B_PARAMS * 2 + 131072 * 128 * 2
    avail = p.line("available_kv_cache_memory")
    assert avail == (72 * GiB - p.line("weights") - p.line("activation_peak") - p.line("non_torch_memory"))
    # 32 layers x 8 heads x 256 x 2 B = 128 KiB a token; a 16-token block costs 2 MiB.
    assert p.line("bytes_per_block") == 2 * 1024 * 1024
    assert p.line("num_gpu_blocks") == avail // (2 * 1024 * 1024)
    assert p.kv_tokens == p.line("num_gpu_blocks") * 16
    assert p.line("max_concurrency") == p.line("num_gpu_blocks") / (8192 // 16)
    assert p.binding.name == "memory" and p.fits
    assert {l.name for l in p.ledger if l.estimate} == {"weights", "activation_peak", "non_torch_memory",
                                                         "available_kv_cache_memory"}
    # The available memory's error bar is the sum of its estimated terms' bars.
    bars = [l.error_bar for l in p.ledger if l.estimate and l.name != "available_kv_cache_memory"]
    assert p.ledger_line("available_kv_cache_memory").error_bar == pytest.approx(sum(bars))


def test_activation_estimate_matches_the_h100_logs():
    # llm-d's vLLM 0.11 H100 runs logged peak activation 4.76 GiB (Llama-3.1-8B) and 5.64 GiB
    # (Qwen3-32B) at the H100 defaults (8192 batched tokens, 1024 sequences).
    h100 = custom_device("cuda", 85_017_493_504, name="NVIDIA H100 80GB HBM3")
    for model, logged in (("meta-llama/Llama-3.1-8B-Instruct", 4.76), ("Qwen/Qwen3-32B", 5.64)):
        act = plan(model, h100, engine_version="0.11.0", max_model_len=16000).line("activation_peak")
        assert abs(act / GiB - logged) < 0.06


def test_batch_defaults_follow_the_device():
    small = custom_device("cuda", "24GiB")
    a100 = custom_device("cuda", "80GiB", name="NVIDIA A100-SXM4-80GB")
    cfg = lambda d, v: plan(device=d, engine_version=v, max_model_len=8192).engine_config
    assert (cfg(DEV80, "0.11.0")["max_num_seqs"], cfg(DEV80, "0.11.0")["max_num_batched_tokens"]) == (1024, 8192)
    assert (cfg(small, "0.11.0")["max_num_seqs"], cfg(small, "0.11.0")["max_num_batched_tokens"]) == (256, 2048)
    assert cfg(a100, "0.11.0")["max_num_seqs"] == 256           # A100s excepted from 0.9
    assert cfg(a100, "0.8.5")["max_num_seqs"] == 1024


def test_release_defaults():
    util = lambda v: plan(engine_version=v, max_model_len=8192).line("gpu_memory_utilization")
    assert util("0.19.0") == 0.90 and util("0.20.0") == 0.92
    names = lambda **o: {l.name for l in plan(max_model_len=8192, **o).ledger}
    assert "cudagraph_memory_estimate" in names(engine_version="0.20.0")
    assert "cudagraph_memory_estimate" not in names(engine_version="0.20.0", enforce_eager=True)
    assert "cudagraph_memory_estimate" not in names(engine_version="0.19.0")
    assert "cudagraph_memory_estimate" in names(engine_version="0.19.0", estimate_cudagraphs=True)


def test_cudagraph_estimate_costs_blocks():
    with_cg = plan(engine_version="0.20.0", max_model_len=8192, gpu_memory_utilization=0.9)
    eager = plan(engine_version="0.20.0", max_model_len=8192, gpu_memory_utilization=0.9, enforce_eager=True)
    diff = eager.line("available_kv_cache_memory") - with_cg.line("available_kv_cache_memory")
    assert diff == with_cg.line("cudagraph_memory_estimate") > 0


QWEN32 = "Qwen/Qwen3-32B"          # 64 layers x 8 KV heads x 128: 256 KiB a token


def test_too_long_error_in_vllm_0_11_words():
    p = plan(QWEN32, engine_version="0.11.0", max_model_len=40960, kv_cache_memory_bytes=4 * GiB)
    # Need: 40960 tokens x 262144 B = 10 GiB; 4 GiB hold 16384 tokens.
    assert not p.fits and p.binding.name == "insufficient_memory" and p.kv_tokens == 0
    assert p.binding.reason == (
        "To serve at least one request with the models's max seq len (40960), (10.00 GiB KV cache is needed, "
        "which is larger than the available KV cache memory (4.00 GiB). Based on the available memory, the "
        "estimated maximum model length is 16384. Try increasing `gpu_memory_utilization` or decreasing "
        "`max_model_len` when initializing the engine.")
    assert p.line("estimated_max_model_len") == 16384


def test_too_long_error_wording_by_release():
    reason = lambda v: plan(QWEN32, engine_version=v, max_model_len=40960, available=4 * GiB).binding.reason
    assert reason("0.14.0").startswith("To serve at least one request with the models's max seq len (40960), "
                                       "(10.0 GiB KV cache is needed")
    assert reason("0.14.0").endswith("when initializing the engine. See "
                                     "https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.")
    assert "model's max seq len" in reason("0.22.0") and "models's" not in reason("0.22.0")
    # 0.8.5 lost the number (two string statements): "…(4.00 GiB). Based on the available memory,  Try…"
    assert "(4.00 GiB). Based on the available memory,  Try increasing" in reason("0.8.5")
    assert reason("0.6.5") == (
        "The model's max seq len (40960) is larger than the maximum number of tokens that can be stored in KV "
        "cache (16384). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing "
        "the engine.")


def test_no_memory_error():
    p = plan(QWEN32, engine_version="0.11.0", max_model_len=8192, available=-1)
    assert p.binding.reason.startswith("No available memory for the cache blocks.")
    assert p.line("num_gpu_blocks") == 0


def test_auto_fit_max_model_len():
    p = plan(QWEN32, engine_version="0.14.0", max_model_len=-1, kv_cache_memory_bytes=4 * GiB)
    assert p.fits and p.binding.name == "max_model_len"
    assert p.engine_config["max_model_len"] == 16384
    assert p.binding.reason.startswith("Auto-fit max_model_len: reduced from 40960 to 16384")
    assert p.kv_tokens == 16384 and p.line("max_concurrency") == 1.0
    full = plan(QWEN32, engine_version="0.14.0", max_model_len=-1, kv_cache_memory_bytes=20 * GiB)
    assert full.engine_config["max_model_len"] == 40960 and full.binding.name == "user_override"
    none = plan(QWEN32, engine_version="0.14.0", max_model_len=-1, kv_cache_memory_bytes=1024)
    assert none.binding.reason.startswith("Cannot auto-fit max_model_len: not enough GPU memory")
    with pytest.raises(OptionsError, match="0.14"):
        plan(QWEN32, engine_version="0.11.0", max_model_len=-1)


def test_kv_cache_memory_bytes_replaces_the_profile():
    p = plan(engine_version="0.11.0", max_model_len=8192, kv_cache_memory_bytes=10 * GiB)
    assert p.line("available_kv_cache_memory") == 10 * GiB
    assert p.line("num_gpu_blocks") == 10 * GiB // (2 * 1024 * 1024) == 5120
    assert p.binding.name == "user_override"


def test_pipeline_parallel_smallest_stage_wins():
    p = plan(engine_version="0.11.0", max_model_len=8192, pipeline_parallel_size=2)
    # 16 + 16 layers; the last stage also holds lm_head and the sampler's logits, so it has less.
    assert p.line("bytes_per_block") == 65536 * 16
    assert p.line("num_gpu_blocks") == p.line("available_kv_cache_memory") // (65536 * 16)
    assert "stage 1 of 2" in next(l.formula for l in p.ledger if l.name == "weights")


@pytest.mark.parametrize("options, message", [
    ({"gpu_memory_utilization": 1.5, "engine_version": "0.11.0"}, "GPU memory utilization must be less than 1.0. Got 1.5."),
    ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization: Input should be"),
    ({"kv_cache_dtype": "int3"}, "kv_cache_dtype 'int3' is not one of vLLM's cache dtypes"),
    ({"tensor_parallel_size": 3}, "Total number of attention heads (32) must be divisible by tensor parallel size (3)."),
    ({"max_model_len": 200000}, "User-specified max_model_len (200000) is greater than the derived max_model_len"),
    ({"block_size": 48, "engine_version": "0.11.0"}, "block_size 48 is not one vLLM 0.11.0 accepts"),
    ({"n_ctx": 4096}, "vllm has no option 'n_ctx'"),
    ({"engine_version": "0.2.4"}, "older than kvcap models"),
    ({"quantization": "bitsandbytes"}, "quantization 'bitsandbytes' is not priced"),
])
def test_values_vllm_refuses(options, message):
    with pytest.raises(OptionsError) as e:
        plan(**options)
    assert message in str(e.value)


def test_other_backends_are_refused():
    with pytest.raises(OptionsError, match="CUDA and ROCm"):
        plan(device=custom_device("metal", "64GiB"))


def test_cli_plan_and_refusal(capsys):
    assert main(["plan", "Qwen/Qwen3-8B", "--engine", "vllm", "--backend", "cuda", "--memory", "80GiB",
                 "--max-model-len", "-1", "--set", "engine_version=0.14.0"]) == 0
    assert "max_model_len=40960" in capsys.readouterr().out
    assert main(["plan", "Qwen/Qwen3-8B", "--engine", "vllm", "--backend", "cuda", "--memory", "80GiB",
                 "--gpu-memory-utilization", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gpu_memory_utilization" in err


@settings(max_examples=40, deadline=None)
@given(a=st.integers(20, 200), b=st.integers(20, 200), version=st.sampled_from(["0.6.5", "0.11.0", "0.21.0"]))
def test_more_memory_never_fewer_tokens(a, b, version):
    lo, hi = sorted((a, b))
    t = lambda g: plan(device=custom_device("cuda", f"{g}GiB"), engine_version=version,
                       max_model_len=4096, max_num_seqs=256, max_num_batched_tokens=4096)
    assert t(lo).line("num_gpu_blocks") <= t(hi).line("num_gpu_blocks")


@settings(max_examples=30, deadline=None)
@given(gib=st.integers(20, 200), dtype=st.sampled_from(["fp8", "fp8_e4m3", "fp8_e5m2"]),
       model=st.sampled_from(["meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-8B", "openai/gpt-oss-20b"]))
def test_fp8_kv_never_fewer_tokens_than_auto(gib, dtype, model):
    d = custom_device("cuda", f"{gib}GiB")
    auto = plan(model, d, max_model_len=4096)
    fp8 = plan(model, d, max_model_len=4096, kv_cache_dtype=dtype)
    assert fp8.line("num_gpu_blocks") >= auto.line("num_gpu_blocks")
    assert fp8.line("kv_cache_tokens") >= auto.line("kv_cache_tokens")


def test_what_ifs_name_the_knob_and_deliver():
    refused = plan(QWEN32, engine_version="0.11.0", max_model_len=40960, kv_cache_memory_bytes=4 * GiB)
    shorter = [w for w in refused.what_if if w.knob.startswith("--max-model-len")]
    assert len(shorter) == 1 and shorter[0].knob == "--max-model-len 16384"
    assert shorter[0].binding == "user_override" and shorter[0].kv_tokens == 16384
    ok = plan(max_model_len=8192, engine_version="0.11.0")
    fp8 = next(w for w in ok.what_if if w.knob == "--kv-cache-dtype fp8")
    assert fp8.kv_tokens > ok.kv_tokens and fp8.gain == fp8.kv_tokens / ok.kv_tokens


def test_v0_splits_blocks_over_pipeline_stages_in_its_check():
    # V0 serves each PP stage's virtual engine from num_gpu_blocks // pp blocks.
    p = plan(engine_version="0.7.3", max_model_len=16384, pipeline_parallel_size=2, available=GiB)
    blocks = p.line("num_gpu_blocks")
    assert blocks == GiB // (65536 * 16) == 1024       # 16 layers a stage, 64 KiB pages
    assert not p.fits and f"stored in KV cache ({16 * (blocks // 2)})." in p.binding.reason
