"""kvcap verify on the CPU: what it allocates for a plan, line by line, and --find-limit."""

import dataclasses
import json
from importlib.util import find_spec

import pytest

import kvcap
from kvcap.device.spec import DeviceSpec
from kvcap.errors import ProbeError
from kvcap.plan import MEMORY, Binding, Plan
from kvcap.probe import torchdev, verify
from kvcap.probe import verify_layouts as VL

TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 256,
        "max_position_embeddings": 4096, "torch_dtype": "float16", "_name_or_path": "tiny"}
KiB = 1024


def tiny_plan(engine="mlc", kv_tokens=1000, memory=None, config=None):
    model = kvcap.load_model(TINY)
    weights = model.num_params * 2
    defaults = {
        "mlc": ({"params": weights, "kv_cache": kv_tokens * 257, "temp_buffer": 64 * KiB, "kv_aux_workspace": 8 * KiB,
                 "model_workspace": 4 * KiB, "logit_processor_workspace": 2 * KiB, "total": 0, "budget": 1 << 30},
                {"max_num_sequence": 4, "max_total_sequence_length": kv_tokens, "prefill_chunk_size": 64}),
        "vllm": ({"weights": weights, "kv_cache": kv_tokens // 16 * 16 * 256, "activation_peak": 32 * KiB,
                  "non_torch": 1 << 20, "cudagraph": 8 * KiB, "unbudgeted": 1 << 20},
                 {"num_gpu_blocks": kv_tokens // 16, "block_size": 16, "max_num_seqs": 3,
                  "max_num_batched_tokens": 48, "kv_cache_dtype": "auto"}),
        "llamacpp": ({"weights": weights, "kv_cache": kv_tokens * 256, "compute": 16 * KiB, "host_weights": 0,
                      "host_kv_cache": 0},
                     {"n_ctx": kv_tokens, "n_seq_max": 2, "n_ubatch": 32, "type_k": "f16", "type_v": "f16"}),
    }
    mem, cfg = defaults[engine]
    return Plan(engine=engine, model=model, device=DeviceSpec("cpu", "cpu", 1 << 30), engine_config=config or cfg,
                memory=memory or mem, binding=Binding(MEMORY, "test"), ledger=(), kv_tokens=kv_tokens)


def test_kv_shapes_hand_worked():
    # Tiny: 2 layers, 2 KV heads x 16 dims, fp16 -> 2 * 2 * 16 * 2 B = 128 B per token per layer.
    mlc = VL.kv_shape(tiny_plan("mlc", 1000))
    assert mlc.pages == 64                    # ceil(1000 / 16) + 1 (TVM paged_kv_cache.cc)
    assert mlc.total_bytes == 64 * 16 * 128 * 2
    vllm = VL.kv_shape(tiny_plan("vllm", 1000))
    assert (vllm.pages, vllm.tokens, vllm.batch, vllm.prefill_chunk) == (62, 992, 3, 48)
    assert vllm.total_bytes == 62 * 16 * 128 * 2
    lcpp = VL.kv_shape(tiny_plan("llamacpp", 1024))
    assert (lcpp.pages, lcpp.layers_per_buffer) == (64, 2) and lcpp.total_bytes == 1024 * 128 * 2


def test_unknown_lines_and_models_are_refused():
    with pytest.raises(ProbeError, match="mystery"):
        VL.roles(tiny_plan("mlc", memory={"params": 1, "mystery": 2}))
    with pytest.raises(ProbeError, match="supports engines"):
        VL.roles(dataclasses.replace(tiny_plan(), engine="sglang"))
    with pytest.raises(ProbeError, match="16-bit"):
        VL.kv_shape(tiny_plan("vllm", config={"num_gpu_blocks": 4, "kv_cache_dtype": "fp8"}))
    tiny = kvcap.load_model(TINY)
    sliding = dataclasses.replace(tiny.layers[0], kind="sliding", window=128)
    hybrid = dataclasses.replace(tiny, layers=(sliding, tiny.layers[1]))
    with pytest.raises(ProbeError, match="uniform"):
        VL.kv_shape(dataclasses.replace(tiny_plan(), model=hybrid))


needs_torch = pytest.mark.skipif(find_spec("torch") is None,
                                 reason="torch is the probe's extra (pip install 'kvcap[probe]')")


@needs_torch
@pytest.mark.parametrize("engine", ["mlc", "vllm", "llamacpp"])
def test_verify_allocates_every_line(engine):
    plan = tiny_plan(engine, 1024)
    r = verify.verify(plan, torchdev.open_device("cpu"))
    assert r.run_ok
    by_name = {l.name: l for l in r.lines}
    assert set(by_name) == set(plan.memory)
    for l in r.lines:
        if l.role in (VL.WEIGHTS, VL.WORKSPACE):
            assert l.allocated == l.planned
        elif l.role == VL.KV:
            assert l.allocated == VL.kv_shape(plan).total_bytes
        else:
            assert l.allocated is None
    weights = next(l for l in r.lines if l.role == VL.WEIGHTS)
    assert weights.note == "model shapes and dtype"     # fp16 tensors add up to the plan's bytes
    assert r.planned_total == sum(plan.memory[n] for n, role in VL.roles(plan).items()
                                  if role in (VL.WEIGHTS, VL.KV, VL.WORKSPACE))
    json.dumps(r.to_json())
    from kvcap.probe.verify_report import render
    assert "plan:" in render(r)


@needs_torch
def test_quantized_weights_are_priced_as_planned():
    plan = tiny_plan("mlc", 256)
    mem = dict(plan.memory, params=12345)
    r = verify.verify(dataclasses.replace(plan, memory=mem), torchdev.open_device("cpu"))
    w = next(l for l in r.lines if l.name == "params")
    assert w.allocated == 12345 and "byte tensors" in w.note


@needs_torch
def test_find_limit_bisects_to_the_largest_cache_that_fits(monkeypatch):
    import torch
    # A simulated device: a KV cache above 100,000 bytes does not allocate.
    real = verify._kv_buffers

    def limited(shape, dev):
        if shape.total_bytes > 100_000:
            raise torch.OutOfMemoryError("out of memory (simulated)")
        return real(shape, dev)

    monkeypatch.setattr(verify, "_kv_buffers", limited)
    device = torchdev.open_device("cpu")
    monkeypatch.setattr(device, "free_bytes", lambda: 50_000)
    # vLLM: 16-token blocks of 2 layers x 16 tokens x 128 B = 4096 B; 100,000 // 4096 = 24 blocks = 384 tokens.
    r = verify.verify(tiny_plan("vllm", 160), device, find_limit=True)
    assert r.limit_tokens == 384
    assert r.plan_over_limit == pytest.approx(160 / 384)
    assert all(ok == (t <= 384) for t, ok in r.limit_trials)
    # MLC: (ceil(T/16) + 1) pages x 4096 B <= 100,000 -> at most 24 pages -> T <= 23 * 16 = 368 tokens.
    r = verify.verify(tiny_plan("mlc", 100), device, find_limit=True)
    assert r.limit_tokens == 368
    # A plan larger than the limit: the planned run fails, the bisection searches below it.
    r = verify.verify(tiny_plan("mlc", 1000), device, find_limit=True)
    assert not r.run_ok and r.limit_tokens == 368 and r.plan_over_limit > 1
    assert "did not allocate" in r.notes[0]


def test_plans_of_real_engines_have_only_known_lines():
    device = DeviceSpec("H100", "cuda", 80 * (1 << 30))
    for engine in ("mlc", "vllm", "llamacpp"):
        try:
            from kvcap.engines import get_engine
            get_engine(engine)
        except kvcap.OptionsError:
            continue     # that policy has not landed
        plan = kvcap.plan("llama-3.1-8b", device, engine=engine)
        assert set(VL.roles(plan).values()) >= {VL.WEIGHTS, VL.KV}
        assert VL.kv_shape(plan).tokens >= plan.kv_tokens


@needs_torch
def test_verify_cli_on_cpu(capsys):
    from kvcap.cli import main
    rc = main(["verify", "qwen2.5-0.5b", "--engine", "mlc", "--device", "cpu", "--memory", "3GiB", "--mode",
               "interactive", "--temp-buffer", "16MiB", "--prefill-chunk-size", "32", "--context-window-size", "256",
               "-q", "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["run_ok"] and doc["kv_tokens"] == 256
    kv = next(l for l in doc["lines"] if l["role"] == "kv")
    # Qwen2.5-0.5B: 24 layers x 2 KV heads x 64 dims; (256/16 + 1) pages of 16 tokens x K,V x 2 B.
    assert kv["allocated"] == 24 * 17 * 16 * 2 * 2 * 64 * 2
