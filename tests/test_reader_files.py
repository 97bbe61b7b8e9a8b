"""Helpers the reader tests use to write model files (and a few tests of the helpers themselves).

Files are written by the real writers where they exist (safetensors.numpy.save_file,
gguf.GGUFWriter) and by hand where a test needs what those refuse to write (bfloat16 headers
without numpy support, corrupt or hostile headers, sparse multi-GiB files).
"""

from __future__ import annotations

import json
import struct
from math import prod
from pathlib import Path

# Bytes per element for the safetensors dtypes the helpers write.
ST_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "U8": 1, "I8": 1, "F8_E4M3": 1}


def st_header(tensors: dict[str, tuple[str, tuple[int, ...]]], metadata: dict | None = None) -> tuple[bytes, int]:
    """(8-byte length + header JSON padded to 8 bytes, data size) for tensors laid out in order."""
    doc: dict = {"__metadata__": metadata} if metadata else {}
    pos = 0
    for name, (dtype, shape) in tensors.items():
        n = prod(shape) * ST_BYTES[dtype]
        doc[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + n]}
        pos += n
    raw = json.dumps(doc).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, pos


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...]]], *, sparse: bool = False,
                      metadata: dict | None = None) -> int:
    """Write a valid safetensors file of zeros (sparse: the data is a hole, no blocks written).
    Returns the data size in bytes."""
    head, size = st_header(tensors, metadata)
    with open(path, "wb") as f:
        f.write(head)
        if sparse:
            f.truncate(len(head) + size)
        else:
            f.write(bytes(size))
    return size


def tiny_llama(**over) -> dict:
    """A 2-layer Llama: hidden 64, 4 heads of 16, 2 KV heads, FFN 128, vocab 256, untied, fp16."""
    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "intermediate_size": 128, "vocab_size": 256, "max_position_embeddings": 2048,
           "tie_word_embeddings": False, "torch_dtype": "float16"}
    cfg.update(over)
    return cfg


# The tiny Llama's tensors in the HF checkpoint layout: name -> (dtype, shape [out, in]).
def tiny_llama_tensors(dtype: str = "F16") -> dict[str, tuple[str, tuple[int, ...]]]:
    t = {"model.embed_tokens.weight": (dtype, (256, 64))}
    for i in range(2):
        p = f"model.layers.{i}."
        for name, shape in (("self_attn.q_proj", (64, 64)), ("self_attn.k_proj", (32, 64)),
                            ("self_attn.v_proj", (32, 64)), ("self_attn.o_proj", (64, 64)),
                            ("mlp.gate_proj", (128, 64)), ("mlp.up_proj", (128, 64)),
                            ("mlp.down_proj", (64, 128))):
            t[p + name + ".weight"] = (dtype, shape)
        t[p + "input_layernorm.weight"] = (dtype, (64,))
        t[p + "post_attention_layernorm.weight"] = (dtype, (64,))
    t["model.norm.weight"] = (dtype, (64,))
    t["lm_head.weight"] = (dtype, (256, 64))
    return t


def hf_folder(root: Path, cfg: dict, tensors: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(cfg))
    if tensors is not None:
        write_safetensors(root / "model.safetensors", tensors)
    return root


def write_gguf(path: Path, arch: str, meta: dict, tensors: list[tuple[str, str, tuple[int, ...]]],
               file_type: int | None = None) -> None:
    """A GGUF through gguf.GGUFWriter. tensors: (name, ggml type name, ne) with ne in ggml order
    (ne[0] = row length); quantized ones are written as raw bytes of the right size."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

    w = GGUFWriter(str(path), arch)
    for key, value in meta.items():
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, list):
            w.add_array(key, value)
        else:
            raise TypeError(key)
    if file_type is not None:
        w.add_file_type(file_type)
    for name, tname, ne in tensors:
        qtype = GGMLQuantizationType[tname.upper()]
        block, size = GGML_QUANT_SIZES[qtype]
        row_bytes = ne[0] // block * size
        rows = prod(ne[1:])
        data = np.zeros((rows, row_bytes), dtype=np.uint8)
        w.add_tensor(name, data.reshape(tuple(reversed(ne[1:])) + (row_bytes,)), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def raw_gguf(kvs: list[bytes], infos: list[bytes], n_tensors: int | None = None, n_kv: int | None = None,
             version: int = 3) -> bytes:
    """A hand-built GGUF header (magic, version, counts, key/values, tensor infos), no data."""
    return (b"GGUF" + struct.pack("<IQQ", version, len(infos) if n_tensors is None else n_tensors,
                                  len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(infos))


def kv_str(key: str, value: str) -> bytes:
    return gguf_string(key) + struct.pack("<I", 8) + gguf_string(value)


def kv_u32(key: str, value: int) -> bytes:
    return gguf_string(key) + struct.pack("<II", 4, value)


def tensor_info(name: str, ne: tuple[int, ...], type_id: int, offset: int) -> bytes:
    return gguf_string(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne) \
        + struct.pack("<IQ", type_id, offset)


def bytes_read() -> int | None:
    """Bytes this process has read through read() calls so far (Linux /proc/self/io rchar)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def test_st_header_lays_tensors_out_contiguously():
    head, size = st_header({"a": ("F16", (3, 5)), "b": ("I32", (7,))})
    n = struct.unpack("<Q", head[:8])[0]
    doc = json.loads(head[8:8 + n])
    assert doc["a"]["data_offsets"] == [0, 30] and doc["b"]["data_offsets"] == [30, 58] and size == 58
    assert len(head) % 8 == 0


def test_write_safetensors_is_readable_by_the_safetensors_package(tmp_path):
    from safetensors import safe_open
    write_safetensors(tmp_path / "m.safetensors", {"w": ("F32", (4, 4)), "b": ("F16", (4,))})
    with safe_open(str(tmp_path / "m.safetensors"), "np") as f:
        assert sorted(f.keys()) == ["b", "w"] and f.get_tensor("w").shape == (4, 4)
