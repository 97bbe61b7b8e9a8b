"""GGUF metadata -> HF config fields, per architecture, checked by hand and on the validation cases."""

from __future__ import annotations

import json

import pytest

from kvcap.errors import ModelError
from kvcap.model.gguf_config import ARCH_MODEL_TYPE, config_from_gguf


def test_gemma3_270m_sliding_pattern_from_the_unsloth_case():
    # llamacpp-unsloth-7530 quotes this metadata; llama.cpp: gemma3 set_swa_pattern(6),
    # layer i slides iff i % 6 < 5, so of 18 layers 5, 11 and 17 are global.
    meta = {"general.architecture": "gemma3", "gemma3.block_count": 18, "gemma3.embedding_length": 640,
            "gemma3.attention.head_count": 4, "gemma3.attention.head_count_kv": 1,
            "gemma3.attention.key_length": 256, "gemma3.attention.value_length": 256,
            "gemma3.attention.sliding_window": 512, "gemma3.context_length": 32768,
            "gemma3.feed_forward_length": 2048}
    cfg = config_from_gguf(meta)
    assert cfg["model_type"] == "gemma3_text" and cfg["sliding_window"] == 512
    assert [i for i, t in enumerate(cfg["layer_types"]) if t == "full_attention"] == [5, 11, 17]
    assert cfg["sliding_window_pattern"] == 6 and cfg["head_dim"] == 256 and cfg["num_key_value_heads"] == 1


def test_explicit_per_layer_swa_pattern_wins():
    meta = {"general.architecture": "gemma3", "gemma3.block_count": 4, "gemma3.embedding_length": 64,
            "gemma3.attention.head_count": 2, "gemma3.attention.sliding_window": 128,
            "gemma3.attention.sliding_window_pattern": (True, False, False, True)}
    assert config_from_gguf(meta)["layer_types"] == [
        "sliding_attention", "full_attention", "full_attention", "sliding_attention"]


def test_gpt_oss_alternates_sliding_and_full_starting_with_sliding():
    meta = {"general.architecture": "gpt-oss", "gpt-oss.block_count": 4, "gpt-oss.embedding_length": 2880,
            "gpt-oss.attention.head_count": 64, "gpt-oss.attention.head_count_kv": 8,
            "gpt-oss.attention.key_length": 64, "gpt-oss.attention.value_length": 64,
            "gpt-oss.attention.sliding_window": 128, "gpt-oss.expert_count": 32, "gpt-oss.expert_used_count": 4,
            "gpt-oss.expert_feed_forward_length": 2880}
    cfg = config_from_gguf(meta)
    assert cfg["layer_types"] == ["sliding_attention", "full_attention"] * 2
    assert (cfg["model_type"], cfg["num_local_experts"], cfg["num_experts_per_tok"], cfg["intermediate_size"]) == (
        "gpt_oss", 32, 4, 2880)


def test_absorbed_mla_deepseek_gguf_back_to_hf_fields():
    # DeepSeek-V3 converted after llama.cpp PR #12801: one 576-wide K head (512 latent + 64 rope),
    # per-head widths kept in *_mla: qk_nope = 192 - 64 = 128, v_head_dim = 128.
    meta = {"general.architecture": "deepseek2", "deepseek2.block_count": 61, "deepseek2.embedding_length": 7168,
            "deepseek2.attention.head_count": 128, "deepseek2.attention.head_count_kv": 1,
            "deepseek2.attention.key_length": 576, "deepseek2.attention.value_length": 512,
            "deepseek2.attention.key_length_mla": 192, "deepseek2.attention.value_length_mla": 128,
            "deepseek2.attention.kv_lora_rank": 512, "deepseek2.attention.q_lora_rank": 1536,
            "deepseek2.rope.dimension_count": 64, "deepseek2.expert_count": 256, "deepseek2.expert_used_count": 8,
            "deepseek2.expert_shared_count": 1, "deepseek2.leading_dense_block_count": 3,
            "deepseek2.expert_feed_forward_length": 2048, "deepseek2.expert_gating_func": 2,
            "deepseek2.expert_weights_scale": 2.5}
    cfg = config_from_gguf(meta)
    assert cfg["model_type"] == "deepseek_v3"
    assert (cfg["kv_lora_rank"], cfg["qk_rope_head_dim"], cfg["qk_nope_head_dim"], cfg["v_head_dim"]) == (512, 64, 128, 128)
    assert cfg["num_key_value_heads"] == 128 and cfg["q_lora_rank"] == 1536
    assert (cfg["n_routed_experts"], cfg["n_shared_experts"], cfg["first_k_dense_replace"]) == (256, 1, 3)
    assert cfg["num_nextn_predict_layers"] == 0 and cfg["routed_scaling_factor"] == 2.5
    assert cfg["_gguf"]["key_length"] == 576 and cfg["_gguf"]["head_count_kv"] == 1


def test_pre_mla_deepseek_gguf_and_softmax_gating_is_v2():
    meta = {"general.architecture": "deepseek2", "deepseek2.block_count": 27, "deepseek2.embedding_length": 2048,
            "deepseek2.attention.head_count": 16, "deepseek2.attention.head_count_kv": 16,
            "deepseek2.attention.key_length": 192, "deepseek2.attention.value_length": 128,
            "deepseek2.attention.kv_lora_rank": 512, "deepseek2.rope.dimension_count": 64}
    cfg = config_from_gguf(meta)
    assert cfg["model_type"] == "deepseek_v2" and cfg["qk_nope_head_dim"] == 128 and cfg["q_lora_rank"] is None


def test_glm4moe_nextn_layer_is_split_off():
    meta = {"general.architecture": "glm4moe", "glm4moe.block_count": 47, "glm4moe.nextn_predict_layers": 1,
            "glm4moe.embedding_length": 4096, "glm4moe.attention.head_count": 96,
            "glm4moe.attention.head_count_kv": 8, "glm4moe.attention.key_length": 128,
            "glm4moe.attention.value_length": 128}
    cfg = config_from_gguf(meta)
    assert (cfg["num_hidden_layers"], cfg["num_nextn_predict_layers"]) == (46, 1)


def test_qwen3_next_ssm_keys_map_back_to_linear_attention_fields():
    # Qwen3-Next-80B: linear_key_head_dim 128, 16 key heads, 32 value heads of 128, conv 4.
    meta = {"general.architecture": "qwen3next", "qwen3next.block_count": 48, "qwen3next.embedding_length": 2048,
            "qwen3next.attention.head_count": 16, "qwen3next.attention.head_count_kv": 2,
            "qwen3next.attention.key_length": 256, "qwen3next.attention.value_length": 256,
            "qwen3next.ssm.conv_kernel": 4, "qwen3next.ssm.state_size": 128, "qwen3next.ssm.group_count": 16,
            "qwen3next.ssm.time_step_rank": 32, "qwen3next.ssm.inner_size": 4096,
            "qwen3next.full_attention_interval": 4, "qwen3next.expert_count": 512,
            "qwen3next.expert_used_count": 10, "qwen3next.expert_feed_forward_length": 512,
            "qwen3next.expert_shared_feed_forward_length": 512}
    cfg = config_from_gguf(meta)
    hf = json.loads((__import__("pathlib").Path(__file__).parents[1] / "src/kvcap/model/data/hf"
                     / "Qwen__Qwen3-Next-80B-A3B-Thinking.json").read_text())
    for key in ("linear_conv_kernel_dim", "linear_key_head_dim", "linear_num_key_heads", "linear_num_value_heads",
                "linear_value_head_dim", "full_attention_interval", "num_experts", "num_experts_per_tok",
                "moe_intermediate_size", "shared_expert_intermediate_size", "head_dim", "num_key_value_heads"):
        assert cfg[key] == hf[key], key


def test_llama_with_experts_is_mixtral():
    meta = {"general.architecture": "llama", "llama.block_count": 32, "llama.embedding_length": 4096,
            "llama.attention.head_count": 32, "llama.attention.head_count_kv": 8, "llama.expert_count": 8,
            "llama.expert_used_count": 2, "llama.feed_forward_length": 14336}
    cfg = config_from_gguf(meta)
    assert (cfg["model_type"], cfg["num_local_experts"], cfg["num_experts_per_tok"]) == ("mixtral", 8, 2)


@pytest.mark.parametrize("meta, message", [
    ({}, "missing GGUF key general.architecture"),
    ({"general.architecture": "llama"}, "missing GGUF key llama.block_count"),
    ({"general.architecture": "llama", "llama.block_count": 0}, "must be a positive integer"),
    ({"general.architecture": "llama", "llama.block_count": 2, "llama.attention.head_count": 2,
      "llama.embedding_length": "x"}, "embedding_length must be a positive integer"),
    ({"general.architecture": "llama", "llama.block_count": 2, "llama.nextn_predict_layers": 2}, "no decoder layers"),
    ({"general.architecture": "llama", "llama.block_count": 2, "llama.embedding_length": 8,
      "llama.attention.head_count": 2, "llama.attention.key_length": 4, "llama.attention.value_length": 8},
     "key_length 4 != value_length 8"),
    ({"general.architecture": "mamba"}, "'mamba' is not supported"),
])
def test_bad_metadata(meta, message):
    with pytest.raises(ModelError, match=message):
        config_from_gguf(meta)


def test_every_validation_case_with_gguf_metadata(shared):
    """Each llama.cpp case that quotes GGUF metadata maps to HF fields matching it, or fails closed."""
    seen = 0
    for line in (shared / "validation" / "llamacpp.jsonl").read_text().splitlines():
        case = json.loads(line)
        meta = case["model"].get("gguf_metadata")
        if not meta:
            continue
        seen += 1
        arch = meta["general.architecture"]
        if arch == "deepseek2" and f"{arch}.attention.key_length" not in meta:
            # The case quotes only the latent widths; the per-head widths are needed for weights.
            with pytest.raises(ModelError, match="needs attention.key_length"):
                config_from_gguf(meta, where=case["id"])
            continue
        cfg = config_from_gguf(meta, where=case["id"])
        assert cfg["model_type"] == ARCH_MODEL_TYPE[arch] or cfg["model_type"] == "mixtral"
        assert cfg["num_hidden_layers"] == meta[f"{arch}.block_count"]
        assert cfg["num_attention_heads"] == meta[f"{arch}.attention.head_count"]
        assert cfg["num_key_value_heads"] == meta.get(f"{arch}.attention.head_count_kv", cfg["num_attention_heads"])
        if f"{arch}.attention.key_length" in meta:
            assert cfg["head_dim"] == meta[f"{arch}.attention.key_length"]
    assert seen == 5
