"""An MLC-LLM model folder: `mlc-chat-config.json` (+ `tensor-cache.json` / `ndarray-cache.json`).

The chat config carries the compile-time limits under `model_config` (context_window_size,
prefill_chunk_size, sliding_window_size, attention_sink_size, max_batch_size,
tensor_parallel_shards) and the runtime ones at the top level (`interface/gen_config.py`,
`gen_config`). The tensor cache lists every stored parameter with its shape and dtype
(`tvmjs.dump_tensor_cache`, written by `interface/convert_weight.py`, `_convert_args`); MLC loads
each as prod(shape) x itemsize(dtype) bytes, which is also how convert_weight sums `ParamBytes`.
The file was renamed from ndarray-cache.json to tensor-cache.json in mlc-llm #3326 (2025-09).
"""

from __future__ import annotations

import dataclasses
import re
from math import prod
from pathlib import Path
from typing import Any, Mapping

from ..errors import ModelError
from .limits import DEFAULT_LIMITS, ReadLimits

CHAT_CONFIG = "mlc-chat-config.json"
TENSOR_CACHES = ("tensor-cache.json", "ndarray-cache.json")
# Runtime values at the top level of mlc-chat-config.json (config.cc, GetModelConfigLimits).
RUNTIME_KEYS = ("context_window_size", "prefill_chunk_size", "sliding_window_size", "attention_sink_size",
                "tensor_parallel_shards", "pipeline_parallel_stages")
# Compile-time values in `model_config`, named as kvcap's MLC options name them.
COMPILE_KEYS = {"context_window_size": "compile_context_window_size",
                "prefill_chunk_size": "compile_prefill_chunk_size",
                "max_batch_size": "compile_max_batch_size",
                "sliding_window_size": "compile_sliding_window_size"}
# MLC model names (python/mlc_llm/model/model.py, MODELS) whose HF model_type differs.
MLC_TO_HF = {"phi-msft": "phi", "qwen3-embedding": "qwen3"}
_DTYPE = re.compile(r"^(u?int|float|bfloat)(\d+)(?:x(\d+))?$")
_FP_SMALL = re.compile(r"^(?:float(\d)_e\dm\d\w*|e\dm\d_float(\d))$")


def dtype_bits(dtype: Any, where: str) -> int:
    """Bits per element of a TVM dtype string: 'float16', 'uint32', 'e4m3_float8', 'float8_e4m3fn'."""
    if isinstance(dtype, str):
        m = _DTYPE.match(dtype)
        if m and int(m.group(2)) in (1, 4, 8, 16, 32, 64):
            return int(m.group(2)) * int(m.group(3) or 1)
        m = _FP_SMALL.match(dtype)
        if m:
            return int(m.group(1) or m.group(2))
        if dtype == "bool":
            return 8
    raise ModelError(f"{where}: unknown tensor dtype {dtype!r}")


def _records(doc: Any, where: str, limits: ReadLimits) -> tuple[dict[str, int], int, int | float | None]:
    """(bytes by dtype, tensor count, ParamBytes) of a tensor-cache.json document."""
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        raise ModelError(f"{where}: a tensor cache needs a 'records' list")
    by_dtype: dict[str, int] = {}
    count = 0
    shards = doc["records"]
    if len(shards) > limits.max_files:
        raise ModelError(f"{where}: {len(shards)} shards, above the cap of {limits.max_files} (ReadLimits.max_files)")
    for shard in shards:
        if not isinstance(shard, dict) or not isinstance(shard.get("records"), list):
            raise ModelError(f"{where}: each shard needs its own 'records' list")
        shard_bytes = shard.get("nbytes")
        for rec in shard["records"]:
            count += 1
            if count > limits.max_tensors:
                raise ModelError(f"{where}: more than {limits.max_tensors} tensors (ReadLimits.max_tensors)")
            name = rec.get("name") if isinstance(rec, dict) else None
            shape, dtype, nbytes, offset = (rec.get(k) for k in ("shape", "dtype", "nbytes", "byteOffset")) \
                if isinstance(rec, dict) else (None,) * 4
            if not isinstance(name, str) or not isinstance(shape, list) or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
                raise ModelError(f"{where}: a record needs a name and a shape of non-negative integers")
            bits = prod(shape) * dtype_bits(dtype, f"{where}: {name}")
            if bits % 8:
                raise ModelError(f"{where}: {name} ({dtype} {shape}) does not fill whole bytes")
            loaded = bits // 8
            # f32-to-bf16 records keep dtype float32 but store half the bytes; MLC decodes on load.
            stored = loaded // 2 if rec.get("format") == "f32-to-bf16" and dtype == "float32" else loaded
            if nbytes != stored:
                raise ModelError(f"{where}: {name} declares {nbytes!r} bytes but {dtype} {shape} needs {stored}")
            if isinstance(shard_bytes, int) and (not isinstance(offset, int) or offset < 0 or offset + stored > shard_bytes):
                raise ModelError(f"{where}: {name} lies outside its shard of {shard_bytes} bytes")
            by_dtype[dtype] = by_dtype.get(dtype, 0) + loaded
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    declared = meta.get("ParamBytes")
    # Kept as JSON gave it: float() of a 400-digit ParamBytes overflows; != compares any size.
    return by_dtype, count, declared if isinstance(declared, (int, float)) and not isinstance(declared, bool) else None


def read_tensor_cache(folder: Path, limits: ReadLimits = DEFAULT_LIMITS) -> tuple[dict[str, int], int, str] | None:
    """(bytes by dtype, tensor count, file name) of the folder's tensor cache, or None."""
    from .hf import read_json
    for fname in TENSOR_CACHES:
        path = folder / fname
        if path.is_file():
            by_dtype, count, declared = _records(read_json(path, "tensor cache", limits.max_json, "ReadLimits.max_json"), str(path), limits)
            total = sum(by_dtype.values())
            if declared is not None and declared != total:
                shown = declared if isinstance(declared, int) else f"{declared:.0f}"   # :.0f of a huge int overflows
                raise ModelError(f"{path}: metadata ParamBytes {shown} disagrees with its records ({total} bytes)")
            return dict(sorted(by_dtype.items())), count, fname
    return None


def _activation_dtype(quantization: str, where: str) -> str:
    """q4f16_1 -> float16, q4bf16_0 -> bfloat16, q0f32 -> float32 (the activation dtype MLC names)."""
    for tag, dtype in (("bf16", "bfloat16"), ("f32", "float32"), ("f16", "float16")):
        if tag in quantization:
            return dtype
    raise ModelError(f"{where}: cannot tell the activation dtype of quantization {quantization!r}")


def hf_config(chat: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The HF-style config a family builder accepts, from an mlc-chat-config.json document."""
    model_type, quant, model_cfg = chat.get("model_type"), chat.get("quantization"), chat.get("model_config")
    if not isinstance(model_type, str) or not model_type:
        raise ModelError(f"{where}: mlc-chat-config.json has no 'model_type'")
    if not isinstance(quant, str) or not quant:
        raise ModelError(f"{where}: mlc-chat-config.json has no 'quantization'")
    if not isinstance(model_cfg, dict):
        raise ModelError(f"{where}: mlc-chat-config.json has no 'model_config' object")
    cfg = dict(model_cfg)
    cfg["model_type"] = MLC_TO_HF.get(model_type, model_type)
    cfg.setdefault("torch_dtype", _activation_dtype(quant, where))
    context = model_cfg.get("context_window_size")
    if "max_position_embeddings" not in cfg and isinstance(context, int) and not isinstance(context, bool) and context > 0:
        cfg["max_position_embeddings"] = context
    window = model_cfg.get("sliding_window_size")
    if "sliding_window" not in cfg and isinstance(window, int) and not isinstance(window, bool) and window > 0:
        cfg["sliding_window"] = window
    return cfg


def mlc_limits(chat: Mapping[str, Any]) -> dict[str, Any]:
    """Runtime and compile-time limits, under the names kvcap's MLC engine options use."""
    from .config import get_int
    # Counts, checked like every config field (-1 is MLC's "none" for windows and sinks).
    out = {k: get_int(chat, k, minimum=-1) for k in RUNTIME_KEYS if chat.get(k) is not None}
    model_cfg = chat.get("model_config") or {}
    for key, name in COMPILE_KEYS.items():
        if model_cfg.get(key) is not None:
            out[name] = get_int(model_cfg, key, minimum=-1)
    if model_cfg.get("max_batch_size") is not None:
        out["max_batch_size"] = get_int(model_cfg, "max_batch_size", minimum=-1)
    return out


def from_mlc_folder(folder: Path, limits: ReadLimits = DEFAULT_LIMITS):
    """An MLC model folder -> ModelSpec with MLC's limits and the exact bytes MLC loads."""
    from . import hf
    path = folder / CHAT_CONFIG
    chat = hf.read_json(path, "mlc-chat-config", limits.max_json, "ReadLimits.max_json")
    spec = hf.from_config(hf_config(chat, str(path)), folder.name, f"mlc:{folder}")
    quant = {"format": "mlc", "quantization": chat["quantization"], "mlc_model_type": chat["model_type"]}
    cache = read_tensor_cache(folder, limits)
    changes: dict[str, Any] = {"mlc": mlc_limits(chat), "quantization": quant}
    if cache is not None:
        by_dtype, count, fname = cache
        quant["stored_bytes_from"] = fname
        changes.update(stored_bytes=by_dtype, stored_tensors=count)
    return dataclasses.replace(spec, **changes)
