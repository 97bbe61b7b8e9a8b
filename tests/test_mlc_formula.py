"""MLC-LLM's InferForKVCache worked by hand, term by term (cpp/serve/config.cc).

The reference case is the BentoMLC log (Llama-3-8B-Instruct q4f16_1, a prebuilt library with
context 8192, prefill 1024, max_batch_size 80, on a 24 GB CUDA card):
  Under mode "server", max batch size will be set to 80, max KV cache token capacity will be set to 125706 …
  Estimated total single GPU memory usage: 5736.325 MB (Parameters: 4308.133 MB. KVCache: 1092.268 MB.
  Temporary buffer: 335.925 MB)   [local mode]
"""

import math

import pytest

from kvcap import plan
from kvcap.device import custom_device
from kvcap.model import load_model

MiB = 1 << 20
LIB = dict(compile_context_window_size=8192, compile_prefill_chunk_size=1024, compile_max_batch_size=80,
           quantization="q4f16_1")
DEVICE_TOTAL = 25_383_282_399     # backed out of the server line (validation case given)
TEMP_FUNC = 163_578_103           # the compiled max per-function bytes (doubled by MLC: 327,156,206)
PARAMS = 4_517_404_672            # worked in test_quant.py


@pytest.fixture(scope="module")
def llama3():
    return load_model("llama3_1_8b")


def terms(bs: int, pcs: int = 1024, qo: int = 32, kv: int = 8, hd: int = 128, layers: int = 32,
          vocab: int = 128256) -> dict:
    """Every term of EstimateMemoryUsageOnMode, for one model, spelled out."""
    return {
        "kv_bytes_per_token": hd * kv * layers * 4 + 1.25,                   # K and V, 2 bytes each, + 1.25
        "kv_aux": (bs + 1) * 88 + pcs * (qo + 1) * 8 + pcs * hd * (qo + kv) * 4 + 48 * MiB,
        "model_ws": pcs * 4 + bs * 4 + (2 * pcs + bs) * (hd * qo) * 2,
        "logit_ws": bs * 20 + bs * vocab * 16.125,
    }


def test_server_mode_capacity_by_hand(llama3):
    dev = custom_device("cuda", DEVICE_TOTAL)
    p = plan(llama3, dev, engine="mlc", mode="server", temp_buffer_bytes=TEMP_FUNC, **LIB)
    t = terms(bs=80)
    assert t["kv_bytes_per_token"] == 131_073.25
    assert t["kv_aux"] == 81 * 88 + 1024 * 33 * 8 + 1024 * 128 * 40 * 4 + 50_331_648 == 71_580_632
    assert t["model_ws"] == 4096 + 320 + 2128 * 4096 * 2 == 17_436_992
    assert t["logit_ws"] == 1600 + 80 * 128256 * 16.125 == 165_451_840
    budget = DEVICE_TOTAL * 0.85
    left = budget - PARAMS - 2 * TEMP_FUNC - t["kv_aux"] - t["model_ws"] - t["logit_ws"]
    capacity = int(left / t["kv_bytes_per_token"])
    assert capacity == 125_706                              # what MLC logged
    assert p.line("kv_bytes_per_token") == t["kv_bytes_per_token"]
    assert p.line("kv_aux_workspace") == t["kv_aux"]
    assert p.line("model_workspace") == t["model_ws"]
    assert p.line("logit_processor_workspace") == t["logit_ws"]
    assert p.line("temp_buffer_bytes") == 2 * TEMP_FUNC      # "×2 for safety"
    assert p.line("params_bytes") == PARAMS
    assert p.line("capacity_memory") == capacity
    # server: min(capacity, max_num_sequence × context) = min(125706, 80 × 8192)
    assert p.engine_config == {"max_num_sequence": 80, "max_total_sequence_length": 125_706,
                               "prefill_chunk_size": 1024, "max_single_sequence_length": 8192,
                               "gpu_memory_utilization": 0.85}
    assert p.binding.name == "memory" and p.kv_tokens == 125_706


def test_local_mode_log_line_by_hand(llama3):
    dev = custom_device("cuda", DEVICE_TOTAL)
    p = plan(llama3, dev, engine="mlc", mode="local", temp_buffer_bytes=TEMP_FUNC, **LIB)
    t = terms(bs=4)
    # local: batch min(4, 80); KV min(capacity, 8192, 8192); prefill min(1024, KV, context)
    assert p.engine_config["max_num_sequence"] == 4
    assert p.engine_config["max_total_sequence_length"] == 8192
    assert p.engine_config["prefill_chunk_size"] == 1024
    kv = 8192 * t["kv_bytes_per_token"] + t["kv_aux"]
    temp = t["model_ws"] + t["logit_ws"] + 2 * TEMP_FUNC
    total = PARAMS + 2 * TEMP_FUNC + t["kv_aux"] + t["model_ws"] + t["logit_ws"] + 8192 * t["kv_bytes_per_token"]
    assert f"{kv / MiB:.3f}" == "1092.268" and f"{PARAMS / MiB:.3f}" == "4308.133"
    assert abs(temp / MiB - 335.925) < 0.0006                 # the temp is known to the log's rounding
    assert p.line("estimated_kv_cache") == kv
    assert p.line("estimated_temporary") == temp
    assert p.line("estimated_total") == total
    # 8192 is both local's own limit and the compiled context: the context (a property of the
    # library) is named, since no mode would give one sequence more.
    assert p.binding.name == "context_window"
    assert p.memory["kv_cache"] == math.ceil(8192 * t["kv_bytes_per_token"])
    assert p.memory["params"] == PARAMS and p.memory["temp_buffer"] == 2 * TEMP_FUNC


def test_interactive_is_bound_by_the_context_window_when_memory_is_ample(llama3):
    p = plan(llama3, custom_device("cuda", "80GiB"), engine="mlc", mode="interactive",
             temp_buffer_bytes=TEMP_FUNC, **LIB)
    assert p.engine_config["max_num_sequence"] == 1
    assert p.engine_config["max_total_sequence_length"] == 8192
    assert p.binding.name == "context_window"
    # the three "Under mode" lines are all in the ledger
    assert p.line("local.max_total_sequence_length") == 8192
    t = terms(bs=80)
    server_cap = int((80 * 2 ** 30 * 0.85 - PARAMS - 2 * TEMP_FUNC - t["kv_aux"] - t["model_ws"] - t["logit_ws"])
                     / t["kv_bytes_per_token"])
    assert server_cap < 80 * 8192                                # so server mode is memory-bound
    assert p.line("server.max_total_sequence_length") == server_cap
    assert p.line("server.max_num_sequence") == 80


def test_local_mode_default_binds_a_long_context_model(llama3):
    # Llama-3.1 compiled with its own 131072 context: local stops at 8192 tokens whatever the memory.
    p = plan(llama3, custom_device("cuda", "80GiB"), engine="mlc", mode="local", temp_buffer_bytes=TEMP_FUNC,
             quantization="q4f16_1")
    assert p.engine_config["max_total_sequence_length"] == 8192
    assert p.engine_config["max_num_sequence"] == 4
    assert p.binding.name == "mode_default"
    lifted = [w for w in p.what_if if "8,192-token default" in w.change]
    assert lifted and lifted[0].kv_tokens > 8192 and "max_total_seq_length=" in lifted[0].knob


def test_insufficient_memory_prints_mlcs_own_words(llama3):
    dev = custom_device("cuda", "5GiB")
    p = plan(llama3, dev, engine="mlc", mode="local", temp_buffer_bytes=TEMP_FUNC, **LIB)
    t = terms(bs=4)
    available = 5 * 1024 ** 3 * 0.85 / MiB
    temporary = (2 * TEMP_FUNC + t["kv_aux"] + t["model_ws"] + t["logit_ws"]) / MiB
    first = ("Insufficient GPU memory error: The available single GPU memory is "
             f"{available:.3f} MB, which is less than the sum of model weight size ({PARAMS / MiB:.3f} MB) "
             f"and temporary buffer size ({temporary:.3f} MB).")
    assert first == ("Insufficient GPU memory error: The available single GPU memory is 4352.000 MB, which is "
                     "less than the sum of model weight size (4308.133 MB) and temporary buffer size (404.183 MB).")
    assert p.binding.name == "insufficient_memory" and p.binding.reason == first
    assert p.kv_tokens == 0 and not p.fits
    assert p.engine_config["max_total_sequence_length"] == 0
    assert any(w.startswith(first + "\n1. You can set a larger \"gpu_memory_utilization\" value.") for w in p.warnings)
    assert p.line("capacity_memory") < 0


def test_int32_cast_overflows_negative_on_x86_and_saturates_on_arm(llama3):
    # 64 TiB leaves (budget − rest) / 131073.25 ≈ 4.4e8 tokens: still an int.
    ok = plan(llama3, custom_device("cuda", "64TiB"), engine="mlc", mode="server", temp_buffer_bytes=TEMP_FUNC, **LIB)
    assert ok.line("capacity_memory") == int((64 * 2 ** 40 * 0.85 - PARAMS - 2 * TEMP_FUNC
                                              - sum(terms(80)[k] for k in ("kv_aux", "model_ws", "logit_ws")))
                                             / 131_073.25)
    # 512 TiB: ≈ 3.5e9 tokens, above INT_MAX. static_cast<int> on x86-64 gives INT_MIN, so MLC
    # reports insufficient memory on a device with plenty (issue #2791's symptom).
    big = custom_device("cuda", "512TiB")
    p = plan(llama3, big, engine="mlc", mode="server", temp_buffer_bytes=TEMP_FUNC, **LIB)
    assert p.line("capacity_memory") == -(2 ** 31)
    assert p.binding.name == "insufficient_memory"
    assert p.binding.reason.startswith("Insufficient GPU memory error: The available single GPU memory is 456340275.200 MB")
    # arm64 (fcvtzs) saturates instead: INT_MAX, then the server limit 80 × 8192 applies.
    q = plan(llama3, big, engine="mlc", mode="server", temp_buffer_bytes=TEMP_FUNC, host_arch="arm64", **LIB)
    assert q.line("capacity_memory") == 2 ** 31 - 1 and q.kv_tokens == 80 * 8192


def test_utilization_override_moves_the_budget(llama3):
    dev = custom_device("cuda", DEVICE_TOTAL)
    p = plan(llama3, dev, engine="mlc", mode="server", temp_buffer_bytes=TEMP_FUNC, gpu_memory_utilization=0.9, **LIB)
    t = terms(bs=80)
    left = DEVICE_TOTAL * 0.9 - PARAMS - 2 * TEMP_FUNC - t["kv_aux"] - t["model_ws"] - t["logit_ws"]
    assert p.kv_tokens == int(left / t["kv_bytes_per_token"]) > 125_706
    assert p.engine_config["gpu_memory_utilization"] == 0.9
    assert p.line("gpu_memory_utilization") == 0.9
