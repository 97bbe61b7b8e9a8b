"""MLC weight quantization priced per tensor (kvcap.quant), against hand-worked bytes and real logs."""

import pytest
from hypothesis import given, strategies as st

from kvcap import quant
from kvcap.errors import OptionsError
from kvcap.model import load_model
from kvcap.model.spec import COL, EMBED, LINEAR, LM_HEAD, NORM, REP, ROUTER, ROW, Tensor

MiB = 1 << 20


def q4_linear(out: int, k: int) -> int:
    """q4f16_1 NK: q_weight (out, 4·ceil(k/32)) uint32 + q_scale (out, ceil(k/32)) f16."""
    groups = -(-k // 32)
    return out * groups * 4 * 4 + out * groups * 2


def test_llama3_8b_q4f16_1_is_the_logged_4308_133_mb():
    m = load_model("llama3_1_8b")  # Llama-3-8B and 3.1-8B share every shape
    h, inter, vocab, layers = 4096, 14336, 128256, 32
    per_layer = (q4_linear(h, h) + 2 * q4_linear(1024, h) + q4_linear(h, h)      # q, k, v, o
                 + 2 * q4_linear(inter, h) + q4_linear(h, inter)                   # gate, up, down
                 + 2 * h * 2)                                                      # two RMSNorms, f16
    total = layers * per_layer + h * 2 + 2 * q4_linear(vocab, h)                   # final norm, embed, lm_head
    assert total == 4_517_404_672
    assert quant.param_bytes(m, quant.scheme("q4f16_1")) == total
    assert f"{total / MiB:.3f}" == "4308.133"


def test_llama2_7b_q4f16_1_and_q0f16_match_the_logs():
    m = load_model("llama2_7b")
    assert f"{quant.param_bytes(m, quant.scheme('q4f16_1')) / MiB:.2f}" == "3615.13"
    # q0f16: every weight 2 bytes: 32 layers × (4·4096² + 3·4096·11008 + 2·4096) + 4096 + 2·32000·4096
    n = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096) + 4096 + 2 * 32000 * 4096
    assert quant.param_bytes(m, quant.scheme("q0f16")) == 2 * n
    assert f"{2 * n / MiB:.2f}" == "12852.51"


QWEN15_14B = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 5120, "intermediate_size": 13696,
              "max_position_embeddings": 32768, "model_type": "qwen2", "num_attention_heads": 40,
              "num_hidden_layers": 40, "num_key_value_heads": 40, "tie_word_embeddings": False,
              "torch_dtype": "float16", "vocab_size": 152064, "sliding_window": 32768, "use_sliding_window": False}


def test_qwen15_14b_16bit_per_gpu_at_tp8_is_the_logged_5977_188_mb():
    m = load_model(QWEN15_14B)
    # per shard: q/k/v 640 rows each (+ bias), o 5120×640, gate/up 1712×5120, down 5120×1712;
    # norms, embedding and lm_head replicated.
    layer = 3 * (640 * 5120 + 640) + 5120 * 640 + 2 * 1712 * 5120 + 5120 * 1712 + 2 * 5120
    n = 40 * layer + 5120 + 2 * 152064 * 5120
    assert quant.param_bytes(m, quant.scheme("q0f16"), tp=8) == 2 * n
    assert f"{2 * n / MiB:.3f}" == "5977.188"
    assert quant.param_bytes(m, quant.scheme("q0bf16"), tp=8) == 2 * n


def test_phi35_vision_keeps_the_clip_tower_unquantized():
    m = load_model("phi-3_5-vision")
    total = quant.param_bytes(m, quant.scheme("q4f16_1"))
    assert f"{total / MiB:.3f}" == "2640.795"
    # CLIPVisionModel.no_quantization: the tower is f16 under group quantization …
    clip = sum(t.numel for t in m.tensors if t.part == "vision")
    assert clip == 303_507_456
    vision_bytes = sum(quant.scheme("q4f16_1").tensor_bytes(t) for t in m.tensors if t.part == "vision")
    assert vision_bytes == 2 * clip
    # … but its projection (not part of the tower) is quantized: linear_1 3072×4096, linear_2 3072×3072.
    proj = [t for t in m.tensors if t.part == "projector" and t.role == LINEAR]
    assert sorted(quant.scheme("q4f16_1").tensor_bytes(t) for t in proj) == sorted(
        [q4_linear(3072, 4096), q4_linear(3072, 3072)])
    # per-tensor fp8 ignores the flag: the tower's linears become 1 byte per weight.
    e5 = quant.scheme("e5m2_e5m2_f16")
    fc1 = next(t for t in m.tensors if t.name.endswith("layers.0.fc1"))
    assert e5.tensor_bytes(fc1) == 4096 * 1024


def test_group_padding_is_a_ceiling_division():
    t = Tensor("w", (10, 33), LINEAR, REP)
    # 33 inputs → 2 groups of 32 (the second padded): words 2·4, scales 2 per row
    assert quant.scheme("q4f16_1").tensor_bytes(t) == 10 * (2 * 4 * 4 + 2 * 2)
    # q3f16_1: 10 int3 per uint32, groups of 40 → 4 words + 1 f16 scale per group
    assert quant.scheme("q3f16_1").tensor_bytes(Tensor("w", (7, 80), LINEAR, REP)) == 7 * 2 * (4 * 4 + 2)
    assert quant.scheme("q4f32_1").tensor_bytes(Tensor("w", (1, 64), LINEAR, REP)) == 2 * (16 + 4)


def test_norms_biases_and_small_moe_gates_stay_in_the_model_dtype():
    s = quant.scheme("q4f16_1")
    assert s.tensor_bytes(Tensor("n", (4096,), NORM, REP)) == 8192
    assert s.tensor_bytes(Tensor("b", (4096,), "bias", COL)) == 8192
    assert s.tensor_bytes(Tensor("gate", (64, 4096), ROUTER, REP)) == 64 * 4096 * 2
    # utils.is_moe_gate: more than 256 outputs is an ordinary Linear again
    assert s.tensor_bytes(Tensor("gate", (512, 4096), ROUTER, REP)) == q4_linear(512, 4096)
    assert quant.scheme("q4f32_1").tensor_bytes(Tensor("n", (10,), NORM, REP)) == 40


def test_awq_quantizes_only_inner_linears():
    s = quant.scheme("q4f16_awq")
    assert s.name == "q4f16_autoawq"
    # qweight (in, out/8) u32 + qzeros (in/128, out/8) u32 + scales (in/128, out) f16
    assert s.tensor_bytes(Tensor("w", (256, 512), LINEAR, REP)) == 512 * 32 * 4 + 4 * 32 * 4 + 4 * 256 * 2
    assert s.tensor_bytes(Tensor("e", (1000, 512), EMBED, REP)) == 1000 * 512 * 2
    assert s.tensor_bytes(Tensor("lm_head", (1000, 512), LM_HEAD, REP)) == 1000 * 512 * 2


def test_ft_per_channel_with_group_fallbacks():
    s = quant.scheme("q4f16_ft")
    # FTQuantizeLinear: int4 pairs in int8 (in × out/2) + one f16 scale per output
    assert s.tensor_bytes(Tensor("w", (64, 128), LINEAR, REP)) == 128 * 32 + 64 * 2
    # the final fc and widths not divisible by 8 fall back to q4 groups of 32
    assert s.tensor_bytes(Tensor("lm_head", (100, 128), LM_HEAD, REP)) == q4_linear(100, 128)
    assert s.tensor_bytes(Tensor("w", (12, 128), LINEAR, REP)) == q4_linear(12, 128)
    assert s.tensor_bytes(Tensor("e", (100, 128), EMBED, REP)) == q4_linear(100, 128)


def test_per_tensor_fp8_counts_its_scales_per_fused_linear():
    m = load_model("llama3_1_8b")
    e4, e5, maxc = (quant.scheme(n) for n in ("e4m3_e4m3_f16", "e5m2_e5m2_f16", "e4m3_e4m3_f16_max_calibrate"))
    # MLC's Llama has 4 Linears per layer (qkv_proj, o_proj, gate_up_proj, down_proj): e4m3 with
    # "inference" calibration stores two f32 scalars per Linear, max-calibrate one, e5m2 none.
    linears = 32 * 4
    assert quant.param_bytes(m, e4) - quant.param_bytes(m, e5) == linears * 8
    assert quant.param_bytes(m, maxc) - quant.param_bytes(m, e5) == linears * 4
    # embedding and lm_head stay f16; every linear weight is one byte
    weights = 32 * (4096 * 6144 + 4096 * 4096 + 2 * 14336 * 4096 + 4096 * 14336)
    assert quant.param_bytes(m, e5) == weights + 2 * (2 * 128256 * 4096 + 65 * 4096)


def test_tied_embeddings_are_stored_once():
    cfg = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
           "num_hidden_layers": 2, "vocab_size": 1000, "max_position_embeddings": 2048}
    untied = load_model({**cfg, "tie_word_embeddings": False})
    tied = load_model({**cfg, "tie_word_embeddings": True})
    s = quant.scheme("q4f16_1")
    assert quant.param_bytes(untied, s) - quant.param_bytes(tied, s) == q4_linear(1000, 256)


def test_unknown_scheme_lists_the_supported_ones():
    with pytest.raises(OptionsError, match="unknown quantization 'q5f16'.*q4f16_1.*e4m3_e4m3_f16"):
        quant.scheme("q5f16")


def test_tensor_parallel_refusals():
    m = load_model(QWEN15_14B)
    # down_proj input 13696 → 428 groups of 32, which do not split over 8 GPUs (GroupQuantizeLinear)
    with pytest.raises(OptionsError, match="do not split over 8 GPUs"):
        quant.param_bytes(m, quant.scheme("q4f16_1"), tp=8)
    with pytest.raises(OptionsError, match="KN layout"):
        quant.param_bytes(m, quant.scheme("q4f16_0"), tp=2)
    with pytest.raises(OptionsError, match="tensor parallelism"):
        quant.param_bytes(m, quant.scheme("q4f16_ft"), tp=2)
    with pytest.raises(OptionsError, match="does not divide"):
        quant.shard_shape(Tensor("w", (10, 7), LINEAR, ROW), 2)


@given(out=st.integers(1, 5000), k=st.integers(1, 9000))
def test_group_bytes_cover_the_nominal_bits_and_grow_with_k(out, k):
    s = quant.scheme("q4f16_1")
    b = s.tensor_bytes(Tensor("w", (out, k), LINEAR, REP))
    assert b * 8 >= out * k * 4.5                       # never below 4.5 bits per weight
    assert b * 8 < out * (k + 32) * 4.5                  # padding adds less than one group per row
    assert s.tensor_bytes(Tensor("w", (out, k + 1), LINEAR, REP)) >= b


@given(rows=st.integers(1, 64), k=st.sampled_from([256, 512, 4096]), tp=st.sampled_from([1, 2, 4, 8]))
def test_column_shards_add_up_to_the_whole(rows, k, tp):
    s = quant.scheme("q4f16_1")
    whole = Tensor("w", (rows * tp, k), LINEAR, COL)
    assert s.tensor_bytes(whole, tp) * tp == s.tensor_bytes(whole)
