"""Attention variants, one real config each (src/kvcap/model/data), with the KV cache worked
out by hand from the config's own numbers."""

import pytest

from kvcap.model import catalog, load_model
from kvcap.model.spec import CHUNKED, FULL, MLA, SLIDING

BF16 = 2


def kinds(spec, include_mtp=False):
    return [l.kind for l in spec.layers if include_mtp or not l.is_mtp]


def kv_bytes(spec, context, elem_bytes=BF16):
    """Bytes one sequence of `context` tokens keeps: windowed layers keep at most their window."""
    total = 0
    for l in spec.layers:
        if l.is_mtp:
            continue
        keep = min(context, l.window + l.sinks) if l.kind in (SLIDING, CHUNKED) else context
        total += l.kv_elems_per_token * keep * elem_bytes
    return total


def test_gpt_oss_120b_prices_sliding_and_full_layers_apart():
    m = load_model("openai/gpt-oss-120b")
    # layer_types alternate sliding/full over 36 layers; 8 KV heads x head_dim 64, K and V
    assert kinds(m) == [SLIDING, FULL] * 18
    assert {l.window for l in m.layers if l.kind == SLIDING} == {128}
    assert all(l.sinks == 0 for l in m.layers)      # GPT-OSS sinks are weights, not cached tokens
    per_layer = 8 * 64 * 2
    assert m.kv_elems_per_token() == 36 * per_layer == 36_864
    # 73,728 B/token at bf16 — the number vLLM logs for gpt-oss-120b (hf-mem issue #60)
    assert 2 * m.kv_elems_per_token() == 73_728
    # one 131,072-token sequence: 18 full layers hold every token, 18 sliding layers 128
    full = 18 * per_layer * 131_072 * BF16
    sliding = 18 * per_layer * 128 * BF16
    assert kv_bytes(m, 131_072) == full + sliding == 4_836_556_800
    assert m.num_experts == 128 and m.experts_per_token == 4


def test_deepseek_v3_caches_576_latent_values_per_layer():
    m = load_model("deepseek-ai/DeepSeek-V3")
    main = [l for l in m.layers if not l.is_mtp]
    assert len(main) == 61 and all(l.kind == MLA for l in main)
    # kv_lora_rank 512 + qk_rope_head_dim 64, one latent shared by all 128 heads
    assert {l.kv_elems_per_token for l in main} == {512 + 64}
    assert m.kv_elems_per_token(include_mtp=False) == 61 * 576 == 35_136
    assert 2 * m.kv_elems_per_token(include_mtp=False) == 70_272
    # the 128-head MHA it replaces would cache 128 x (192 + 128) = 40,960 values per layer
    assert main[0].num_q_heads * (main[0].head_dim_k + main[0].head_dim_v) == 40_960
    # num_nextn_predict_layers 1: one MTP block after layer 60, holding weights
    mtp = [l for l in m.layers if l.is_mtp]
    assert len(mtp) == 1 and mtp[0].kind == MLA
    assert any(t.part == "mtp" and t.name.startswith("layers.61.") for t in m.tensors)
    assert m.kv_elems_per_token(include_mtp=True) == 62 * 576


@pytest.mark.parametrize("name", ["deepseek-ai/DeepSeek-V3.1", "deepseek-ai/DeepSeek-R1", "moonshotai/Kimi-K2-Instruct"])
def test_other_mla_models(name):
    m = load_model(name)
    assert m.kv_elems_per_token(include_mtp=False) == 61 * 576
    assert len([l for l in m.layers if l.is_mtp]) == (0 if "Kimi" in name else 1)


def test_deepseek_v2_lite_mla_without_q_lora():
    m = load_model("deepseek-ai/DeepSeek-V2-Lite")
    assert m.kv_elems_per_token() == 27 * (512 + 64)
    assert any(t.name == "layers.0.q_proj" for t in m.tensors)          # q_lora_rank null
    assert not any("q_a_proj" in t.name for t in m.tensors)


def test_deepseek_v32_indexer_key_is_kept_apart_from_the_latent():
    m = load_model("deepseek-ai/DeepSeek-V3.2")
    main = [l for l in m.layers if not l.is_mtp]
    assert {l.kv_elems_per_token for l in main} == {576}
    assert {l.index_head_dim for l in main} == {128}                     # index_head_dim
    assert any("indexer.wk" in t.name for t in m.tensors)


def test_gemma3_27b_five_sliding_to_one_global():
    m = load_model("google/gemma-3-27b-it")
    # text_config: 62 layers, sliding_window 1024; pattern 6: layer i global iff (i + 1) % 6 == 0
    expected = [FULL if (i + 1) % 6 == 0 else SLIDING for i in range(62)]
    assert kinds(m) == expected and expected.count(FULL) == 10
    assert {l.window for l in m.layers if l.kind == SLIDING} == {1024}
    per_layer = 16 * 128 * 2                                             # 16 KV heads x 128
    assert m.kv_elems_per_token() == 62 * per_layer
    # vocab and context come from Gemma3TextConfig's defaults (text_config omits them)
    assert (m.vocab_size, m.context_window) == (262_208, 131_072)
    assert kv_bytes(m, 131_072) == (10 * 131_072 + 52 * 1024) * per_layer * BF16


def test_gemma3_1b_and_gemma2_patterns():
    g3 = load_model("google/gemma-3-1b-it")
    assert [i for i, k in enumerate(kinds(g3)) if k == FULL] == [5, 11, 17, 23]
    assert g3.kv_elems_per_token() == 26 * 1 * 256 * 2
    assert {l.window for l in g3.layers if l.kind == SLIDING} == {512}
    g2 = load_model("google/gemma-2-9b-it")
    assert kinds(g2) == [SLIDING, FULL] * 21                             # sliding first, alternating
    assert {l.window for l in g2.layers if l.kind == SLIDING} == {4096}
    assert g2.kv_elems_per_token() == 42 * 8 * 256 * 2


def test_gemma4_global_and_local_layers_have_their_own_heads_and_head_dims():
    m = load_model("google/gemma-4-26B-A4B")
    sliding = [l for l in m.layers if l.kind == SLIDING]
    full = [l for l in m.layers if l.kind == FULL]
    assert (len(sliding), len(full)) == (25, 5)
    assert {(l.num_kv_heads, l.head_dim_k, l.window) for l in sliding} == {(8, 256, 1024)}
    assert {(l.num_kv_heads, l.head_dim_k) for l in full} == {(2, 512)}  # num_global_key_value_heads, global_head_dim
    assert m.kv_elems_per_token() == 25 * 8 * 256 * 2 + 5 * 2 * 512 * 2 == 112_640
    # attention_k_eq_v: the global layers have no v_proj
    assert not any(t.name == "layers.5.v_proj" for t in m.tensors)
    assert any(t.name == "layers.0.v_proj" for t in m.tensors)


def test_gemma4_declared_kv_sharing_points_at_the_last_owner_of_each_type():
    cfg = catalog.lookup("google/gemma-4-26B-A4B").config()
    cfg["text_config"] = {**cfg["text_config"], "num_kv_shared_layers": 10}
    m = load_model(cfg)
    # layers 20..29 reuse the cache of the last layer of their type below 20
    types = cfg["text_config"]["layer_types"]
    last_sliding = max(i for i in range(20) if types[i] == "sliding_attention")
    last_full = max(i for i in range(20) if types[i] == "full_attention")
    assert (last_sliding, last_full) == (19, 17)
    for i in range(20, 30):
        assert m.layers[i].kv_source == (last_full if types[i] == "full_attention" else last_sliding)
        assert m.layers[i].kv_elems_per_token == 0
        assert not any(t.name == f"layers.{i}.k_proj" for t in m.tensors)
    assert m.kv_elems_per_token() == 17 * 4096 + 3 * 2048


def test_llama4_scout_chunked_local_layers_and_nope_globals():
    m = load_model("meta-llama/Llama-4-Scout-17B-16E-Instruct")
    # no_rope_layers default: every 4th layer (3, 7, …, 47) is NoPE and global, the rest chunked
    assert [i for i, k in enumerate(kinds(m)) if k == FULL] == list(range(3, 48, 4))
    assert {l.window for l in m.layers if l.kind == CHUNKED} == {8192}   # attention_chunk_size
    per_layer = 8 * 128 * 2
    assert m.kv_elems_per_token() == 48 * per_layer
    assert kv_bytes(m, 1_000_000) == (12 * 1_000_000 + 36 * 8192) * per_layer * BF16
    assert (m.num_experts, m.experts_per_token) == (16, 1)
    assert any(t.part == "vision" for t in m.tensors)


def test_mistral_v01_slides_on_every_layer_and_v03_does_not():
    v1 = load_model("mistralai/Mistral-7B-Instruct-v0.1")
    assert set(kinds(v1)) == {SLIDING} and {l.window for l in v1.layers} == {4096}
    assert v1.kv_elems_per_token() == 32 * 8 * 128 * 2
    assert kv_bytes(v1, 32_768) == 32 * 8 * 128 * 2 * 4096 * BF16
    assert set(kinds(load_model("mistralai/Mistral-7B-Instruct-v0.3"))) == {FULL}
    # the MLC preset names the window sliding_window_size and keeps 4 attention-sink tokens
    preset = load_model("mistral_7b")
    assert {(l.kind, l.window, l.sinks) for l in preset.layers} == {(SLIDING, 4096, 4)}


def test_phi3_variants():
    mini4k = load_model("microsoft/Phi-3-mini-4k-instruct")
    assert {(l.kind, l.window) for l in mini4k.layers} == {(SLIDING, 2047)}
    # Phi-3.5-mini's window (262,144) exceeds its context (131,072): it limits nothing
    assert set(kinds(load_model("microsoft/Phi-3.5-mini-instruct"))) == {FULL}
    small = load_model("microsoft/Phi-3-small-8k-instruct")
    assert set(kinds(small)) == {FULL} and small.kv_elems_per_token() == 32 * 8 * 128 * 2


def test_qwen2_max_window_layers_when_sliding_is_on():
    cfg = catalog.lookup("Qwen/Qwen2.5-1.5B-Instruct").config()
    assert cfg["use_sliding_window"] is False
    assert set(kinds(load_model(cfg))) == {FULL}
    # switched on with a 4096 window: layers from max_window_layers (21) on slide
    m = load_model({**cfg, "use_sliding_window": True, "sliding_window": 4096})
    assert kinds(m) == [FULL] * 21 + [SLIDING] * 7
    assert {l.window for l in m.layers if l.kind == SLIDING} == {4096}


def test_cohere2_three_sliding_one_full():
    # Command R7B's layout (transformers Cohere2Config: sliding_window_pattern 4, window 4096)
    cfg = {"model_type": "cohere2", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 256000, "sliding_window": 4096,
           "sliding_window_pattern": 4, "max_position_embeddings": 8192}
    m = load_model(cfg)
    assert kinds(m) == [SLIDING, SLIDING, SLIDING, FULL] * 8
    assert m.tie_word_embeddings


def test_qwen3_head_dim_is_not_hidden_over_heads():
    m = load_model("Qwen/Qwen3-0.6B")
    # hidden 1024 / 16 heads = 64, but head_dim is 128
    assert m.layers[0].head_dim_k == 128
    assert m.kv_elems_per_token() == 28 * 8 * 128 * 2 == 57_344


def test_moe_models_keep_every_expert_resident():
    m = load_model("mistralai/Mixtral-8x7B-Instruct-v0.1")
    assert (m.num_experts, m.experts_per_token) == (8, 2)
    experts = [t for t in m.tensors if ".experts." in t.name]
    # 32 layers x (gate, up, down), each [8, 14336, 4096] or [8, 4096, 14336]
    assert sum(t.numel for t in experts) == 32 * 3 * 8 * 14336 * 4096
    assert m.kv_elems_per_token() == 32 * 8 * 128 * 2                    # experts change no KV
    q = load_model("Qwen/Qwen3-30B-A3B")
    assert (q.num_experts, q.experts_per_token) == (128, 8)
    assert sum(t.numel for t in q.tensors if ".experts." in t.name) == 48 * 3 * 128 * 768 * 2048
    phi = load_model("microsoft/Phi-3.5-MoE-instruct")
    assert (phi.num_experts, phi.experts_per_token) == (16, 2)


def test_glm4_9b_chatglm_fields():
    m = load_model("THUDM/glm-4-9b")
    # num_layers 40, multi_query_group_num 2 KV heads, kv_channels 128, seq_length 8192
    assert (m.num_hidden_layers, m.num_key_value_heads, m.head_dim, m.context_window) == (40, 2, 128, 8192)
    assert m.kv_elems_per_token() == 40 * 2 * 128 * 2


@pytest.mark.parametrize("name, layers, kv_heads, head_dim", [
    ("gpt2", 12, 12, 64), ("gpt_bigcode", 24, 1, 128), ("redpajama_3b_v1", 32, 32, 80),
    ("gpt_j", 28, 16, 256), ("phi-2", 32, 32, 80), ("qwen", 24, 16, 128), ("chatglm", 28, 2, 128),
    ("baichuan", 32, 32, 128), ("orion", 40, 40, 128), ("internlm", 32, 32, 128), ("internlm2", 32, 8, 128),
    ("minicpm_2b", 40, 36, 64), ("starcoder2", 32, 4, 128), ("stablelm", 32, 32, 80), ("aya-23", 32, 8, 128),
    ("olmo2_7b", 32, 32, 128), ("ibm-granite/granite-3.3-8b-instruct", 40, 8, 128),
])
def test_remaining_dense_families(name, layers, kv_heads, head_dim):
    m = load_model(name)
    assert (m.num_hidden_layers, m.layers[0].num_kv_heads, m.layers[0].head_dim_k) == (layers, kv_heads, head_dim)
    assert m.kv_elems_per_token() == layers * kv_heads * head_dim * 2


def test_multimodal_wrappers_take_the_language_models_kv_and_count_the_tower():
    llava = load_model("llava")
    assert llava.model_type == "llava" and llava.kv_elems_per_token() == 32 * 32 * 128 * 2
    vision = sum(t.numel for t in llava.tensors if t.part == "vision")
    # CLIP ViT-L/14 at 336 px: 24 layers of 4 x (1024^2 + 1024) + 2 x (1024 x 4096) + 4096 + 1024 + 4 x 1024
    layer = 4 * (1024 * 1024 + 1024) + 1024 * 4096 + 4096 + 4096 * 1024 + 1024 + 4 * 1024
    embeddings = 1024 + 1024 * 3 * 14 * 14 + 577 * 1024
    assert vision == 24 * layer + embeddings + 4 * 1024
    q35 = load_model("Qwen/Qwen3.5-27B")
    assert q35.model_type == "qwen3_5" and any(t.part == "vision" for t in q35.tensors)
    m3 = load_model("ministral3_3b_2512")
    assert m3.kv_elems_per_token() == 26 * 8 * 128 * 2 and any(t.part == "vision" for t in m3.tensors)
