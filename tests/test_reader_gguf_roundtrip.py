"""HF config -> GGUF metadata (as llama.cpp's converter writes it) -> back through gguf_config ->
the family builder: the same layers, KV per token and parameters as the HF config itself.

`gguf_meta` below is written from `convert_hf_to_gguf.py` (`TextModel.set_gguf_parameters` and the
per-model overrides named in each case), independently of kvcap's reverse mapping.
"""

from __future__ import annotations

import pytest

from kvcap.model import hf, load_model
from kvcap.model.gguf_config import config_from_gguf

MOE = (("expert_count", "num_experts"), ("expert_used_count", "num_experts_per_tok"),
       ("expert_feed_forward_length", "moe_intermediate_size"))


def gguf_meta(t: dict, arch: str, extra=()) -> dict:
    m = {"general.architecture": arch, f"{arch}.block_count": t["num_hidden_layers"],
         f"{arch}.embedding_length": t["hidden_size"], f"{arch}.attention.head_count": t["num_attention_heads"],
         f"{arch}.context_length": t["max_position_embeddings"], f"{arch}.vocab_size": t["vocab_size"]}
    if "num_key_value_heads" in t:
        m[f"{arch}.attention.head_count_kv"] = t["num_key_value_heads"]
    if "intermediate_size" in t:
        m[f"{arch}.feed_forward_length"] = t["intermediate_size"]
    if t.get("head_dim"):
        m[f"{arch}.attention.key_length"] = m[f"{arch}.attention.value_length"] = t["head_dim"]
    if t.get("sliding_window"):
        m[f"{arch}.attention.sliding_window"] = t["sliding_window"]
    for key, value in extra:
        m[f"{arch}.{key}"] = t[value] if isinstance(value, str) else value
    return m


CASES = {
    "meta-llama/Llama-3.1-8B-Instruct": ("llama", ()),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": ("llama", (("expert_count", "num_local_experts"),
                                                       ("expert_used_count", "num_experts_per_tok"))),
    "Qwen/Qwen3-30B-A3B": ("qwen3moe", MOE),                                  # Qwen2MoeModel
    "google/gemma-2-2b-it": ("gemma2", ()),
    "google/gemma-3-1b-it": ("gemma3", ()),
    "openai/gpt-oss-20b": ("gpt-oss", (("expert_count", "num_local_experts"), ("expert_used_count", "num_experts_per_tok"),
                                       ("expert_feed_forward_length", "intermediate_size"))),
    # Qwen3NextModel: ssm.inner_size = linear_value_head_dim x linear_num_value_heads = 128 x 32
    "Qwen/Qwen3-Next-80B-A3B-Thinking": ("qwen3next", MOE + (
        ("expert_shared_feed_forward_length", "shared_expert_intermediate_size"),
        ("ssm.conv_kernel", "linear_conv_kernel_dim"), ("ssm.state_size", "linear_key_head_dim"),
        ("ssm.group_count", "linear_num_key_heads"), ("ssm.time_step_rank", "linear_num_value_heads"),
        ("ssm.inner_size", 128 * 32), ("full_attention_interval", "full_attention_interval"))),
}


@pytest.mark.parametrize("name", CASES)
def test_gguf_metadata_rebuilds_the_hf_model(name):
    ref = load_model(name)
    arch, extra = CASES[name]
    spec = hf.from_config(config_from_gguf(gguf_meta(dict(ref.config), arch, extra), where=name), name, "gguf")
    assert spec.model_type == ref.model_type
    assert spec.layers == ref.layers
    assert spec.num_params == ref.num_params
    assert spec.tie_word_embeddings == ref.tie_word_embeddings


def test_deepseek_v3_absorbed_mla_gguf_is_the_hf_model_without_its_mtp_block():
    # DeepseekV2Model skips the MTP layer (bid >= num_hidden_layers) and, since PR #12801, writes
    # the absorbed MLA widths: one KV head of 512 + 64 for K, 512 for V, per-head widths in *_mla.
    ref = load_model("deepseek-ai/DeepSeek-V3")
    t = dict(ref.config)
    meta = gguf_meta(t, "deepseek2", (
        ("attention.kv_lora_rank", "kv_lora_rank"), ("attention.q_lora_rank", "q_lora_rank"),
        ("rope.dimension_count", "qk_rope_head_dim"), ("attention.head_count_kv", 1),
        ("attention.key_length", 576), ("attention.value_length", 512), ("attention.key_length_mla", 192),
        ("attention.value_length_mla", 128), ("expert_count", "n_routed_experts"),
        ("expert_used_count", "num_experts_per_tok"), ("expert_shared_count", "n_shared_experts"),
        ("leading_dense_block_count", "first_k_dense_replace"), ("expert_feed_forward_length", "moe_intermediate_size"),
        ("expert_gating_func", 2), ("expert_group_count", "n_group"), ("expert_group_used_count", "topk_group")))
    spec = hf.from_config(config_from_gguf(meta), "ds", "gguf")
    assert spec.layers == tuple(l for l in ref.layers if not l.is_mtp)
    assert spec.kv_elems_per_token() == ref.kv_elems_per_token(include_mtp=False) == 61 * (512 + 64)
    mtp = sum(t.numel for t in ref.tensors if t.part == "mtp")
    assert spec.num_params == ref.num_params - mtp
