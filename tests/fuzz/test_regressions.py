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
