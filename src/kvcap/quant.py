"""MLC-LLM weight quantization schemes priced per tensor, the way MLC stores them.

Each scheme says, for every parameter tensor of a ModelSpec, which storage tensors MLC's
quantizer turns it into (`q_weight` uint32 + `q_scale` f16 for group quantization, …) and how
many bytes those take on one tensor-parallel shard. This is what MLC's `_metadata()` lists as
`params` and what `cpp/serve/config.cc:InferForKVCache` sums: Σ ceil(bits·lanes/8)·prod(shape).

Sources (mlc-ai/mlc-llm @ 79d603f0):
  python/mlc_llm/quantization/quantization.py        the registry (names, group sizes, dtypes)
  python/mlc_llm/quantization/group_quantization.py  GroupQuantize{Linear,Embedding,MixtralExperts}
  python/mlc_llm/quantization/awq_quantization.py    AWQQuantizeLinear
  python/mlc_llm/quantization/ft_quantization.py     FTQuantizeLinear (+ group fallback)
  python/mlc_llm/quantization/per_tensor_quantization.py  PerTensorQuantizeLinear
  python/mlc_llm/quantization/utils.py               is_final_fc, is_moe_gate
  python/mlc_llm/model/vision/clip_vision.py         CLIPVisionModel.no_quantization = True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .errors import OptionsError
from .model.spec import COL, EMBED, LINEAR, LM_HEAD, REP, ROUTER, ROW, ModelSpec, Tensor

DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
NO_QUANT, GROUP, AWQ, FT, PER_TENSOR = "no-quant", "group-quant", "awq", "ft-quant", "per-tensor-quant"

# Module parts MLC marks `no_quantization` (CLIPVisionModel). Only the group and block-scale
# quantizers honour the flag (group_quantization.py:_Mutator.visit_module); AWQ, FT and
# per-tensor quantize the tower's linears anyway.
NO_QUANT_PARTS = frozenset({"vision"})
# MLC fuses these HF projections into one nn.Linear (qkv_proj, gate_up_proj) in its text
# models; the CLIP tower keeps q/k/v separate. Fusing concatenates output rows, so it changes
# bytes only where a scheme stores something per Linear (per-tensor scales, FT's out % 8 rule).
_FUSED = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj",
          "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj"}


@dataclass(frozen=True)
class Scheme:
    """One entry of MLC's QUANTIZATION registry."""

    name: str
    kind: str
    model_dtype: str                   # dtype of everything left unquantized, and of the KV cache
    group_size: int = 0
    quantize_bits: int = 0             # int3 / int4 / fp8 element width
    storage_bits: int = 32             # uint32 (group, awq), int8 (ft), fp8 (per-tensor)
    layout: str = "NK"                 # group-quant weight layout; KN refuses tensor parallelism
    quantize_embedding: bool = True
    quantize_final_fc: bool = True
    use_scale: bool = True             # per-tensor: one f32 scale per Linear
    calibration_scale: bool = False    # per-tensor "inference" calibration: a second f32 scalar

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.model_dtype]

    @property
    def kv_dtype(self) -> str:
        """MLC's KV cache holds the model dtype (paged_kv_cache.cc: dtype of the model)."""
        return self.model_dtype

    @property
    def elems_per_storage(self) -> int:
        return self.storage_bits // self.quantize_bits if self.quantize_bits else 1

    @property
    def storage_per_group(self) -> int:
        return self.group_size // self.elems_per_storage if self.group_size else 0

    def describe(self) -> str:
        if self.kind == NO_QUANT:
            return f"{self.name}: unquantized {self.model_dtype}"
        if self.kind == GROUP:
            return (f"{self.name}: int{self.quantize_bits} in uint32, {self.elems_per_storage} per word, "
                    f"groups of {self.group_size} along the input dim with one {self.model_dtype} scale")
        if self.kind == AWQ:
            return f"{self.name}: AWQ int4, groups of {self.group_size} with int4 zeros and {self.model_dtype} scales"
        if self.kind == FT:
            return f"{self.name}: FasterTransformer int4 in int8, one {self.model_dtype} scale per output channel"
        return f"{self.name}: fp8 per tensor" + (" with f32 scale(s)" if self.use_scale else "")

    # ---- pricing -------------------------------------------------------------------------
    def tensor_bytes(self, t: Tensor, tp: int = 1) -> int:
        """Bytes MLC stores for `t` on one of `tp` tensor-parallel shards."""
        return self._price(t, shard_shape(t, tp), tp, None)

    def _price(self, t: Tensor, shape: tuple[int, ...], tp: int, fused_out: int | None) -> int:
        kind = mlc_module(t, shape)
        if kind == "param" or self.kind == NO_QUANT:
            return _numel(shape) * self.dtype_bytes
        if self.kind == GROUP and t.part in NO_QUANT_PARTS:
            return _numel(shape) * self.dtype_bytes
        if self.kind == GROUP:
            return self._group(kind, shape, tp)
        if self.kind == AWQ:
            return self._awq(kind, shape)
        if self.kind == FT:
            return self._ft(kind, shape, fused_out)
        return self._per_tensor(kind, shape)

    def _group(self, kind: str, shape: tuple[int, ...], tp: int) -> int:
        # GroupQuantize._Mutator.visit_module: Linear (final fc only if quantize_final_fc, never a
        # MoE gate), Embedding (if quantize_embedding), MixtralExperts.
        if kind == "moe_gate" or (kind == "final_fc" and not self.quantize_final_fc) \
                or (kind == "embedding" and not self.quantize_embedding):
            return _numel(shape) * self.dtype_bytes
        *lead, out, k = shape
        if kind in ("linear", "final_fc") and tp > 1 and (k * tp // self.group_size) % tp:
            # GroupQuantizeLinear.__init__: the groups of a sharded input dim must split evenly.
            raise OptionsError(
                f"{self.name} with tensor_parallel_shards={tp}: an input dimension of {k * tp} has "
                f"{k * tp // self.group_size} groups of {self.group_size}, which do not split over {tp} "
                f"GPUs; use fewer shards or a scheme with a smaller group size")
        groups = -(-k // self.group_size)  # tirx.ceildiv: a partial last group is padded
        rows = _numel(lead) * out
        return rows * groups * (self.storage_per_group * self.storage_bits // 8 + self.dtype_bytes)

    def _awq(self, kind: str, shape: tuple[int, ...]) -> int:
        # AWQQuantize: only nn.Linear that is neither the final fc nor a MoE gate; embeddings
        # and MixtralExperts stay in the model dtype.
        if kind != "linear" or len(shape) != 2:
            return _numel(shape) * self.dtype_bytes
        out, k = shape
        per = self.elems_per_storage
        # AWQQuantizeLinear: qweight (in, out//8) u32, qzeros (in//gs, out//8) u32, scales (in//gs, out).
        return (k * (out // per) * 4 + (k // self.group_size) * (out // per) * 4
                + (k // self.group_size) * out * self.dtype_bytes)

    def _ft(self, kind: str, shape: tuple[int, ...], fused_out: int | None) -> int:
        fallback = GROUP_Q4_FALLBACK
        if kind == "embedding":
            return fallback._group(kind, shape, 1)
        if kind == "final_fc" or (kind == "linear" and len(shape) == 2 and (fused_out or shape[0]) % 8):
            # FTQuantize: the final fc and CUTLASS-incompatible widths fall back to q4 groups of 32.
            return fallback._group("linear", shape, 1)
        if kind != "linear" or len(shape) != 2:
            return _numel(shape) * self.dtype_bytes  # MoE gates and MixtralExperts are left as is
        out, k = shape
        # FTQuantizeLinear: q_weight (in, ceil(out/2)) int8, q_scale (1, out) per channel.
        return k * -(-out // self.elems_per_storage) + out * self.dtype_bytes

    def _per_tensor(self, kind: str, shape: tuple[int, ...]) -> int:
        quantize = (kind == "linear" or kind == "experts" or (kind == "final_fc" and self.quantize_final_fc)
                    or (kind == "embedding" and self.quantize_embedding))
        if not quantize:
            return _numel(shape) * self.dtype_bytes
        *lead, out, k = shape
        per = self.elems_per_storage
        # PerTensorQuantizeLinear: q_weight (out, ceil(in/per)) fp8, q_scale (1,) f32, and with
        # calibration_mode "inference" a q_calibration_scale (1,) f32.
        scalars = (4 * (2 if self.calibration_scale else 1)) if self.use_scale else 0
        return _numel(lead) * out * -(-k // per) * self.storage_bits // 8 + scalars


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def mlc_module(t: Tensor, shape: tuple[int, ...] | None = None) -> str:
    """What MLC module holds the tensor: linear, experts, final_fc, embedding, moe_gate, param."""
    shape = t.shape if shape is None else shape
    if t.role == LINEAR:
        return "experts" if len(shape) == 3 else ("linear" if len(shape) == 2 else "param")
    if t.role == LM_HEAD:
        return "final_fc"          # utils.is_final_fc: head, lm_head, lm_head.linear, embed_out
    if t.role == EMBED or (t.part == "vision" and t.name.endswith("position_embedding")):
        return "embedding"         # the CLIP position table is an nn.Embedding too
    if t.role == ROUTER:
        # utils.is_moe_gate: a gate Linear with at most 256 outputs stays unquantized. A 1-D
        # router tensor (DeepSeek-V3's e_score_correction_bias) is a plain parameter, no Linear.
        if len(shape) < 2:
            return "param"
        return "moe_gate" if shape[-2] <= 256 else "linear"
    return "param"


def shard_shape(t: Tensor, tp: int) -> tuple[int, ...]:
    """The tensor's shape on one shard: MLC builds its model with heads and intermediate sizes
    already divided by tensor_parallel_shards; embeddings, norms and lm_head are replicated."""
    if tp == 1 or t.shard == REP:
        return t.shape
    axis = -1 if t.shard == ROW else (-2 if len(t.shape) >= 2 else -1)
    if t.shard not in (ROW, COL):
        raise OptionsError(f"tensor {t.name!r} has an unknown shard kind {t.shard!r}")
    dim = t.shape[axis]
    if dim % tp:
        raise OptionsError(
            f"tensor_parallel_shards={tp} does not divide {t.name} (dimension {dim}); MLC needs an even split")
    shape = list(t.shape)
    shape[axis] = dim // tp
    return tuple(shape)


def param_bytes(model: ModelSpec, scheme: Scheme, tp: int = 1) -> int:
    """Σ bytes of every stored tensor on one shard (tied embeddings are listed, and so stored, once)."""
    if tp > 1 and scheme.kind == GROUP and scheme.layout == "KN":
        raise OptionsError(f"{scheme.name} (KN layout) does not support tensor parallelism "
                           f"(interface/compile.py:_compile); use {scheme.name[:-1]}1")
    if tp > 1 and scheme.kind == FT:
        raise OptionsError(f"{scheme.name} does not support tensor parallelism (interface/compile.py:_compile)")
    if scheme.kind in (FT, PER_TENSOR):
        return _bytes_with_fusion(model.tensors, scheme, tp)
    return _bytes_by_class(model.tensors, scheme, tp)


def _bytes_by_class(tensors: tuple[Tensor, ...], scheme: Scheme, tp: int) -> int:
    # Tensors of one shape, role, shard and part price the same: price each class once.
    counts: dict[tuple, int] = {}
    first: dict[tuple, Tensor] = {}
    for t in tensors:
        key = (t.shape, t.role, t.shard, t.part, t.part == "vision" and t.name.endswith("position_embedding"))
        if key in counts:
            counts[key] += 1
        else:
            counts[key] = 1
            first[key] = t
    return sum(scheme.tensor_bytes(first[k], tp) * n for k, n in counts.items())


def _bytes_with_fusion(tensors: tuple[Tensor, ...], scheme: Scheme, tp: int) -> int:
    # Per-Linear storage (per-tensor scales, FT's width rule) follows MLC's fused Linears.
    groups: dict[str, list[Tensor]] = {}
    total = 0
    for t in tensors:
        prefix, _, leaf = t.name.rpartition(".")
        fused = _FUSED.get(leaf) if t.part == "text" and t.role == LINEAR else None
        if fused is None:
            total += scheme._price(t, shard_shape(t, tp), tp, None)
        else:
            groups.setdefault(f"{prefix}.{fused}", []).append(t)
    for members in groups.values():
        shapes = [shard_shape(t, tp) for t in members]
        out = sum(s[-2] for s in shapes)
        if all(s[-1] == shapes[0][-1] for s in shapes) and all(len(s) == 2 for s in shapes):
            fused_shape = (out, shapes[0][-1])
            total += scheme._price(members[0], fused_shape, tp, out)
        else:
            total += sum(scheme._price(t, s, tp, None) for t, s in zip(members, shapes))
    return total


def _group(name: str, bits: int, gs: int, dtype: str, layout: str, embed: bool = True, final: bool = True) -> Scheme:
    return Scheme(name, GROUP, dtype, group_size=gs, quantize_bits=bits, storage_bits=32, layout=layout,
                  quantize_embedding=embed, quantize_final_fc=final)


# ft_quantization.py:FTQuantize.fallback_group_quantize: int4, groups of 32, uint32, NK.
GROUP_Q4_FALLBACK = _group("q4f16_ft(fallback)", 4, 32, "float16", "NK")

# python/mlc_llm/quantization/quantization.py:QUANTIZATION
SCHEMES: dict[str, Scheme] = {s.name: s for s in (
    Scheme("q0f16", NO_QUANT, "float16"),
    Scheme("q0bf16", NO_QUANT, "bfloat16"),
    Scheme("q0f32", NO_QUANT, "float32"),
    _group("q3f16_0", 3, 40, "float16", "KN"),
    _group("q3f16_1", 3, 40, "float16", "NK"),
    _group("q4f16_0", 4, 32, "float16", "KN"),
    _group("q4f16_1", 4, 32, "float16", "NK"),
    _group("q4bf16_0", 4, 32, "bfloat16", "KN"),
    _group("q4bf16_1", 4, 32, "bfloat16", "NK"),
    _group("q4f32_1", 4, 32, "float32", "NK"),
    _group("q4f16_2", 4, 32, "float16", "NK", embed=False, final=False),
    Scheme("q4f16_autoawq", AWQ, "float16", group_size=128, quantize_bits=4, storage_bits=32,
           quantize_embedding=False, quantize_final_fc=False),
    Scheme("q4f16_ft", FT, "float16", quantize_bits=4, storage_bits=8, quantize_embedding=True,
           quantize_final_fc=True),
    Scheme("e5m2_e5m2_f16", PER_TENSOR, "float16", quantize_bits=8, storage_bits=8,
           quantize_embedding=False, quantize_final_fc=False, use_scale=False),
    Scheme("e4m3_e4m3_f16", PER_TENSOR, "float16", quantize_bits=8, storage_bits=8,
           quantize_embedding=False, quantize_final_fc=False, use_scale=True, calibration_scale=True),
    Scheme("e4m3_e4m3_f16_max_calibrate", PER_TENSOR, "float16", quantize_bits=8, storage_bits=8,
           quantize_embedding=False, quantize_final_fc=False, use_scale=True),
)}
ALIASES = {"q4f16_awq": "q4f16_autoawq", "awq": "q4f16_autoawq"}


def scheme(name: str) -> Scheme:
    """A scheme by MLC's name; an unknown name is an OptionsError listing them all."""
    if not isinstance(name, str):
        raise OptionsError(f"quantization must be a name such as q4f16_1, got {name!r}")
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in SCHEMES:
        raise OptionsError(f"unknown quantization {name!r}; supported: {', '.join(names())}")
    return SCHEMES[key]


def names() -> list[str]:
    return list(SCHEMES) + list(ALIASES)


def unquantized_for(dtype: str) -> Scheme:
    """The no-quant scheme that keeps a checkpoint's own dtype (q0f16 / q0bf16 / q0f32)."""
    return SCHEMES[{"float16": "q0f16", "bfloat16": "q0bf16", "float32": "q0f32"}[dtype]]
