"""The weight arrays mlx-lm loads, priced the way MLX stores them.

mlx-lm keeps one array per parameter (MoE experts stacked as [experts, out, in], as the ModelSpec
lists them) and loads only the language model: vision towers and multi-token-prediction blocks
are dropped by the models' `sanitize`. A quantized checkpoint (`"quantization": {"group_size",
"bits"}` in config.json, as `mlx_lm.convert -q` writes it) replaces every Linear / Embedding
weight whose last dimension divides by the group size (mlx/nn/layers/quantized.py `quantize`,
the default class predicate) with a uint32 array packing 32 / bits values per word plus, per
group, a scale and (mode "affine") a bias in the model dtype (mlx `quantize`). Modes mxfp4 /
mxfp8 keep one uint8 scale per 32 values and no bias.

Every allocation above one page is rounded up to a 16 KiB page (mlx/backend/metal/allocator.cpp
`MetalAllocator::malloc`, vm_page_size on Apple silicon).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ModelError, OptionsError
from ..model.spec import EMBED, LINEAR, LM_HEAD, ROUTER, ModelSpec

PAGE = 16384
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
SKIPPED_PARTS = ("vision", "audio", "projector", "mtp")
MODES = {"affine": (True, None), "mxfp4": (False, (4, 32)), "mxfp8": (False, (8, 32))}


def page_round(nbytes: int) -> int:
    return -(-nbytes // PAGE) * PAGE if nbytes > PAGE else nbytes


@dataclass(frozen=True)
class Quant:
    bits: int
    group_size: int
    mode: str = "affine"
    source: str = ""


@dataclass(frozen=True)
class WeightArrays:
    total: int               # bytes, each array page-rounded
    largest: int             # the largest single array, bytes
    largest_name: str
    quant: Quant | None
    skipped: int             # parameters of parts mlx-lm does not load
    estimate: bool = False
    note: str = ""


def checkpoint_quant(model: ModelSpec, q_bits: Any, q_group_size: Any) -> tuple[Quant | None, str]:
    """The MLX quantization of the weights: the checkpoint's, or the one `mlx_lm.convert -q` would make."""
    cfg = model.config or {}
    mlx_q = cfg.get("quantization") or (cfg.get("text_config") or {}).get("quantization")
    hf_q = cfg.get("quantization_config") or (model.quantization or {}).get("method")
    if hf_q and not mlx_q:
        method = hf_q.get("quant_method") if isinstance(hf_q, dict) else hf_q
        if method != "mlx":
            raise ModelError(f"mlx: mlx-lm loads MLX-format checkpoints; this one is quantized with {method!r} "
                             "(convert the original weights with mlx_lm.convert -q)")
    if mlx_q:
        if q_bits is not None or q_group_size is not None:
            raise OptionsError("mlx: the checkpoint is already quantized; q_bits / q_group_size apply to mlx_lm.convert of "
                               "an unquantized model")
        if not isinstance(mlx_q, dict):
            raise ModelError(f"mlx: config field 'quantization' must be an object, got {mlx_q!r}")
        mode = str(mlx_q.get("mode", "affine"))
        overrides = [k for k, v in mlx_q.items() if k not in ("bits", "group_size", "mode")]
        q = _quant(mlx_q.get("bits"), mlx_q.get("group_size"), mode, "config.json quantization")
        return q, f"{len(overrides)} per-module overrides priced at the default" if overrides else ""
    if q_bits is None and q_group_size is None:
        return None, ""
    return _quant(4 if q_bits is None else q_bits, 64 if q_group_size is None else q_group_size, "affine",
                  "mlx_lm.convert -q --q-bits / --q-group-size"), ""


def _quant(bits: Any, group: Any, mode: str, source: str) -> Quant:
    if mode not in MODES:
        raise ModelError(f"mlx: quantization mode {mode!r} is not modelled; supported: {', '.join(MODES)}")
    fixed = MODES[mode][1]
    if fixed:
        bits, group = fixed
    if bits not in (2, 3, 4, 5, 6, 8) or group not in (32, 64, 128):
        raise OptionsError(f"mlx: quantization needs bits in 2, 3, 4, 5, 6, 8 and group size 32, 64 or 128; "
                           f"got bits={bits!r}, group_size={group!r}")
    return Quant(bits, group, mode, source)


def weight_arrays(model: ModelSpec, quant: Quant | None, note: str = "") -> WeightArrays:
    if model.dtype not in DTYPE_BYTES:
        raise ModelError(f"mlx: dtype {model.dtype!r} is not priced; supported: {', '.join(DTYPE_BYTES)}")
    dtype_bytes = DTYPE_BYTES[model.dtype]
    total = largest = skipped = 0
    largest_name = ""
    for t in model.tensors:
        if t.part in SKIPPED_PARTS:
            skipped += t.numel
            continue
        arrays = _arrays(t.numel, t.shape, t.role, quant, dtype_bytes)
        total += sum(page_round(a) for a in arrays)
        if max(arrays) > largest:
            largest, largest_name = max(arrays), t.name
    return WeightArrays(total, largest, largest_name, quant, skipped, estimate=bool(note), note=note)


def _arrays(numel: int, shape: tuple[int, ...], role: str, quant: Quant | None, dtype_bytes: int) -> tuple[int, ...]:
    quantizable = role in (LINEAR, EMBED, LM_HEAD, ROUTER) and len(shape) >= 2
    if quant is None or not quantizable or shape[-1] % quant.group_size:
        return (numel * dtype_bytes,)
    groups = numel // quant.group_size
    packed = numel * quant.bits // 32 * 4
    if MODES[quant.mode][0]:
        return packed, groups * dtype_bytes, groups * dtype_bytes
    return packed, groups  # uint8 e8m0 scales, no bias
