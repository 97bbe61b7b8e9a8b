"""Model files to fuzz: a tiny valid GGUF, safetensors checkpoint and MLC folder, and ways to
corrupt each (truncation, flipped bytes, declared lengths near 2^64, offsets past the end,
unknown dtypes, huge dims, mutated JSON headers).

The writers here are written by hand so they can write what real writers refuse to.
"""

from __future__ import annotations

import json
import random
import struct
from math import prod
from pathlib import Path
from typing import Any

from .jsonmut import garbage, mutate

# Integers a corrupted length, count, dim or offset field takes.
SPECIAL_U64 = (0, 1, 2, 7, 8, 31, 32, 255, 4096, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63,
               2**64 - 32, 2**64 - 8, 2**64 - 1)

# --- GGUF -------------------------------------------------------------------------------------
# ggml type ids: f32, f16, q8_0 (32 values in 34 bytes); enough to make every path reachable.
F32, F16, Q8_0 = 0, 1, 8
_BLOCK = {F32: (1, 4), F16: (1, 2), Q8_0: (32, 34)}
TINY_GGUF_META: dict[str, Any] = {
    "general.architecture": "llama", "general.name": "fuzz-llama", "general.file_type": 7,
    "llama.block_count": 2, "llama.embedding_length": 64, "llama.attention.head_count": 4,
    "llama.attention.head_count_kv": 2, "llama.feed_forward_length": 128, "llama.context_length": 2048,
    "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.rope.freq_base": 10000.0,
    "tokenizer.ggml.tokens": [f"t{i}" for i in range(96)],
}


def tiny_gguf_tensors(layers: int = 2) -> list[tuple[str, int, tuple[int, ...]]]:
    t = [("token_embd.weight", Q8_0, (64, 96))]
    for i in range(layers):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", F32, (64,)), (p + "attn_q.weight", Q8_0, (64, 64)),
              (p + "attn_k.weight", Q8_0, (64, 32)), (p + "attn_v.weight", Q8_0, (64, 32)),
              (p + "attn_output.weight", Q8_0, (64, 64)), (p + "ffn_norm.weight", F32, (64,)),
              (p + "ffn_gate.weight", Q8_0, (64, 128)), (p + "ffn_up.weight", Q8_0, (64, 128)),
              (p + "ffn_down.weight", Q8_0, (128, 64))]
    return t + [("output_norm.weight", F32, (64,)), ("output.weight", F16, (64, 96))]


def _nbytes(type_id: int, shape: tuple[int, ...]) -> int:
    block, size = _BLOCK.get(type_id, (1, 1))
    return shape[0] // block * size * prod(shape[1:]) if shape else 0


class _Writer:
    """Appends GGUF fields and remembers where each integer field sits (for targeted corruption)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.ints: list[tuple[int, int]] = []     # (offset, size) of every length/count/dim/type/offset

    def int(self, fmt: str, v: int) -> None:
        self.ints.append((len(self.buf), struct.calcsize(fmt)))
        self.buf += struct.pack("<" + fmt, v)

    def string(self, s: str) -> None:
        raw = s.encode()
        self.int("Q", len(raw))
        self.buf += raw

    def value(self, v: Any) -> None:
        if isinstance(v, bool):
            self.int("I", 7); self.buf += struct.pack("<?", v)
        elif isinstance(v, int):
            if 0 <= v < 2**32:
                self.int("I", 4); self.buf += struct.pack("<I", v)
            else:
                self.int("I", 11); self.buf += struct.pack("<q", max(-2**63, min(v, 2**63 - 1)))
        elif isinstance(v, float):
            if v != v or abs(v) == float("inf") or abs(v) < 3e38:
                self.int("I", 6); self.buf += struct.pack("<f", v)
            else:
                self.int("I", 12); self.buf += struct.pack("<d", v)
        elif isinstance(v, str):
            self.int("I", 8); self.string(v)
        elif isinstance(v, (list, tuple)):
            self.int("I", 9)
            if all(isinstance(x, str) for x in v):
                self.int("I", 8); self.int("Q", len(v))
                for x in v:
                    self.string(x)
            else:
                xs = [int(x) if isinstance(x, (int, float)) and x == x and abs(x) < 2**31 else 0 for x in v]
                self.int("I", 5); self.int("Q", len(xs))
                self.buf += struct.pack(f"<{len(xs)}i", *xs)
        else:                                       # dicts and None have no GGUF type: write a string
            self.int("I", 8); self.string(json.dumps(v, default=str))


def gguf_bytes(meta: dict[str, Any], tensors: list[tuple[str, int, tuple[int, ...]]], version: int = 3,
               alignment: int = 32) -> tuple[bytes, list[tuple[int, int]]]:
    """A GGUF file (data zero-filled) and the (offset, size) of its integer fields."""
    w = _Writer()
    w.buf += b"GGUF"
    w.int("I", version)
    w.int("Q", len(tensors))
    w.int("Q", len(meta))
    for k, v in meta.items():
        w.string(k)
        w.value(v)
    offset = 0
    for name, type_id, shape in tensors:
        w.string(name)
        w.int("I", len(shape))
        for d in shape:
            w.int("Q", d % 2**64)
        w.int("I", type_id % 2**32)
        w.int("Q", offset % 2**64)
        offset += (_nbytes(type_id, shape) + alignment - 1) // alignment * alignment
    w.buf += bytes(-len(w.buf) % alignment)
    w.buf += bytes(min(offset, 1 << 20))        # a tensor declaring more than that runs past the end
    return bytes(w.buf), w.ints


def _gguf_meta_variant(rng: random.Random) -> dict[str, Any]:
    meta = dict(TINY_GGUF_META)
    if rng.random() < 0.5:
        keys = list(meta)
        for _ in range(rng.randint(1, 3)):
            k = rng.choice(keys)
            r = rng.random()
            if r < 0.3:
                meta.pop(k, None)
            elif r < 0.8:
                meta[k] = rng.choice((garbage(rng), rng.choice(SPECIAL_U64), -rng.randint(1, 2**31), float("nan"),
                                      float("inf"), "x" * rng.randint(0, 300)))
            else:
                meta["general.architecture"] = rng.choice(("llama", "qwen2", "qwen3moe", "gemma3", "deepseek2",
                                                           "gpt-oss", "mamba", "rwkv7", "bert", "", "clip", "llama\x00"))
    return meta


def gguf_case(rng: random.Random) -> bytes:
    """A tiny GGUF model, valid or corrupted in one or more ways."""
    tensors = tiny_gguf_tensors(rng.choice((1, 2)))
    if rng.random() < 0.2:                       # an odd tensor: wrong type id, huge dims, many dims
        i = rng.randrange(len(tensors))
        name, t, shape = tensors[i]
        tensors[i] = (name, rng.choice((t, 4, 5, 31, 42, 255, 2**31)),
                      rng.choice((shape, (2**40, 2**40), (0,), (1,) * 5, (64, 2**63), (33, 64))))
    data, ints = gguf_bytes(_gguf_meta_variant(rng), tensors, version=3 if rng.random() < 0.85 else rng.choice((2, 1, 4, 0x03000000)),
                            alignment=32)
    data = bytearray(data)
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        r = rng.random()
        if r < 0.45 and ints:                     # a length/count/dim/type/offset field corrupted
            off, size = rng.choice(ints)
            v = rng.choice(SPECIAL_U64 + (len(data), len(data) + 1, rng.getrandbits(size * 8)))
            data[off:off + size] = (v % (1 << (8 * size))).to_bytes(size, "little")
        elif r < 0.65:                            # truncated
            del data[rng.randrange(len(data) + 1):]
        elif r < 0.85 and data:                   # bytes flipped
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        else:                                     # junk appended or a slice dropped
            if rng.random() < 0.5:
                data += rng.randbytes(rng.randint(1, 64))
            elif data:
                a = rng.randrange(len(data))
                del data[a:a + rng.randint(1, 32)]
    return bytes(data)


# --- safetensors ------------------------------------------------------------------------------
ST_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "U8": 1, "F8_E4M3": 1}
TINY_CONFIG: dict[str, Any] = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 96,
    "max_position_embeddings": 2048, "tie_word_embeddings": False, "torch_dtype": "float16",
}


def tiny_st_tensors() -> dict[str, tuple[str, tuple[int, ...]]]:
    t = {"model.embed_tokens.weight": ("F16", (96, 64))}
    for i in range(2):
        p = f"model.layers.{i}."
        for name, shape in (("self_attn.q_proj", (64, 64)), ("self_attn.k_proj", (32, 64)),
                            ("self_attn.v_proj", (32, 64)), ("self_attn.o_proj", (64, 64)),
                            ("mlp.gate_proj", (128, 64)), ("mlp.up_proj", (128, 64)), ("mlp.down_proj", (64, 128))):
            t[p + name + ".weight"] = ("F16", shape)
        t[p + "input_layernorm.weight"] = ("F16", (64,))
        t[p + "post_attention_layernorm.weight"] = ("F16", (64,))
    t["model.norm.weight"] = ("F16", (64,))
    t["lm_head.weight"] = ("F16", (96, 64))
    return t


def st_doc(tensors: dict[str, tuple[str, tuple[int, ...]]]) -> tuple[dict, int]:
    doc: dict[str, Any] = {}
    pos = 0
    for name, (dtype, shape) in tensors.items():
        n = prod(shape) * ST_BYTES[dtype]
        doc[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + n]}
        pos += n
    return doc, pos


def st_bytes(doc: Any, data_size: int, declared: int | None = None) -> bytes:
    raw = json.dumps(doc, allow_nan=True).encode()
    raw += b" " * (-len(raw) % 8)
    n = len(raw) if declared is None else declared
    return struct.pack("<Q", n % 2**64) + raw + bytes(data_size)


def safetensors_case(rng: random.Random) -> tuple[bytes, dict]:
    """(a safetensors file, the config.json beside it), either or both corrupted."""
    doc, size = st_doc(tiny_st_tensors())
    cfg = dict(TINY_CONFIG)
    r = rng.random()
    if r < 0.4:                                  # the header JSON mutated (dtypes, shapes, offsets, metadata)
        doc = mutate(rng, doc, extra_keys=("__metadata__",))
        if rng.random() < 0.3:
            name = rng.choice([k for k in doc if k != "__metadata__"] or ["x"])
            doc[name] = {"dtype": rng.choice(("F16", "F64", "Q4", "f16", "BOOL", "F4", "F6_E2M3", None)),
                         "shape": rng.choice(([2**40, 2**40], [3], [-1, 4], [0], [1] * 40, [2.5], ["8"], None)),
                         "data_offsets": rng.choice(([0, 2**64], [size, size + 2], [5, 3], [0], [-2, 0], [0, size * 4]))}
    elif r < 0.5:
        cfg = mutate(rng, cfg)
    data = bytearray(st_bytes(doc, size, rng.choice(SPECIAL_U64) if rng.random() < 0.2 else None))
    if rng.random() < 0.25:
        if rng.random() < 0.5:
            del data[rng.randrange(len(data) + 1):]
        else:
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data), cfg


def index_case(rng: random.Random, shard_names: list[str]) -> Any:
    """A model.safetensors.index.json naming the shards, perhaps mutated (paths, types, missing files)."""
    doc = {"metadata": {"total_size": 1}, "weight_map": {f"w{i}": n for i, n in enumerate(shard_names)}}
    if rng.random() < 0.6:
        doc = mutate(rng, doc)
        if rng.random() < 0.3:
            doc["weight_map"] = {"w": rng.choice(("../config.json", "/etc/passwd", "", ".", "missing.safetensors",
                                                  None, 3, ["a"], "a/b.safetensors"))}
    return doc


# --- MLC folder -------------------------------------------------------------------------------
def mlc_case(rng: random.Random) -> tuple[dict, dict | None]:
    """(mlc-chat-config.json, tensor-cache.json or None), perhaps mutated."""
    chat = {"model_type": "llama", "quantization": "q4f16_1", "context_window_size": 2048,
            "prefill_chunk_size": 512, "max_batch_size": 4,
            "model_config": {**TINY_CONFIG, "context_window_size": 2048, "prefill_chunk_size": 512,
                             "tensor_parallel_shards": 1, "max_batch_size": 4}}
    recs, offset = [], 0
    for name, (_, shape) in tiny_st_tensors().items():
        n = prod(shape) * 2
        recs.append({"name": name, "shape": list(shape), "dtype": "float16", "format": "raw",
                     "nbytes": n, "byteOffset": offset})
        offset += n
    cache: dict | None = {"metadata": {"ParamSize": len(recs), "ParamBytes": offset},
                          "records": [{"dataPath": "params_shard_0.bin", "format": "raw-shard", "nbytes": offset,
                                       "records": recs}]}
    r = rng.random()
    if r < 0.45:
        chat = mutate(rng, chat, extra_keys=("model_config", "quantization", "model_type"))
    elif r < 0.85:
        cache = mutate(rng, cache)
    elif r < 0.92:
        cache = None
    return chat, cache
