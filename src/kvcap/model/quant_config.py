"""HF `quantization_config` -> the scheme, and the bytes a checkpoint of that scheme stores.

When safetensors headers are at hand their bytes are the truth and only the scheme is recorded.
Without them (a config.json, a catalog entry) `rule_bytes` prices the family builder's tensors
the way each quantizer lays out its checkpoint, per quantized Linear [out, in]:

- GPTQ (AutoGPTQ `qlinear_cuda_old.QuantLinear.__init__`): qweight int32 [in*bits/32, out],
  qzeros int32 [groups, out*bits/32], scales f16 [groups, out], g_idx int32 [in].
- AWQ GEMM (AutoAWQ `WQLinear_GEMM.__init__`): qweight int32 [in, out*bits/32],
  qzeros int32 [in/group, out*bits/32], scales f16 [in/group, out].
- FP8 (transformers `FP8Linear`, DeepSeek V3): weight e4m3 [out, in] and weight_scale_inv f32
  [ceil(out/b0), ceil(in/b1)]; without weight_block_size one f32 weight_scale (+ input_scale
  when activation_scheme is static).
- fbgemm FP8 (transformers `FbgemmFp8Linear`): weight e4m3 [out, in], weight_scale f32 [out, 1].
- MXFP4 (transformers `Mxfp4GptOssExperts`): only the MoE experts, as uint8 blocks
  [.., in/32, 16] and uint8 e8m0 scales [.., in/32].
- bitsandbytes (`Params4bit` / `Int8Params` serialisation): 4-bit uint8 weight [numel/2] + absmax
  per 64 values (double quant: uint8 absmax + f32 per 256 blocks + a 256-entry f32 code) + a
  16-entry f32 quant_map; the packed quant_state JSON (~100-200 bytes per Linear) is left out.
  8-bit: int8 weight + f32 SCB [out].
- compressed-tensors (`compressors/quantized_compressors`): pack-quantized int32 weight_packed
  [out, ceil(in*bits/32)] + int64 weight_shape [2]; int-/naive-quantized int8; float-quantized
  e4m3; nvfp4-pack-quantized uint8 [out, in/2] + e4m3 scales per 16 + f32 global scales.
  Scales take the model dtype, shaped by strategy (tensor 1, channel out, group out x in/group,
  block ceil(out/b0) x ceil(in/b1)).

Quantized are the text (and MTP) Linear weights not matched by the config's
`modules_to_not_convert` / `ignore`; embeddings, norms, routers, lm_head (unless GPTQ's `lm_head`)
and vision towers keep the model dtype.
"""

from __future__ import annotations

import re
from fnmatch import fnmatch
from math import ceil, prod
from typing import Any, Mapping

from ..errors import ModelError
from .spec import LINEAR, LM_HEAD, ModelSpec, Tensor

METHODS = ("gptq", "awq", "fp8", "fbgemm_fp8", "mxfp4", "bitsandbytes", "compressed-tensors")
_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
_ATTN = {"q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa",
         "kv_b_proj", "dense", "query_key_value"}
_QUANT_PARTS = ("text", "mtp")


def _qc(cfg: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for holder in (cfg, cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else {}):
        for key in ("quantization_config", "compression_config"):
            qc = holder.get(key)
            if qc:
                if not isinstance(qc, dict):
                    raise ModelError(f"config field {key!r} must be an object")
                return qc
    return None


def _num(qc: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        v = qc.get(n)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ModelError(f"quantization_config field {n!r} must be an integer, got {v!r}")
            return v
    return default


def scheme(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The checkpoint's quantization scheme, normalised; None for an unquantized checkpoint."""
    qc = _qc(cfg)
    if qc is None:
        return None
    method = qc.get("quant_method")
    if not isinstance(method, str):
        raise ModelError("quantization_config has no 'quant_method'")
    method = method.lower()
    out: dict[str, Any] = {"method": method}
    skip = qc.get("modules_to_not_convert") or qc.get("ignore") or qc.get("llm_int8_skip_modules") or []
    if isinstance(skip, list):
        out["not_converted"] = [s for s in skip if isinstance(s, str)]
    if method == "gptq":
        out.update(bits=_num(qc, "bits", default=4), group_size=_num(qc, "group_size", default=128),
                   format=str(qc.get("checkpoint_format") or "gptq"), lm_head=qc.get("lm_head") is True,
                   desc_act=bool(qc.get("desc_act")), sym=qc.get("sym", True) is not False)
    elif method == "awq":
        out.update(bits=_num(qc, "bits", "w_bit", default=4), group_size=_num(qc, "group_size", "q_group_size", default=128),
                   version=str(qc.get("version") or "gemm").lower(), zero_point=qc.get("zero_point", True) is not False)
    elif method == "fp8":
        block = qc.get("weight_block_size")
        out.update(weight_block_size=list(block) if isinstance(block, list) else None,
                   activation_scheme=str(qc.get("activation_scheme") or "dynamic"))
    elif method == "bitsandbytes":
        out.update(bits=4 if qc.get("load_in_4bit") else 8 if qc.get("load_in_8bit") else None,
                   quant_type=str(qc.get("bnb_4bit_quant_type") or "fp4"),
                   double_quant=bool(qc.get("bnb_4bit_use_double_quant")))
    elif method == "compressed-tensors":
        out.update(format=qc.get("format"), config_groups=qc.get("config_groups") or {})
    return out


def _hf_name(name: str) -> str:
    """A spec tensor name in HF module form, for matching `modules_to_not_convert` patterns:
    'layers.3.q_proj' -> 'model.layers.3.self_attn.q_proj', 'layers.3.down_proj' -> '…mlp.down_proj'."""
    m = re.match(r"^layers\.(\d+)\.(.+)$", name)
    if not m:
        return name if name == "lm_head" else f"model.{name}"
    rest = m.group(2)
    group = "self_attn" if rest.split(".")[0] in _ATTN else "mlp"
    return f"model.layers.{m.group(1)}.{group}.{rest}"


def _excluded(name: str, patterns: list[str]) -> bool:
    full = _hf_name(name)
    for p in patterns:
        if p.startswith("re:"):
            try:
                if re.search(p[3:], full):
                    return True
            except re.error:
                raise ModelError(f"quantization_config ignore pattern {p!r} is not a valid regex") from None
        elif full == p or full.startswith(p + ".") or fnmatch(full, p) or fnmatch(full, p + ".*") \
                or full.endswith("." + p):
            return True
    return False


def _strategy_elems(args: Mapping[str, Any], out: int, inp: int) -> int:
    strategy = args.get("strategy") or "tensor"
    if strategy == "tensor":
        return 1
    if strategy == "channel":
        return out
    if strategy == "group":
        g = args.get("group_size")
        if not isinstance(g, int) or g <= 0:
            raise ModelError("compressed-tensors group strategy needs a positive group_size")
        return out * ceil(inp / g)
    if strategy == "block":
        b = args.get("block_structure")
        if not (isinstance(b, list) and len(b) == 2 and all(isinstance(x, int) and x > 0 for x in b)):
            raise ModelError("compressed-tensors block strategy needs block_structure [rows, cols]")
        return ceil(out / b[0]) * ceil(inp / b[1])
    raise ModelError(f"compressed-tensors weight strategy {strategy!r} is not supported")


def _linear_bytes(s: Mapping[str, Any], out: int, inp: int, dtype: str) -> dict[str, int]:
    """Stored bytes of one quantized Linear [out, inp] under scheme `s`, by dtype."""
    method, n = s["method"], out * inp
    if method == "gptq":
        bits, g = s["bits"], s["group_size"]
        if s["format"] not in ("gptq", "gptq_v2") or bits not in (2, 3, 4, 8):
            raise ModelError(f"GPTQ {s['format']} with {bits} bits has no known layout; give the safetensors files")
        groups = ceil(inp / g) if g and g > 0 else 1
        if inp * bits % 32 or out * bits % 32:
            raise ModelError(f"GPTQ cannot pack a [{out}, {inp}] Linear into int32 at {bits} bits")
        return {"int32": inp * bits // 8 * out + groups * out * bits // 8 + inp * 4, "float16": groups * out * 2}
    if method == "awq":
        bits, g = s["bits"], s["group_size"]
        if s["version"] not in ("gemm", "exllama", "ipex") or bits != 4 or g <= 0 or inp % g or out * bits % 32:
            raise ModelError(f"AWQ {s['version']} at {bits} bits, group {g}, on [{out}, {inp}] has no known layout")
        return {"int32": inp * out * bits // 8 + inp // g * out * bits // 8, "float16": inp // g * out * 2}
    if method == "fp8":
        block = s["weight_block_size"]
        if block:
            if len(block) != 2 or not all(isinstance(b, int) and b > 0 for b in block):
                raise ModelError(f"fp8 weight_block_size must be two positive integers, got {block!r}")
            return {"float8_e4m3fn": n, "float32": ceil(out / block[0]) * ceil(inp / block[1]) * 4}
        return {"float8_e4m3fn": n, "float32": 4 + (4 if s["activation_scheme"] == "static" else 0)}
    if method == "fbgemm_fp8":
        return {"float8_e4m3fn": n, "float32": out * 4}
    if method == "bitsandbytes":
        if s["bits"] == 8:
            return {"int8": n, "float32": out * 4}
        if s["bits"] != 4:
            raise ModelError("bitsandbytes config sets neither load_in_4bit nor load_in_8bit")
        blocks = ceil(n / 64)
        if s["double_quant"]:
            return {"uint8": (n + 1) // 2 + blocks, "float32": ceil(blocks / 256) * 4 + 256 * 4 + 16 * 4}
        return {"uint8": (n + 1) // 2, "float32": blocks * 4 + 16 * 4}
    if method == "compressed-tensors":
        return _compressed(s, out, inp, dtype)
    raise ModelError(f"quant_method {method!r} has no byte rule; supported: {', '.join(METHODS)}; give the safetensors files")


def _compressed(s: Mapping[str, Any], out: int, inp: int, dtype: str) -> dict[str, int]:
    groups = [g for g in s["config_groups"].values() if isinstance(g, dict)] if isinstance(s["config_groups"], dict) else []
    if len(groups) != 1 or groups[0].get("targets") != ["Linear"] or not isinstance(groups[0].get("weights"), dict):
        raise ModelError("compressed-tensors: only one config group targeting ['Linear'] can be priced without the safetensors files")
    w, fmt = groups[0]["weights"], s["format"]
    bits, sym = w.get("num_bits"), w.get("symmetric", True) is not False
    acts = groups[0].get("input_activations")
    static_in = isinstance(acts, dict) and acts.get("dynamic") is False
    scales = _strategy_elems(w, out, inp)
    scale_b = _BYTES[dtype]
    if fmt == "nvfp4-pack-quantized":
        if inp % 16:
            raise ModelError(f"nvfp4 needs in_features divisible by 16, got {inp}")
        return {"uint8": out * inp // 2, "float8_e4m3fn": out * inp // 16,
                "float32": 4 + (4 if isinstance(acts, dict) else 0)}
    res: dict[str, int] = {}
    if fmt == "pack-quantized" and w.get("type", "int") == "int" and bits in (2, 4, 8):
        res["int32"] = out * ceil(inp * bits / 32) * 4
        res["int64"] = 2 * 8                              # weight_shape
        if not sym:
            res["int32"] += ceil(out * bits / 32) * 4 * max(1, scales // out)
        if w.get("actorder") == "group":
            res["int32"] += inp * 4                       # g_idx
    elif fmt in ("int-quantized", "naive-quantized") and w.get("type", "int") == "int" and bits == 8:
        res["int8"] = out * inp + (0 if sym else scales)
    elif fmt == "float-quantized" and w.get("type") == "float" and bits == 8:
        res["float8_e4m3fn"] = out * inp
    else:
        raise ModelError(f"compressed-tensors format {fmt!r} with {w.get('type')} {bits}-bit weights is not supported")
    res[dtype] = scales * scale_b + (scale_b if static_in else 0)
    return res


def _quantized(t: Tensor, s: Mapping[str, Any]) -> bool:
    if t.part not in _QUANT_PARTS or _excluded(t.name, s.get("not_converted", [])):
        return False
    if s["method"] == "mxfp4":
        return t.role == LINEAR and len(t.shape) == 3
    if t.role == LM_HEAD:
        return bool(s.get("lm_head"))
    return t.role == LINEAR and len(t.shape) in (2, 3)


def rule_bytes(spec: ModelSpec, s: Mapping[str, Any]) -> dict[str, int]:
    """Bytes by dtype a checkpoint of scheme `s` stores for `spec`'s tensors (no files needed)."""
    if s["method"] not in METHODS:
        raise ModelError(f"quant_method {s['method']!r} is not supported; supported: {', '.join(METHODS)}")
    out: dict[str, int] = {}

    def add(dtype: str, nbytes: int) -> None:
        out[dtype] = out.get(dtype, 0) + nbytes

    for t in spec.tensors:
        dtype = t.dtype or spec.dtype
        if not _quantized(t, s):
            if dtype not in _BYTES:
                raise ModelError(f"tensor {t.name} has dtype {dtype!r}, which no rule prices")
            add(dtype, t.numel * _BYTES[dtype])
        elif s["method"] == "mxfp4":
            if t.shape[-1] % 32:
                raise ModelError(f"MXFP4 needs in_features divisible by 32, {t.name} has {t.shape[-1]}")
            add("uint8", t.numel // 2 + t.numel // 32)
        else:
            copies = prod(t.shape[:-2])
            for k, v in _linear_bytes(s, t.shape[-2], t.shape[-1], spec.dtype).items():
                add(k, v * copies)
    return dict(sorted(out.items()))
