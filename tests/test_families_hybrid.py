"""Constant per-sequence state (linear attention, SSMs, convs, RWKV) and MTP blocks, with the
state shapes worked out by hand from each config."""

import pytest

from kvcap.errors import ModelError
from kvcap.model import catalog, load_model
from kvcap.model.spec import FULL, MLA, NONE, RECURRENT


def states(spec):
    return {tuple((s.name, s.shape, s.dtype) for s in l.state) for l in spec.layers if l.state}


def test_qwen3_next_gated_delta_net_state_and_gated_attention():
    m = load_model("Qwen/Qwen3-Next-80B-A3B-Thinking")
    # full_attention_interval 4: layers 3, 7, …, 47 attend; the other 36 are Gated DeltaNet
    assert [i for i, l in enumerate(m.layers) if l.kind == FULL] == list(range(3, 48, 4))
    # key_dim = 16 x 128, value_dim = 32 x 128; conv over 2 x key_dim + value_dim = 8192 channels,
    # kernel 4 keeps 3 inputs; one 128 x 128 state per value head
    assert states(m) == {(("conv", (8192, 3), ""), ("ssm", (32, 128, 128), ""))}
    assert sum(l.state_elems for l in m.layers) == 36 * (8192 * 3 + 32 * 128 * 128)
    assert m.kv_elems_per_token() == 12 * 2 * 256 * 2                   # 2 KV heads x head_dim 256
    # the attention output gate doubles q_proj: 16 heads x 256 x 2
    assert next(t for t in m.tensors if t.name == "layers.3.q_proj").shape == (16 * 256 * 2, 2048)


def test_qwen35_27b_state_dtype_and_mtp():
    m = load_model("Qwen/Qwen3.5-27B")
    # value_dim 48 x 128 = 6144, key_dim 16 x 128 = 2048: conv over 10,240; mamba_ssm_dtype float32
    assert states(m) == {(("conv", (10240, 3), ""), ("ssm", (48, 128, 128), "float32"))}
    main = [l for l in m.layers if not l.is_mtp]
    assert sum(l.kind == RECURRENT for l in main) == 48
    assert m.kv_elems_per_token(include_mtp=False) == 16 * 4 * 256 * 2
    # llama.cpp's log for this shape (research/llamacpp.md §2.6): S = 48 layers x 128 x 6144 floats per sequence
    assert sum(s.numel for l in main for s in l.state if s.name == "ssm") == 48 * 128 * 6144
    assert sum(s.numel for l in main for s in l.state if s.name == "conv") == 48 * 3 * (6144 + 2 * 16 * 128)
    mtp = [l for l in m.layers if l.is_mtp]                              # mtp_num_hidden_layers 1
    assert len(mtp) == 1 and mtp[0].kind == FULL


def test_nemotron_h_pattern():
    m = load_model("nvidia/Nemotron-H-56B-Base-8K")
    pattern = m.config["hybrid_override_pattern"]
    assert [l.kind for l in m.layers] == [{"M": RECURRENT, "*": FULL, "-": NONE}[c] for c in pattern]
    assert pattern.count("*") == 10 and pattern.count("M") == 54
    # Mamba-2: 256 heads x 64 = 16,384 inner; conv over 16,384 + 2 x 8 groups x 256 state = 20,480
    assert states(m) == {(("conv", (20480, 3), ""), ("ssm", (256, 64, 256), ""))}
    assert m.kv_elems_per_token() == 10 * 8 * 128 * 2


def test_nemotron3_nano_moe_blocks_cache_nothing_and_ssm_dtype_is_declared():
    m = load_model("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16")
    pattern = m.config["hybrid_override_pattern"]
    assert sum(l.kind == NONE for l in m.layers) == pattern.count("E") == 23
    assert states(m) == {(("conv", (4096 + 2 * 8 * 128, 3), ""), ("ssm", (64, 64, 128), "float32"))}
    assert m.kv_elems_per_token() == pattern.count("*") * 2 * 128 * 2
    assert (m.num_experts, m.experts_per_token) == (128, 6)


def test_falcon_h1_runs_attention_and_mamba_side_by_side():
    cfg = catalog.lookup("tiiuae/Falcon-H1-0.5B").config()
    # the catalog copy is a subset without mamba_d_ssm: 24 heads x 64 = 1536 contradicts 2 x 1024
    with pytest.raises(ModelError, match="mamba_d_ssm"):
        load_model(cfg)
    m = load_model({**cfg, "mamba_d_ssm": 1536})
    assert [l.kind for l in m.layers] == [FULL, RECURRENT] * 36
    assert m.kv_elems_per_token() == 36 * 2 * 64 * 2
    # conv over 1536 + 2 x 1 group x 128 state = 1792 channels
    assert states(m) == {(("conv", (1792, 3), ""), ("ssm", (24, 64, 128), ""))}


def test_jamba_one_attention_layer_in_eight():
    # transformers JambaConfig defaults, which describe ai21labs/Jamba-v0.1
    cfg = {"model_type": "jamba", "vocab_size": 65536, "hidden_size": 4096, "intermediate_size": 14336,
           "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "num_experts": 16,
           "num_experts_per_tok": 2, "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2,
           "mamba_dt_rank": 256, "max_position_embeddings": 262144}
    m = load_model(cfg)
    assert [i for i, l in enumerate(m.layers) if l.kind == FULL] == [4, 12, 20, 28]
    assert states(m) == {(("conv", (8192, 3), ""), ("ssm", (8192, 16), ""))}
    assert m.kv_elems_per_token() == 4 * 8 * 128 * 2
    assert m.num_params == 51_570_323_328                                 # Jamba-v0.1 "52B"


def test_granite4_hybrid():
    # a transformers-compatible toy GraniteMoeHybrid config from a public training repo
    cfg = {"model_type": "granitemoehybrid", "architectures": ["GraniteMoeHybridForCausalLM"], "hidden_size": 512,
           "intermediate_size": 1024, "layer_types": ["mamba"] * 3 + ["attention"] + ["mamba"] * 3 + ["attention"],
           "mamba_d_conv": 4, "mamba_d_head": 128, "mamba_d_state": 128, "mamba_expand": 2, "mamba_n_groups": 1,
           "mamba_n_heads": 8, "max_position_embeddings": 4096, "num_attention_heads": 8, "num_experts_per_tok": 2,
           "num_hidden_layers": 8, "num_key_value_heads": 8, "num_local_experts": 8, "shared_intermediate_size": 512,
           "tie_word_embeddings": True, "torch_dtype": "bfloat16", "vocab_size": 49152}
    m = load_model(cfg)
    assert [l.kind for l in m.layers].count(FULL) == 2
    assert states(m) == {(("conv", (1024 + 2 * 128, 3), ""), ("ssm", (8, 128, 128), ""))}
    assert m.kv_elems_per_token() == 2 * 8 * 64 * 2


def test_lfm2_short_conv_state():
    # LiquidAI LFM2-style: conv layers with L_cache 3, attention on listed layers
    cfg = {"model_type": "lfm2", "hidden_size": 1024, "intermediate_size": 6656, "num_hidden_layers": 16,
           "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 65536, "conv_L_cache": 3,
           "full_attn_idxs": [2, 5, 8, 10, 12, 14], "max_position_embeddings": 128000}
    m = load_model(cfg)
    assert [i for i, l in enumerate(m.layers) if l.kind == FULL] == [2, 5, 8, 10, 12, 14]
    assert states(m) == {(("conv", (1024, 2), ""),)}                    # hidden x (L_cache - 1)
    assert m.kv_elems_per_token() == 6 * 8 * 64 * 2


def test_rwkv5_state():
    m = load_model("rwkv5_3b")
    assert m.context_window is None and m.kv_elems_per_token() == 0
    # 2560 hidden / head_size 64 = 40 heads: token shifts of 2560 and a 40 x 64 x 64 float32 WKV state
    assert states(m) == {(("att_shift", (2560,), ""), ("wkv", (40, 64, 64), "float32"), ("ffn_shift", (2560,), ""))}
    assert sum(l.state_elems for l in m.layers) == 32 * (2 * 2560 + 40 * 64 * 64)


def test_minimax_m1_lightning_attention():
    m = load_model("MiniMaxAI/MiniMax-M1-80k")
    full = [i for i, l in enumerate(m.layers) if l.kind == FULL]
    assert full == list(range(7, 80, 8))                                 # attn_type_list 1 every 8th
    assert states(m) == {(("kv", (64, 128, 128), ""),)}
    assert m.kv_elems_per_token() == 10 * 8 * 128 * 2
    assert m.num_params == 456_089_655_296                               # MiniMax-M1 "456B"


def test_mamba_and_mamba2():
    m1 = load_model({"model_type": "mamba", "hidden_size": 768, "num_hidden_layers": 24, "vocab_size": 50280,
                     "state_size": 16, "conv_kernel": 4, "expand": 2})
    assert states(m1) == {(("conv", (1536, 3), ""), ("ssm", (1536, 16), ""))}
    assert m1.kv_elems_per_token() == 0 and m1.num_attention_heads == 0
    m2 = load_model({"model_type": "mamba2", "hidden_size": 2560, "num_hidden_layers": 64, "vocab_size": 50288,
                     "num_heads": 80, "head_dim": 64, "state_size": 128, "n_groups": 1, "conv_kernel": 4, "expand": 2})
    assert states(m2) == {(("conv", (5120 + 2 * 128, 3), ""), ("ssm", (80, 64, 128), ""))}


# GLM-4.7 configs as ai-dynamo/aiconfigurator keeps them (src/aiconfigurator/model_configs/
# zai-org--GLM-4.7-FP8_config.json and zai-org--GLM-4.7-Flash_config.json: shape fields only).
GLM47 = {"architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe", "num_hidden_layers": 92,
         "hidden_size": 5120, "num_attention_heads": 96, "num_key_value_heads": 8, "head_dim": 128,
         "intermediate_size": 12288, "vocab_size": 151552, "max_position_embeddings": 202752,
         "n_routed_experts": 160, "n_shared_experts": 1, "num_experts_per_tok": 8, "moe_intermediate_size": 1536,
         "first_k_dense_replace": 3, "routed_scaling_factor": 2.5, "torch_dtype": "bfloat16", "use_cache": True,
         "tie_word_embeddings": False}
GLM47_FLASH = {"architectures": ["Glm4MoeLiteForCausalLM"], "model_type": "glm4_moe_lite", "num_hidden_layers": 47,
               "hidden_size": 2048, "num_attention_heads": 20, "num_key_value_heads": 20, "head_dim": 64,
               "intermediate_size": 10240, "vocab_size": 154880, "max_position_embeddings": 202752,
               "n_routed_experts": 64, "n_shared_experts": 1, "num_experts_per_tok": 4, "moe_intermediate_size": 1536,
               "first_k_dense_replace": 1, "kv_lora_rank": 512, "q_lora_rank": 768, "qk_nope_head_dim": 192,
               "qk_rope_head_dim": 64, "v_head_dim": 256, "routed_scaling_factor": 1.8, "torch_dtype": "bfloat16",
               "use_cache": True, "tie_word_embeddings": False}


def test_glm45_style_mtp_block_holds_weights():
    m = load_model(GLM47)
    assert m.kv_elems_per_token() == 92 * 8 * 128 * 2 and not any(l.is_mtp for l in m.layers)
    m = load_model({**GLM47, "num_nextn_predict_layers": 1})
    assert [l.is_mtp for l in m.layers] == [False] * 92 + [True]
    assert m.kv_elems_per_token(include_mtp=False) == 92 * 8 * 128 * 2
    mtp = [t for t in m.tensors if t.part == "mtp"]
    assert {"layers.92.eh_proj", "layers.92.enorm", "layers.92.shared_head.head"} <= {t.name for t in mtp}


def test_glm_mla_model():
    m = load_model(GLM47_FLASH)
    assert {l.kind for l in m.layers} == {MLA}
    assert m.kv_elems_per_token() == 47 * (512 + 64)


def test_gemma3n_shares_kv_from_layer_20_on():
    # transformers Gemma3nTextConfig defaults (Gemma 3n E4B's text model): 35 layers, 4 sliding : 1 global,
    # num_kv_shared_layers 15
    cfg = {"model_type": "gemma3n_text", "vocab_size": 262400, "hidden_size": 2048, "num_hidden_layers": 35,
           "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 256, "intermediate_size": [16384] * 35,
           "max_position_embeddings": 32768, "sliding_window": 512, "num_kv_shared_layers": 15,
           "vocab_size_per_layer_input": 262144, "hidden_size_per_layer_input": 256, "altup_num_inputs": 4,
           "laurel_rank": 64}
    m = load_model(cfg)
    owners = [l for l in m.layers if l.kv_source is None]
    assert len(owners) == 20 and sum(l.kind == FULL for l in owners) == 4
    # llama.cpp (research/llamacpp.md §2.8): later layers reuse layer 18 (sliding) or 19 (global)
    assert [l.kv_source for l in m.layers[20:]] == [19 if (i + 1) % 5 == 0 else 18 for i in range(20, 35)]
    assert m.kv_elems_per_token() == 20 * 2 * 256 * 2
    # transformers 5.24 counts 6,835,235,568 parameters but builds no k/v projections for the 15
    # shared layers; the checkpoints store them
    assert m.num_params == 6_835_235_568 + 15 * (2 * 512 * 2048 + 256)


def test_gemma3n_wrapper_refuses_its_towers():
    with pytest.raises(ModelError, match="audio tower of gemma3n"):
        load_model({"model_type": "gemma3n", "text_config": {"model_type": "gemma3n_text"},
                    "audio_config": {"model_type": "gemma3n_audio"}, "vision_config": {"model_type": "gemma3n_vision"}})
