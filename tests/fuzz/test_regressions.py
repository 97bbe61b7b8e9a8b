"""Inputs the fuzzers found that once ended in a traceback; each now ends in a one-line error.

One test per fix, named after the input that broke it (the fix's commit says the same).
"""

from __future__ import annotations

import json
import struct

import pytest

from kvcap.errors import KvcapError, ModelError
from kvcap.model.safetensors_reader import parse_header


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg
    return msg


def test_safetensors_dtype_that_is_a_list():
    raw = json.dumps({"w": {"dtype": ["F16"], "shape": [2], "data_offsets": [0, 4]}}).encode()
    with pytest.raises(ModelError, match="unknown dtype") as e:
        parse_header(raw, "m.safetensors", 4)
    _one_line(e.value)


def test_mlc_prices_a_one_dimensional_router_bias():
    # Kimi-K2 (DeepSeek-V3 layout, no MTP) carries gate.e_score_correction_bias, a 1-D ROUTER
    # tensor: MLC's is_moe_gate looked at shape[-2] and raised IndexError on every device.
    import kvcap
    p = kvcap.plan(kvcap.load_model("moonshotai/Kimi-K2-Instruct"), "h100-sxm", engine="mlc")
    assert not p.fits        # ~1 TB of weights on one 80 GB card: a clean "does not fit"


def test_sglang_attention_free_model_is_refused_not_divided_by_zero():
    # RWKV has no KV heads: the TP split check computed tp % 0.
    import kvcap
    with pytest.raises(ModelError, match="linear-attention state pool") as e:
        kvcap.plan(kvcap.load_model("rwkv5_3b"), "h100-sxm", engine="sglang")
    _one_line(e.value)


def test_minimax_attn_type_list_holding_a_list():
    from kvcap.model import catalog, load_model
    entry = next(e for e in catalog.entries() if e.model_type == "minimax_m1")
    cfg = entry.config()
    cfg["attn_type_list"] = [[0, 0]] + cfg["attn_type_list"][1:]
    with pytest.raises(ModelError, match="attn_type_list") as e:
        load_model(cfg)
    _one_line(e.value)


@pytest.mark.parametrize("value", ["512", [512], float("inf"), {"a": 1}])
def test_mlc_fields_of_a_config_are_checked_counts(value):
    # A config.json's prefill_chunk_size reached MLC's `pcs > ctx` / int(pcs) raw: TypeError,
    # ValueError or OverflowError instead of a ModelError naming the field.
    import kvcap
    with pytest.raises(ModelError, match="'prefill_chunk_size'") as e:
        kvcap.plan(kvcap.load_model(_tiny_llama(prefill_chunk_size=value)), "rtx-4090", engine="mlc")
    _one_line(e.value)


def test_mlc_chat_config_limits_are_checked_counts(tmp_path):
    chat = {"model_type": "llama", "quantization": "q4f16_1", "context_window_size": "4k",
            "model_config": _tiny_llama()}
    (tmp_path / "mlc-chat-config.json").write_text(json.dumps(chat))
    from kvcap.model import load_model
    with pytest.raises(ModelError, match="'context_window_size'") as e:
        load_model(tmp_path)
    _one_line(e.value)
    chat["context_window_size"] = -1         # MLC's "no limit" stays accepted
    chat["model_config"]["prefill_chunk_size"] = 512.0
    (tmp_path / "mlc-chat-config.json").write_text(json.dumps(chat))
    assert load_model(tmp_path).mlc["compile_prefill_chunk_size"] == 512


def _tiny_llama(**over):
    cfg = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 96,
           "max_position_embeddings": 2048, "torch_dtype": "float16"}
    cfg.update(over)
    return cfg


# --- validation case files ------------------------------------------------------------------
def _case(**over):
    case = {"id": "c", "engine": "vllm", "engine_version": "0.10.0", "model": {"hf_config": _tiny_llama()},
            "device": {"backend": "cuda", "name": None, "total_memory_bytes": 80 << 30},
            "options": {}, "observed": {"num_gpu_blocks": 1}}
    case.update(over)
    return case


def _cases_file(tmp_path, *cases):
    p = tmp_path / "cases.jsonl"
    p.write_text("\n".join(json.dumps(c) for c in cases))
    return p


@pytest.mark.parametrize("over, field", [
    ({"device": 5}, "'device' must be an object"),
    ({"given": {"device_total_bytes": [1]}}, "'given.device_total_bytes' must be a finite number"),
    ({"given": 3.5}, "'given' must be an object"),
    ({"tolerance": 7}, "'tolerance' must be an object"),
    ({"tolerance": {"kv_cells": 2}}, "'tolerance.kv_cells'"),
    ({"device": {"total_memory_bytes": [1]}}, "'device.total_memory_bytes'"),
    ({"options": {"n_ctx": {"a": 1}}}, "'options.n_ctx'"),
    ({"observed": {"n_ctx": [1]}}, "'observed.n_ctx'"),
])
def test_case_of_the_wrong_shape_is_a_case_file_error(tmp_path, over, field):
    # Each of these reached a replay as is: AttributeError ('int' has no .get), TypeError
    # (int() of a list), ValueError (dict() of a string) instead of a one-line error.
    from kvcap.validate import CaseFileError, validate
    with pytest.raises(CaseFileError, match=field) as e:
        validate([_cases_file(tmp_path, _case(**over))])
    _one_line(e.value)


def test_case_file_path_with_a_nul_byte():
    from kvcap.validate import CaseFileError, load_cases
    with pytest.raises(CaseFileError, match="cannot read"):
        load_cases(["cases\x00.jsonl"])


@pytest.mark.parametrize("case, reason", [
    (_case(model={}), "no model.hf_config"),                                       # KeyError 'model'
    ({k: v for k, v in _case().items() if k != "device"}, ""),                       # KeyError 'device'
    (_case(engine="mlc", engine_version=None, options={"tensor_parallel_shards": "2"}),
     "tensor_parallel_shards must be a positive integer"),                         # int('2x') / str < int
    (_case(engine="llamacpp", engine_era="2025-06", options={"n_ctx": 512},
           model={"gguf_metadata": {"general.architecture": "llama", "llama.block_count": 2,
                                    "llama.embedding_length": [64], "llama.attention.head_count": 4}}),
     "llama.embedding_length must be an integer"),                                 # int // list
])
def test_replays_skip_a_malformed_case_with_a_reason(tmp_path, case, reason):
    from kvcap.validate import validate
    out = validate([_cases_file(tmp_path, case)])["cases"][0]
    assert out["status"] in ("skipped", "pass", "fail") and reason in out["reason"]


@pytest.mark.parametrize("scaling, field", [
    ({"type": "yarn", "factor": [4.0]}, "rope_scaling.factor"),
    ({"type": "dynamic", "factor": float("nan")}, "rope_scaling.factor"),
    ({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": [4096]},
     "rope_scaling.original_max_position_embeddings"),
])
def test_vllm_rope_scaling_of_the_wrong_type(scaling, field):
    # vLLM's derived max_model_len took float()/int() of the raw config values: TypeError.
    import kvcap
    with pytest.raises(ModelError, match=field) as e:
        kvcap.plan(kvcap.load_model(_tiny_llama(rope_scaling=scaling)), "h100-sxm", engine="vllm")
    _one_line(e.value)


def test_vllm_option_passed_as_none_is_unset():
    # max_num_batched_tokens=None reached min(max_num_seqs, None): TypeError.
    import kvcap
    model = kvcap.load_model(_tiny_llama())
    unset = kvcap.plan(model, "h100-sxm", engine="vllm", max_num_batched_tokens=None)
    assert unset.kv_tokens == kvcap.plan(model, "h100-sxm", engine="vllm").kv_tokens


@pytest.mark.parametrize("declared", [-2.5, ["a"], {"b": 1}])
def test_name_or_path_that_is_not_a_string(declared):
    # A family builder's error prefix did str(e).startswith(name) with a float name: TypeError.
    from kvcap.model import load_model
    m = load_model(_tiny_llama(_name_or_path=declared))
    assert m.name == "llama"
    with pytest.raises(ModelError) as e:
        load_model(_tiny_llama(_name_or_path=declared, hidden_size="wide"))
    _one_line(e.value)


@pytest.mark.parametrize("engine, device", [("mlc", "h100-sxm"), ("vllm", "h100-sxm"), ("llamacpp", "h100-sxm"),
                                            ("ollama", "h100-sxm"), ("sglang", "h100-sxm"), ("mlx", "m2-max-64gb")])
def test_every_option_passed_as_none_is_unset_or_refused(engine, device):
    # sglang tp_size=None reached `tp > device.count`; mlx prefill_step_size=None and
    # memory_limit=None reached int(None) and `<= None`: TypeErrors. Either None means
    # "unset" (the same plan) or the engine refuses it in one line.
    import kvcap
    from kvcap.engines import get_engine
    model = kvcap.load_model(_tiny_llama())
    base = kvcap.plan(model, device, engine=engine)
    for name in get_engine(engine).OPTIONS:
        try:
            p = kvcap.plan(model, device, engine=engine, **{name: None})
        except KvcapError as e:
            _one_line(e)
            continue
        assert p.kv_tokens == base.kv_tokens, name


@pytest.mark.parametrize("key, value", [("text_config", [[[]]]), ("text_config", 10**30), ("quantization_config", [1]),
                                        ("rope_scaling", "yarn")])
def test_sub_config_that_is_not_an_object(key, value):
    # vLLM's, SGLang's and MLX's weight pricing did (cfg.get("text_config") or {}).get(...) on
    # a list or a number: AttributeError.
    from kvcap.model import load_model
    with pytest.raises(ModelError, match=f"'{key}' must be an object") as e:
        load_model(_tiny_llama(**{key: value}))
    _one_line(e.value)


def test_vision_tower_model_type_that_is_an_object():
    # towers.check looked a dict model_type up in a dict: unhashable type.
    from kvcap.model import catalog, load_model
    entry = next(e for e in catalog.entries() if e.model_type == "llava")
    cfg = entry.config()
    cfg["vision_config"] = dict(cfg.get("vision_config") or {}, model_type={"nested": "clip_vision_model"})
    with pytest.raises(ModelError, match="vision tower") as e:
        load_model(cfg)
    _one_line(e.value)


def test_phi3_vision_embd_layer_that_is_a_number():
    from kvcap.model import catalog, load_model
    entry = next(e for e in catalog.entries() if isinstance(e.config().get("img_processor"), dict))
    cfg = dict(entry.config(), embd_layer=7)
    with pytest.raises(ModelError, match="'embd_layer' must be an object") as e:
        load_model(cfg)
    _one_line(e.value)


def test_mlc_tensor_cache_param_bytes_of_400_digits(tmp_path):
    # float(ParamBytes) overflowed: OverflowError instead of "disagrees with its records".
    from kvcap.model import load_model
    chat = {"model_type": "llama", "quantization": "q0f16", "model_config": _tiny_llama()}
    (tmp_path / "mlc-chat-config.json").write_text(json.dumps(chat))
    cache = {"metadata": {"ParamBytes": 10**400}, "records": [{"nbytes": 8, "records": [
        {"name": "w", "shape": [4], "dtype": "float16", "nbytes": 8, "byteOffset": 0}]}]}
    (tmp_path / "tensor-cache.json").write_text(json.dumps(cache))
    with pytest.raises(ModelError, match="ParamBytes .* disagrees with its records .8 bytes") as e:
        load_model(tmp_path)
    _one_line(e.value)


@pytest.mark.parametrize("over, field", [
    ({"rope_scaling": {"type": "linear", "factor": float("nan")}}, "rope_scaling.factor"),
    ({"rope_scaling": {"type": "linear", "factor": "4"}}, "rope_scaling.factor"),
    ({"seq_length": float("inf")}, "'seq_length'"),
])
def test_sglang_context_length_from_corrupt_numbers(over, field):
    # get_context_length's int(factor * length) of NaN: ValueError; of a string factor: TypeError.
    import kvcap
    with pytest.raises(ModelError, match=field) as e:
        kvcap.plan(kvcap.load_model(_tiny_llama(**over)), "h100-sxm", engine="sglang")
    _one_line(e.value)


# --- calibration files (kvcap plan --calibration FILE) -------------------------------------------
def _calibration(**over):
    doc = {"kvcap_calibration": 1, "device": {"name": "x", "backend": "cuda", "total_memory_bytes": 1 << 30},
           "date": "2025-01-01", "kernel": "torch", "copy_bandwidth_gbps": 1.0, "kernel_bandwidth_gbps": 1.0,
           "layouts": {"single": {"verdict": {"cliff_bytes": None, "max_ok_bytes": 1 << 20,
                                              "measured_up_to_bytes": 1 << 20, "tolerance": 0.1}}}}
    doc.update(over)
    return doc


@pytest.mark.parametrize("content", [
    b"[" * 100_000,                                                        # RecursionError
    b"\x8f\xff binary",                                                    # UnicodeDecodeError
    json.dumps(_calibration(layouts=[1])).encode(),                        # AttributeError: list.get
    json.dumps(_calibration(layouts=3.5)).encode(),
    json.dumps(_calibration(device={"name": "x", "backend": "cuda", "total_memory_bytes": float("inf")})).encode(),
])
def test_calibration_file_that_is_garbage(tmp_path, content):
    from kvcap.errors import OptionsError
    from kvcap.probe.calibration import load_calibration
    p = tmp_path / "cal.json"
    p.write_bytes(content)
    with pytest.raises(OptionsError, match="calibration") as e:
        load_calibration(p)
    _one_line(e.value)
    assert load_calibration_ok(tmp_path)


def load_calibration_ok(tmp_path) -> bool:
    from kvcap.probe.calibration import load_calibration
    p = tmp_path / "good.json"
    p.write_text(json.dumps(_calibration()))
    return load_calibration(p).max_ok_bytes == 1 << 20


@pytest.mark.parametrize("args", [["plan", "llama-3.1-8b", "--device=--"], ["plan", "llama-3.1-8b", "-d", "rtx-4090", "--count=--"],
                                  ["plot", "llama-3.1-8b", "-O", "x.png", "--engine=--"], ["models", "--family=--"],
                                  ["fit", "llama-3.1-8b", "-c", "8k", "--launch", "--model-ref=--"]])
def test_option_given_as_equals_double_dash(args, capsys):
    # argparse turns `--flag=--` into [] (not a string, not converted by type=int): commands
    # then called .strip()/.lower() on a list.
    from kvcap.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected one argument" in err


def test_engine_that_is_not_a_name():
    import kvcap
    from kvcap.errors import OptionsError
    with pytest.raises(OptionsError, match="an engine is given by name"):
        kvcap.plan(kvcap.load_model(_tiny_llama()), "rtx-4090", engine=["mlc"])


def test_phi3_vision_img_processor_model_name_that_is_an_object():
    from kvcap.model import catalog, load_model
    entry = next(e for e in catalog.entries() if isinstance(e.config().get("img_processor"), dict))
    cfg = entry.config()
    cfg["img_processor"] = dict(cfg["img_processor"], model_name={"a": 1})
    with pytest.raises(ModelError, match="vision tower") as e:
        load_model(cfg)
    _one_line(e.value)


def test_qwen3_next_mlp_only_layers_that_is_a_number():
    from kvcap.model import catalog, load_model
    entry = next(e for e in catalog.entries() if e.model_type == "qwen3_next")
    with pytest.raises(ModelError, match="'mlp_only_layers' must be a list") as e:
        load_model(dict(entry.config(), mlp_only_layers=3.5))
    _one_line(e.value)


def test_fit_over_a_hundred_thousand_nodes_is_refused_not_searched():
    # `kvcap fit … --nodes 100000` planned every node count: > 4 GiB and > 60 s.
    import kvcap
    from kvcap.advise.fit import MAX_GPUS_PER_NODE, MAX_NODES, fit
    from kvcap.errors import OptionsError
    model = kvcap.load_model("llama-3.1-8b")
    with pytest.raises(OptionsError, match=f"at most {MAX_NODES} nodes"):
        fit(model, 8192, nodes=100_000)
    with pytest.raises(OptionsError, match=f"at most {MAX_GPUS_PER_NODE} GPUs per node"):
        fit(model, 8192, max_gpus=2**31, complete=True)      # 28 s with --all before the bound
    assert fit(model, 8192, nodes=MAX_NODES, devices=[kvcap.get_device("h100-sxm")]).feasible


def test_case_model_name_that_is_an_object(tmp_path):
    # A llama.cpp case's model.name reached the family builder as its name: str.startswith(dict).
    from kvcap.validate import CaseFileError, validate
    case = _case(engine="llamacpp", model={"name": {"a": 1}, "gguf_metadata": {"general.architecture": "llama"}})
    with pytest.raises(CaseFileError, match="'model.name' must be a string or null"):
        validate([_cases_file(tmp_path, case)])


def test_observed_string_where_a_bounded_count_is_expected(tmp_path):
    # A TP>1 vLLM case judges its counts as upper bounds from given: float('float16') raised.
    from kvcap.validate import validate
    case = _case(options={"tensor_parallel_size": 2}, given={"available_kv_cache_bytes": 8 << 30},
                 device={"backend": "cuda", "name": None, "total_memory_bytes": None},
                 observed={"kv_cache_tokens": "float16", "num_gpu_blocks": 100})
    out = validate([_cases_file(tmp_path, case)])["cases"][0]
    field = next(f for f in out["fields"] if f["name"] == "kv_cache_tokens")
    assert field["ok"] is False


def test_phi3_vision_image_dim_out_that_is_an_object():
    from kvcap.model import catalog, load_model
    entry = next(e for e in catalog.entries() if isinstance(e.config().get("img_processor"), dict))
    cfg = entry.config()
    cfg["img_processor"] = dict(cfg["img_processor"], image_dim_out={"a": 1})
    with pytest.raises(ModelError, match="'image_dim_out'") as e:
        load_model(cfg)
    _one_line(e.value)


@pytest.mark.parametrize("bits", ["x", [4]])
def test_fit_on_an_mlx_checkpoint_whose_bits_are_not_a_number(bits):
    # fit's adapter took float() of the config's quantization.bits: ValueError / TypeError.
    import kvcap
    from kvcap.advise.fit import fit
    with pytest.raises(ModelError, match="'quantization.bits' must be a number of bits") as e:
        fit(kvcap.load_model(_tiny_llama(quantization={"bits": bits, "group_size": 64})), 1024)
    _one_line(e.value)


# --- MLX: a 2^40-token context walked chunk by chunk ------------------------------------------------
def _reference_kvcache(context, step):
    """KVCache.update_and_fetch chunk by chunk, as mlx_cache did before it skipped periods."""
    from kvcap.engines.mlx_cache import STEP, prefill_chunks
    cap = offset = 0
    for n in prefill_chunks(context, step):
        if offset + n > cap:
            if offset % STEP:
                cap = offset
            cap += -(-n // STEP) * STEP
        offset += n
    return cap


def _reference_rotating(context, step, max_size):
    from kvcap.engines.mlx_cache import STEP, prefill_chunks
    size = offset = idx = peak = 0
    started = False
    for n in prefill_chunks(context, step):
        if n > 1:
            if not started:
                size = n
            else:
                if not (idx == size or idx < offset):
                    size = idx
                trim = size - max_size + 1
                if trim > 0:
                    size -= trim
                size += n
            offset += n
            idx = size
        else:
            if not started or (offset >= size and size < max_size):
                size += min(STEP, max_size - offset)
                idx = offset
            if size > max_size:
                size = idx = max_size
            if idx == max_size:
                idx = 0
            offset += 1
            idx += 1
        started = True
        peak = max(peak, size)
    return peak, size


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=400, deadline=None)
@given(context=st.integers(min_value=0, max_value=20_000), step=st.integers(min_value=1, max_value=3000),
       max_size=st.integers(min_value=1, max_value=5000))
def test_mlx_cache_shortcuts_equal_the_chunk_by_chunk_walk(context, step, max_size):
    from kvcap.engines.mlx_cache import rotating_sizes, simulate_kvcache
    assert simulate_kvcache(context, step) == _reference_kvcache(context, step)
    assert rotating_sizes(context, step, max_size) == _reference_rotating(context, step, max_size)


def test_mlx_context_of_2_40_tokens_is_quick():
    # gemma-2 (sliding window) under MLX with context=2^40 walked ~5e8 prompt chunks one by
    # one (a list of them, too): > 30 s and +500 MiB.
    import time
    import kvcap
    model = kvcap.load_model("gemma2_2b")
    t0 = time.monotonic()
    for step in (2048, 1, 300):
        plan = kvcap.plan(model, "iphone-15-pro", engine="mlx", context=2**40, prefill_step_size=step)
        assert not plan.fits
    assert time.monotonic() - t0 < 10
