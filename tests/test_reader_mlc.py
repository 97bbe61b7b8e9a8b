"""MLC folders: mlc-chat-config.json limits and the exact parameter bytes MLC loads."""

from __future__ import annotations

import json
from math import prod

import pytest

from kvcap.errors import ModelError
from kvcap.model import load_model
from kvcap.model.mlc_folder import dtype_bits, hf_config, read_tensor_cache


def chat_config(**over) -> dict:
    """What `mlc_llm gen_config` writes for Llama-3-8B-Instruct q4f16_1 (fields that matter)."""
    doc = {
        "model_type": "llama", "quantization": "q4f16_1",
        "model_config": {"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
                         "num_hidden_layers": 32, "rms_norm_eps": 1e-5, "vocab_size": 128256,
                         "tie_word_embeddings": False, "position_embedding_base": 500000.0,
                         "context_window_size": 8192, "prefill_chunk_size": 2048, "num_key_value_heads": 8,
                         "head_dim": 128, "tensor_parallel_shards": 1, "pipeline_parallel_stages": 1,
                         "max_batch_size": 80},
        "vocab_size": 128256, "context_window_size": 8192, "sliding_window_size": -1,
        "prefill_chunk_size": 2048, "attention_sink_size": -1, "tensor_parallel_shards": 1,
        "pipeline_parallel_stages": 1, "temperature": 0.6, "conv_template": {"name": "llama-3"},
    }
    doc.update(over)
    return doc


def q4f16_1_records() -> list[tuple[str, list[int], str]]:
    """The parameters MLC stores for Llama-3-8B in q4f16_1: group quantization, 4 bits, groups
    of 32, packed 8 per uint32 (q_weight [out, in/8]) with one f16 scale per group
    (q_scale [out, in/32]); q/k/v fused into qkv_proj, gate/up into gate_up_proj; the embedding
    and lm_head quantized too; norms f16."""
    recs = []

    def linear(name, out, inp):
        recs.extend([(name + ".q_weight", [out, inp // 8], "uint32"), (name + ".q_scale", [out, inp // 32], "float16")])

    linear("model.embed_tokens", 128256, 4096)
    for i in range(32):
        p = f"model.layers.{i}."
        linear(p + "self_attn.qkv_proj", 4096 + 2 * 1024, 4096)
        linear(p + "self_attn.o_proj", 4096, 4096)
        linear(p + "mlp.gate_up_proj", 2 * 14336, 4096)
        linear(p + "mlp.down_proj", 4096, 14336)
        recs += [(p + "input_layernorm.weight", [4096], "float16"),
                 (p + "post_attention_layernorm.weight", [4096], "float16")]
    recs.append(("model.norm.weight", [4096], "float16"))
    linear("lm_head", 128256, 4096)
    return recs


def write_cache(folder, records, name="tensor-cache.json", param_bytes=None, shard_cap=32 << 20, bf16=()):
    bits = {"uint32": 32, "float16": 16, "float32": 32, "bfloat16": 16}
    shards, cur, total = [], [], 0
    offset = 0
    for rname, shape, dtype in records:
        loaded = prod(shape) * bits[dtype] // 8
        stored = loaded // 2 if rname in bf16 else loaded
        if offset + stored > shard_cap and cur:
            shards.append({"dataPath": f"params_shard_{len(shards)}.bin", "format": "raw-shard", "nbytes": offset,
                           "records": cur, "md5sum": "0"})
            cur, offset = [], 0
        cur.append({"name": rname, "shape": shape, "dtype": dtype, "format": "f32-to-bf16" if rname in bf16 else "raw",
                    "nbytes": stored, "byteOffset": offset})
        offset += stored
        total += loaded
    shards.append({"dataPath": f"params_shard_{len(shards)}.bin", "format": "raw-shard", "nbytes": offset,
                   "records": cur, "md5sum": "0"})
    meta = {"ParamSize": len(records), "ParamBytes": float(total if param_bytes is None else param_bytes),
            "BitsPerParam": 4.5}
    (folder / name).write_text(json.dumps({"metadata": meta, "records": shards}))


@pytest.fixture
def llama3_folder(tmp_path):
    folder = tmp_path / "Llama-3-8B-Instruct-q4f16_1-MLC"
    folder.mkdir()
    (folder / "mlc-chat-config.json").write_text(json.dumps(chat_config()))
    write_cache(folder, q4f16_1_records())
    return folder


def test_llama3_8b_q4f16_1_params_match_mlcs_logged_4308_133_mib(llama3_folder):
    m = load_model(llama3_folder)
    # Per Linear [out, in]: out*in/8 uint32 (4 B) + out*in/32 f16 (2 B) = 0.5625 B per weight.
    # Layer: 4096 x (6144 + 4096 + 28672 + 14336) x 0.5625 = 122,683,392; x 32 = 3,925,868,544.
    # embed + lm_head: 2 x 128256 x 4096 x 0.5625 = 591,003,648; norms: 65 x 4096 x 2 = 532,480.
    assert sum(m.stored_bytes.values()) == 3_925_868_544 + 591_003_648 + 532_480 == 4_517_404_672
    # MLC logs "Parameters: 4308.133 MB" (MiB) for this model (validation case mlc-bentomlc-readme).
    assert round(4_517_404_672 / 2**20, 3) == 4308.133
    assert m.stored_tensors == len(q4f16_1_records())
    assert set(m.stored_bytes) == {"uint32", "float16"}


def test_chat_config_limits_runtime_and_compile_time(llama3_folder):
    m = load_model(llama3_folder / "mlc-chat-config.json")
    assert m.mlc == {"context_window_size": 8192, "prefill_chunk_size": 2048, "sliding_window_size": -1,
                     "attention_sink_size": -1, "tensor_parallel_shards": 1, "pipeline_parallel_stages": 1,
                     "compile_context_window_size": 8192, "compile_prefill_chunk_size": 2048,
                     "compile_max_batch_size": 80, "max_batch_size": 80}
    assert m.quantization["quantization"] == "q4f16_1" and m.quantization["format"] == "mlc"
    assert (m.num_hidden_layers, m.num_key_value_heads, m.head_dim, m.dtype) == (32, 8, 128, "float16")
    assert m.context_window == 8192 and m.source == f"mlc:{llama3_folder}"


def test_old_ndarray_cache_name_and_f32_to_bf16_records(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "mlc-chat-config.json").write_text(json.dumps(chat_config()))
    recs = [("a", [10, 4], "float32"), ("b", [3], "float16")]
    write_cache(folder, recs, name="ndarray-cache.json", bf16={"a"})
    by_dtype, count, fname = read_tensor_cache(folder)
    # "a" is stored as bf16 (80 bytes on disk) but MLC decodes it to float32: 10*4*4 = 160 bytes loaded.
    assert by_dtype == {"float32": 160, "float16": 6} and count == 2 and fname == "ndarray-cache.json"


def test_param_bytes_disagreeing_with_records_is_refused(tmp_path):
    write_cache(tmp_path, [("a", [4], "float16")], param_bytes=9)
    with pytest.raises(ModelError, match="ParamBytes 9 disagrees with its records \\(8 bytes\\)"):
        read_tensor_cache(tmp_path)


@pytest.mark.parametrize("record, message", [
    ({"name": "a", "shape": [4], "dtype": "float16", "nbytes": 7, "byteOffset": 0}, "declares 7 bytes but float16"),
    ({"name": "a", "shape": [4], "dtype": "complex7", "nbytes": 8, "byteOffset": 0}, "unknown tensor dtype"),
    ({"name": "a", "shape": [-4], "dtype": "float16", "nbytes": 8, "byteOffset": 0}, "non-negative integers"),
    ({"name": "a", "shape": [4], "dtype": "float16", "nbytes": 8, "byteOffset": 100}, "outside its shard"),
    ("junk", "needs a name and a shape"),
])
def test_bad_records(tmp_path, record, message):
    doc = {"metadata": {}, "records": [{"dataPath": "p.bin", "format": "raw-shard", "nbytes": 8, "records": [record]}]}
    (tmp_path / "tensor-cache.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=message):
        read_tensor_cache(tmp_path)


def test_folder_without_tensor_cache_has_limits_but_no_bytes(tmp_path):
    (tmp_path / "mlc-chat-config.json").write_text(json.dumps(chat_config()))
    m = load_model(tmp_path)
    assert m.stored_bytes == {} and m.mlc["compile_max_batch_size"] == 80


@pytest.mark.parametrize("quant, dtype", [("q4f16_1", "float16"), ("q4bf16_0", "bfloat16"), ("q0f32", "float32"),
                                          ("e4m3_e4m3_f16", "float16")])
def test_activation_dtype_from_quantization_name(quant, dtype):
    assert hf_config(chat_config(quantization=quant), "t")["torch_dtype"] == dtype


@pytest.mark.parametrize("doc, message", [
    (chat_config(model_type=""), "no 'model_type'"),
    (chat_config(quantization=None), "no 'quantization'"),
    (chat_config(model_config=[]), "no 'model_config'"),
    (chat_config(quantization="q4x"), "cannot tell the activation dtype"),
])
def test_bad_chat_config(tmp_path, doc, message):
    (tmp_path / "mlc-chat-config.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=message):
        load_model(tmp_path)


@pytest.mark.parametrize("dtype, bits", [("float16", 16), ("uint32", 32), ("int8", 8), ("e4m3_float8", 8),
                                         ("float8_e4m3fn", 8), ("float4_e2m1fn", 4), ("float16x2", 32), ("bool", 8)])
def test_tvm_dtype_bits(dtype, bits):
    assert dtype_bits(dtype, "t") == bits
