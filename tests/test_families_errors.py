"""Fail closed: what the builders do not understand is a one-line ModelError naming what is
supported; contradictory configs are refused. Plus properties of the layer schedule."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcap.errors import ModelError
from kvcap.model import catalog, load_model
from kvcap.model.families import BUILDERS, supported
from kvcap.model.spec import FULL, SLIDING

LLAMA = {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8,
         "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 1000, "max_position_embeddings": 2048}


def one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_unknown_model_type_names_the_supported_families():
    with pytest.raises(ModelError) as e:
        load_model({**LLAMA, "model_type": "fancy_new_arch"})
    msg = one_line(e)
    assert "'fancy_new_arch' is not supported" in msg and "llama" in msg and "gpt_oss" in msg


def test_remote_code_for_an_unknown_architecture_is_refused():
    cfg = {**LLAMA, "architectures": ["MyLlamaWithTricksForCausalLM"],
           "auto_map": {"AutoModelForCausalLM": "modeling_x.MyLlamaWithTricksForCausalLM"}}
    with pytest.raises(ModelError, match="needs remote code for architecture 'MyLlamaWithTricksForCausalLM'") as e:
        load_model(cfg)
    one_line(e)
    # the known remote-code checkpoints still load (ChatGLM, Orion, DeepSeek V3, Phi-3-small, …)
    for name in ("THUDM/glm-4-9b", "orion", "deepseek-ai/DeepSeek-V3", "microsoft/Phi-3-small-8k-instruct"):
        assert catalog.lookup(name).config().get("auto_map")
        load_model(name)


@pytest.mark.parametrize("patch, match", [
    ({"hidden_size": 250}, "not divisible by num_attention_heads 8 and the config has no head_dim"),
    ({"num_hidden_layers": 0}, "'num_hidden_layers' = 0 is out of range"),
    ({"num_hidden_layers": 10**9}, "beyond any real model"),       # would otherwise build 1e9 layers
    ({"num_key_value_heads": 3}, "not a multiple of num_key_value_heads 3"),
    ({"layer_types": ["full_attention"] * 3}, "'layer_types' has 3 entries for num_hidden_layers 4"),
    ({"layer_types": ["full_attention"] * 3 + ["mystery_attention"]}, "layer type 'mystery_attention' is not supported"),
    ({"layer_types": ["full_attention"] * 3 + ["sliding_attention"]}, "sliding layers but no 'sliding_window'"),
    ({"num_attention_heads": "eight"}, "'num_attention_heads' must be a number"),
])
def test_contradictory_or_unknown_fields(patch, match):
    with pytest.raises(ModelError, match=match) as e:
        load_model({**LLAMA, **patch})
    one_line(e)


def test_encoder_only_models_have_no_kv_cache():
    with pytest.raises(ModelError, match="encoder-only models have no KV cache"):
        load_model("snowflake-arctic-embed-m")


def test_wrappers_fail_closed_on_what_they_cannot_size():
    cfg = catalog.lookup("llava").config()
    with pytest.raises(ModelError, match="vision tower 'mystery_vit' is not supported; supported: .*clip_vision_model"):
        load_model({**cfg, "vision_config": {**cfg["vision_config"], "model_type": "mystery_vit"}})
    with pytest.raises(ModelError, match="needs a vision_config"):
        load_model({k: v for k, v in cfg.items() if k != "vision_config"})
    g4 = catalog.lookup("google/gemma-4-26B-A4B").config()
    with pytest.raises(ModelError, match="audio tower"):
        load_model({**g4, "audio_config": {"model_type": "gemma4_audio"}})
    with pytest.raises(ModelError, match="needs a text_config"):
        load_model({k: v for k, v in g4.items() if k != "text_config"})


def test_family_specific_contradictions():
    nem = catalog.lookup("nvidia/Nemotron-H-56B-Base-8K").config()
    with pytest.raises(ModelError, match="hybrid_override_pattern"):
        load_model({**nem, "hybrid_override_pattern": nem["hybrid_override_pattern"][:-1]})
    mix = catalog.lookup("mistralai/Mixtral-8x7B-Instruct-v0.1").config()
    with pytest.raises(ModelError, match="exceeds num_local_experts"):
        load_model({**mix, "num_experts_per_tok": 9})
    q = catalog.lookup("Qwen/Qwen3-Next-80B-A3B-Thinking").config()
    with pytest.raises(ModelError, match="linear_num_value_heads 30 is not a multiple"):
        load_model({**q, "linear_num_value_heads": 30})
    g4 = catalog.lookup("google/gemma-4-26B-A4B").config()
    with pytest.raises(ModelError, match="no layer would own a cache"):
        load_model({**g4, "text_config": {**g4["text_config"], "num_kv_shared_layers": 30}})


def test_supported_lists_every_builder_but_the_refusals():
    assert "bert" in BUILDERS and "bert" not in supported()
    assert {"gpt_oss", "deepseek_v3", "qwen3_next", "nemotron_h", "llama4", "gemma3"} <= set(supported())


@settings(max_examples=60, deadline=None)
@given(n_layers=st.integers(1, 48), pattern=st.integers(1, 8), window=st.integers(1, 4096),
       context=st.integers(1, 200_000))
def test_interleaved_schedules_follow_the_pattern_and_never_exceed_full_length(n_layers, pattern, window, context):
    from kvcap.commands.inspect_summary import kv_summary
    cfg = {"model_type": "gemma3_text", "hidden_size": 256, "num_hidden_layers": n_layers, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 512, "vocab_size": 1000,
           "sliding_window": window, "sliding_window_pattern": pattern, "max_position_embeddings": 1 << 20}
    m = load_model(cfg)
    assert [l.kind for l in m.layers] == [FULL if (i + 1) % pattern == 0 else SLIDING for i in range(n_layers)]
    kv = kv_summary(m, context)
    full = kv["sequence_bytes_all_full"]["fp16/bf16"]
    assert kv["bytes_per_token"]["fp16/bf16"] == n_layers * 2 * 64 * 2 * 2
    n_full = n_layers // pattern
    assert kv["sequence_bytes"]["fp16/bf16"] == (n_full * context + (n_layers - n_full) * min(context, window)) * 512
    assert kv["sequence_bytes"]["fp16/bf16"] <= full
