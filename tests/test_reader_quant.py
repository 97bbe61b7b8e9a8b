"""quantization_config: the scheme is recorded; without headers its rules price the checkpoint.

The strongest check: a checkpoint written here in each quantizer's own layout (shapes as the
quantizer's Linear registers them) must give, through its headers, the bytes the rules predict
from the config alone.
"""

from __future__ import annotations

from math import ceil

import pytest

from kvcap.errors import ModelError
from kvcap.model import load_model
from kvcap.model.quant_config import rule_bytes, scheme
from kvcap.model.spec import LINEAR, NORM, ModelSpec, Tensor
from test_reader_files import hf_folder, tiny_llama

LINEARS = (("self_attn.q_proj", 64, 64), ("self_attn.k_proj", 32, 64), ("self_attn.v_proj", 32, 64),
           ("self_attn.o_proj", 64, 64), ("mlp.gate_proj", 128, 64), ("mlp.up_proj", 128, 64),
           ("mlp.down_proj", 64, 128))


def checkpoint(linear_tensors) -> dict:
    """The tiny Llama with each Linear replaced by `linear_tensors(prefix, out, in)`; the rest f16."""
    t = {"model.embed_tokens.weight": ("F16", (256, 64))}
    for i in range(2):
        for name, out, inp in LINEARS:
            t.update(linear_tensors(f"model.layers.{i}.{name}.", out, inp))
        t[f"model.layers.{i}.input_layernorm.weight"] = ("F16", (64,))
        t[f"model.layers.{i}.post_attention_layernorm.weight"] = ("F16", (64,))
    t["model.norm.weight"] = ("F16", (64,))
    t["lm_head.weight"] = ("F16", (256, 64))
    return t


def gptq_layout(bits, group):
    # AutoGPTQ qlinear_cuda_old.QuantLinear.__init__
    def f(p, out, inp):
        groups = ceil(inp / group)
        return {p + "qweight": ("I32", (inp // 32 * bits, out)), p + "qzeros": ("I32", (groups, out // 32 * bits)),
                p + "scales": ("F16", (groups, out)), p + "g_idx": ("I32", (inp,))}
    return f


def awq_layout(bits, group):
    # AutoAWQ WQLinear_GEMM.__init__
    def f(p, out, inp):
        return {p + "qweight": ("I32", (inp, out // (32 // bits))),
                p + "qzeros": ("I32", (inp // group, out // (32 // bits))), p + "scales": ("F16", (inp // group, out))}
    return f


def fp8_block_layout(b0, b1):
    def f(p, out, inp):
        return {p + "weight": ("F8_E4M3", (out, inp)), p + "weight_scale_inv": ("F32", (ceil(out / b0), ceil(inp / b1)))}
    return f


def fbgemm_layout(p, out, inp):
    return {p + "weight": ("F8_E4M3", (out, inp)), p + "weight_scale": ("F32", (out, 1))}


def compressed_w4a16_layout(group):
    # compressed-tensors pack-quantized, symmetric int4 groups: weight_packed, weight_scale, weight_shape
    def f(p, out, inp):
        return {p + "weight_packed": ("I32", (out, inp * 4 // 32)), p + "weight_scale": ("F16", (out, inp // group)),
                p + "weight_shape": ("I64", (2,))}
    return f


CASES = {
    "gptq-4bit-g32": ({"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False, "sym": True},
                      gptq_layout(4, 32)),
    "gptq-8bit-g64": ({"quant_method": "gptq", "bits": 8, "group_size": 64}, gptq_layout(8, 64)),
    "awq-4bit-g32": ({"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemm", "zero_point": True},
                     awq_layout(4, 32)),
    "fp8-block-32x32": ({"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [32, 32],
                         "activation_scheme": "dynamic"}, fp8_block_layout(32, 32)),
    "fbgemm-fp8": ({"quant_method": "fbgemm_fp8", "modules_to_not_convert": []}, fbgemm_layout),
    "compressed-w4a16": ({"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
                          "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
                              "num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                              "group_size": 32}}}}, compressed_w4a16_layout(32)),
}


@pytest.mark.parametrize("case", CASES)
def test_rules_from_config_equal_headers_of_the_quantizers_layout(tmp_path, case):
    qc, layout = CASES[case]
    cfg = tiny_llama(quantization_config=qc)
    from_headers = load_model(hf_folder(tmp_path / "h", cfg, checkpoint(layout)))
    from_rules = load_model(hf_folder(tmp_path / "r", cfg))
    assert from_headers.quantization["stored_bytes_from"] == "safetensors headers"
    assert from_rules.quantization["stored_bytes_from"] == "quantization_config rules"
    assert from_rules.stored_bytes == from_headers.stored_bytes
    assert from_rules.quantization["method"] == qc["quant_method"]


def test_gptq_4bit_bytes_worked_by_hand(tmp_path):
    cfg = tiny_llama(quantization_config=CASES["gptq-4bit-g32"][0])
    b = load_model(hf_folder(tmp_path, cfg)).stored_bytes
    # Per Linear [out, in], 4 bits, groups of 32: qweight in*out/2 B, qzeros (in/32)*out/2 B,
    # g_idx 4*in B (int32); scales (in/32)*out*2 B (f16).
    # Per layer int32: q 2048+64+256, k 1024+32+256, v same, o as q, gate 4096+128+256, up same,
    # down 4096+128+512 = 21056; f16 scales: 256+128+128+256+512+512+512 = 2304.
    # Unquantized f16: embed + lm_head 2*256*64*2 = 65536, norms (2*2+1)*64*2 = 640.
    assert b == {"int32": 2 * 21056, "float16": 2 * 2304 + 65536 + 640}


def test_not_converted_modules_keep_the_model_dtype(tmp_path):
    qc = {"quant_method": "fbgemm_fp8", "modules_to_not_convert": ["model.layers.0.mlp.down_proj",
                                                                    "model.layers.1.self_attn.q_proj"]}
    b = load_model(hf_folder(tmp_path, tiny_llama(quantization_config=qc))).stored_bytes
    fp8_weights = 2 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 2 * 128 * 64 + 64 * 128) - 64 * 128 - 64 * 64
    assert b["float8_e4m3fn"] == fp8_weights
    assert b["float16"] == 65536 + 640 + 2 * (64 * 128 + 64 * 64)


def test_mxfp4_quantizes_only_the_experts():
    spec = ModelSpec(name="moe", model_type="x", source="t", hidden_size=64, num_hidden_layers=1,
                     num_attention_heads=1, num_key_value_heads=1, head_dim=64, vocab_size=8, intermediate_size=64,
                     context_window=None, dtype="bfloat16", tie_word_embeddings=True, layers=(),
                     tensors=(Tensor("layers.0.experts.gate_up_proj", (4, 128, 64), LINEAR),
                              Tensor("layers.0.q_proj", (64, 64), LINEAR), Tensor("norm", (64,), NORM)))
    # experts: 4*128*64 = 32768 values -> 16384 bytes of nibbles + 32768/32 = 1024 e8m0 scales.
    assert rule_bytes(spec, {"method": "mxfp4"}) == {"uint8": 16384 + 1024, "bfloat16": (64 * 64 + 64) * 2}


def test_bitsandbytes_nf4_double_quant():
    spec = ModelSpec(name="b", model_type="x", source="t", hidden_size=64, num_hidden_layers=1,
                     num_attention_heads=1, num_key_value_heads=1, head_dim=64, vocab_size=8, intermediate_size=64,
                     context_window=None, dtype="float16", tie_word_embeddings=True, layers=(),
                     tensors=(Tensor("layers.0.q_proj", (128, 128), LINEAR),))
    s = scheme({"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                        "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}})
    # 16384 values: 8192 bytes of nibbles, 256 blocks of 64 -> 256 uint8 absmax, 1 f32 nested absmax
    # per 256 blocks, a 256-entry f32 nested code and a 16-entry f32 quant_map.
    assert rule_bytes(spec, s) == {"uint8": 8192 + 256, "float32": 4 + 1024 + 64}


def test_unknown_method_is_fine_with_headers_but_fails_closed_without(tmp_path):
    cfg = tiny_llama(quantization_config={"quant_method": "hqq", "nbits": 4})
    with_headers = load_model(hf_folder(tmp_path / "h", cfg, {"w": ("I32", (4,))}))
    assert with_headers.quantization["method"] == "hqq" and with_headers.stored_bytes == {"int32": 16}
    with pytest.raises(ModelError, match="'hqq' is not supported; supported: gptq, awq"):
        load_model(hf_folder(tmp_path / "r", cfg))


@pytest.mark.parametrize("qc, message", [
    ({"quant_method": "gptq", "bits": 4, "group_size": 32, "checkpoint_format": "marlin"}, "no known layout"),
    ({"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemv"}, "no known layout"),
    ({"quant_method": "fp8", "weight_block_size": [0, 128]}, "two positive integers"),
    ({"quant_method": "gptq", "bits": "4"}, "must be an integer"),
    ({"bits": 4}, "no 'quant_method'"),
    ({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {
        "a": {"targets": ["re:.*q_proj"], "weights": {"num_bits": 4}}}}, "only one config group"),
])
def test_configs_the_rules_cannot_price(tmp_path, qc, message):
    with pytest.raises(ModelError, match=message):
        load_model(hf_folder(tmp_path, tiny_llama(quantization_config=qc)))


def test_catalog_fp8_config_records_its_scheme():
    """The catalog's Llama-3.1-405B-FP8 config: fbgemm FP8, its first and last layers' MLPs kept bf16."""
    m = load_model("meta-llama/Meta-Llama-3.1-405B-Instruct-FP8")
    assert m.quantization["method"] == "fbgemm_fp8" and m.quantization["stored_bytes_from"] == "quantization_config rules"
    hidden, inter, layers = 16384, 53248, 126
    mlp = 3 * hidden * inter
    kept = 2 * mlp + (hidden * hidden * 2 + 2 * hidden * 1024)       # layers 0 and 125 MLPs, layer 0 attention
    linear = layers * (mlp + hidden * hidden * 2 + 2 * hidden * 1024)
    assert m.stored_bytes["float8_e4m3fn"] == linear - kept
