"""What vLLM holds on a GPU besides the KV cache: weights, and the profiled non-KV memory.

Weights are priced tensor by tensor from the ModelSpec as one rank loads them. The activation
peak, non-torch memory and CUDA-graph memory are what vLLM measures in its profile run
(v1/worker/gpu_worker.py: determine_available_memory); offline they are estimated. The model of
the estimate and its fit on the validation logs are in docs/vllm-estimate.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import OptionsError
from ..model.spec import COL, EMBED, LINEAR, LM_HEAD, NORM, ROUTER, ROW, ModelSpec, Tensor
from .vllm_layers import DTYPE_BYTES
from .vllm_pages import cdiv

GiB = 1 << 30

# Stored dtypes as safetensors/GGUF readers name them (tensor.dtype when read from files).
STORED_BYTES = {**DTYPE_BYTES, "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
                "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}

QUANTIZATIONS = ("fp8", "mxfp4", "awq", "awq_marlin", "gptq", "gptq_marlin")

# ---- the estimate's constants (fitted in docs/vllm-estimate.md; keep both in step) --------
# Bytes a logit element costs in the profile run's dummy sampler, by top-k/top-p implementation.
# 'sort' was measured on an H100 with PyTorch 2.11: bf16 logits, their fp32 copy, sort values,
# int64 indices, the sort's scratch, softmax/cumsum/masks/scatter and the probabilities come to
# 38.02 B and reproduce the 0.10/0.11 H100 logs' activation peaks to 0.05 GiB. 'triton' is fitted
# on the two 0.19 A100 logs (17.7 and 21.2 B; the safe end); 'flashinfer' on the four 0.10.1.1
# A100 logs that ran FlashInfer's sampler (10 B).
SAMPLER_BYTES_PER_LOGIT = {"sort": 38.02, "triton": 21.0, "flashinfer": 10.0}
ACTIVATION_EXTRA = 48 << 20          # other profile-run buffers: the mean residual of 4 H100 logs
NON_TORCH_V1 = 138 << 20             # one GPU, V1: the llm-d logs' 'non-torch memory' (0.13-0.14 GiB)
NON_TORCH_V0 = 424 << 20             # V0 logs show 0.35 and 1.79 GiB; the minimax fit of both
# With several GPUs, NCCL and custom all-reduce buffers: base + per extra GPU, fitted on a TP=2
# 0.11 log (1.45 GiB in all) and a TP=4 0.9 log (2.49 GiB in all).
NON_TORCH_MULTI_BASE = 820 << 20
NON_TORCH_PER_PEER = 532 << 20
CUDAGRAPH_ESTIMATE = 512 << 20       # profile_cudagraph_memory (0.20+): graph logs show 0.1-1.0 GiB


@dataclass(frozen=True)
class Placement:
    """Which part of the model one rank holds."""

    tp: int
    layers: range
    first: bool
    last: bool
    pp: int


_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def _stage_holds(t: Tensor, where: Placement, tied: bool) -> bool:
    m = _LAYER.search(t.name)
    if m and t.part in ("text", "mtp"):
        return int(m.group(1)) in where.layers
    if t.role == EMBED:
        # With PP and tied embeddings the last stage builds its own lm_head from them.
        return where.first or (tied and where.last and where.pp > 1)
    if t.role == LM_HEAD or (t.role == NORM and t.part == "text"):
        return where.last
    return where.first


def quant_method(model: ModelSpec, options: Mapping[str, Any]) -> str | None:
    """vLLM's --quantization, else the checkpoint's quant_method (None: unquantized)."""
    q = options.get("quantization")
    if q in (None, "", "none", "None"):
        q = _quant_config(model).get("method") or _quant_config(model).get("quant_method")
    if q is None:
        return None
    q = str(q).lower()
    if q not in QUANTIZATIONS and not model.stored_bytes:
        raise OptionsError(f"quantization {q!r} is not priced by kvcap's vLLM policy; supported: {', '.join(QUANTIZATIONS)}"
                           f" (or a checkpoint folder whose stored bytes kvcap can read)")
    return q


def _quant_config(model: ModelSpec) -> Mapping[str, Any]:
    """The normalised scheme the model readers attach, else the config's quantization_config."""
    if model.quantization:
        return model.quantization
    cfg = model.config
    text = cfg.get("text_config")
    qc = cfg.get("quantization_config") or (text.get("quantization_config") if isinstance(text, Mapping) else None)
    return qc if isinstance(qc, Mapping) else {}


def tensor_bytes(t: Tensor, numel: int, dtype_bytes: int, quant: str | None, qcfg: Mapping[str, Any],
                 mxfp4_layout: str = "marlin") -> int:
    """Bytes one rank holds for `numel` elements of tensor `t`."""
    if t.dtype and not quant:
        if t.dtype not in STORED_BYTES:
            raise OptionsError(f"tensor {t.name}: stored dtype {t.dtype!r} is not known")
        return numel * STORED_BYTES[t.dtype]
    quantized = t.role == LINEAR and t.part == "text"
    if quant == "fp8" and quantized:
        # fp8.py: Fp8LinearMethod / Fp8MoEMethod — one byte a weight, fp32 scales per
        # weight_block_size block (per tensor when not block-quantized).
        block = qcfg.get("weight_block_size") or None
        scales = cdiv(numel, block[0] * block[1]) * 4 if block else 4
        return numel + scales
    if quant == "mxfp4" and quantized and len(t.shape) == 3:
        # mxfp4.py: Mxfp4MoEMethod — experts only; 4-bit values + one e8m0 scale per 32, in the
        # padded layout of the MoE backend (see mxfp4_layout).
        padded = int(numel * _mxfp4_pad(t.shape, mxfp4_layout))
        return padded // 2 + padded // 32
    if quant in ("awq", "awq_marlin", "gptq", "gptq_marlin") and quantized:
        bits = int(qcfg.get("bits", qcfg.get("w_bit", 4)))
        group = int(qcfg.get("group_size", qcfg.get("q_group_size", 128)))
        groups = cdiv(numel, group if group > 0 else t.shape[-1])
        # Packed int weights, an fp16 scale and a packed zero point per group.
        return numel * bits // 8 + groups * 2 + cdiv(groups * bits, 8)
    return numel * dtype_bytes


# Padding (hidden, intermediate) of the mxfp4 MoE backends (Mxfp4MoEMethod.create_weights):
# Marlin (before Hopper, or vLLM < 0.11 whose torch lacked the Triton kernels' needs) pads
# I to 128 and H to 256; the Triton kernels on Hopper swizzle H to 256 (fitted: the 0.11 H100
# logs of gpt-oss-20b and -120b load 1.066x the unpadded experts, 3072/2880); the Blackwell
# FlashInfer backends pad both to 256.
MXFP4_PAD = {"marlin": (256, 128), "triton": (256, 1), "flashinfer": (256, 256)}


def mxfp4_layout(arch: str, v: tuple[int, int, int]) -> str:
    """mxfp4.py: get_mxfp4_backend, by GPU generation and release."""
    if arch == "blackwell":
        return "flashinfer"
    if arch == "hopper" and v >= (0, 11, 0):
        return "triton"
    return "marlin"


def _mxfp4_pad(shape: tuple[int, ...], layout: str) -> float:
    """Growth of one [experts, out, in] matrix: gate_up is (2I, H), down is (H, I)."""
    _, out, inp = shape
    hidden, inter = (inp, out // 2) if out > inp else (out, inp)
    h_to, i_to = MXFP4_PAD[layout]
    return (cdiv(hidden, h_to) * h_to * cdiv(inter, i_to) * i_to) / (hidden * inter)


def weights_bytes(model: ModelSpec, where: Placement, dtype_bytes: int, quant: str | None,
                  mxfp4: str = "marlin") -> int:
    """model_memory_usage ('Model loading took X GiB') of one rank."""
    qcfg = _quant_config(model)
    total = held = 0
    for t in model.tensors:
        if not _stage_holds(t, where, model.tie_word_embeddings):
            continue
        numel = t.numel
        if t.role in (EMBED, LM_HEAD) and t.part == "text":
            # VocabParallelEmbedding / ParallelLMHead: vocab padded to 64, rows split over TP.
            rows = cdiv(t.shape[0], 64) * 64
            numel = cdiv(rows, where.tp) * (numel // t.shape[0])
        elif t.shard in (COL, ROW) and t.role != ROUTER:
            numel = cdiv(numel, where.tp)
        held += numel
        if quant is None or quant in QUANTIZATIONS:
            total += tensor_bytes(t, numel, dtype_bytes, quant, qcfg, mxfp4)
    if quant is not None and quant not in QUANTIZATIONS:
        # A scheme kvcap has no vLLM layout for: the checkpoint's stored bytes, this rank's share.
        everything = sum(t.numel for t in model.tensors) or 1
        total = sum(model.stored_bytes.values()) * held // everything
    if where.first:
        # get_rope caches one cos/sin table of max_position x rotary_dim in the model dtype.
        total += (model.context_window or 0) * model.head_dim * dtype_bytes
    return total


@dataclass(frozen=True)
class ProfileInputs:
    """What shapes the profile run: the dummy batch and the model's widths on one rank."""

    tokens: int              # max_num_batched_tokens (V0 without chunked prefill: max(len, 2048))
    requests: int            # min(max_num_seqs, tokens): rows of logits the dummy sampler sees
    sampler: str             # 'sort' | 'triton' | 'flashinfer'
    tp: int
    world: int               # tp * pp
    v1: bool
    cudagraphs: bool         # CUDA-graph memory budgeted (0.20+ default, and not enforce_eager)


def activation_peak(model: ModelSpec, p: ProfileInputs, dtype_bytes: int, last_stage: bool) -> int:
    """torch peak increase during profile_run: the larger of the forward and the sampler."""
    inter = _mlp_width(model)
    hidden = model.hidden_size
    # Forward: the widest MLP (gate_up out + activation out) and a few hidden-size buffers.
    forward = p.tokens * dtype_bytes * (3 * cdiv(inter, p.tp) + 3 * hidden)
    sampler = 0
    if last_stage:
        # _dummy_sampler_run: logits for one token of each request (gathered to full vocab on
        # every TP rank), while the dummy run's hidden states are still alive.
        per_logit = SAMPLER_BYTES_PER_LOGIT[p.sampler]
        sampler = int(p.requests * model.vocab_size * per_logit) + p.tokens * hidden * dtype_bytes
    return max(forward, sampler) + ACTIVATION_EXTRA


def _mlp_width(model: ModelSpec) -> int:
    """Intermediate width one token passes through (MoE: experts_per_token x expert width)."""
    cfg = model.config.get("text_config") if isinstance(model.config.get("text_config"), Mapping) else model.config
    moe = cfg.get("moe_intermediate_size") if isinstance(cfg, Mapping) else None
    if model.num_experts and model.experts_per_token and isinstance(moe, int) and moe > 0:
        return model.experts_per_token * moe
    return model.intermediate_size


def non_torch(p: ProfileInputs) -> int:
    base = NON_TORCH_V1 if p.v1 else NON_TORCH_V0
    if p.world > 1:
        base += NON_TORCH_MULTI_BASE + NON_TORCH_PER_PEER * (p.world - 1)
    return base


def cudagraph_memory(p: ProfileInputs) -> int:
    return CUDAGRAPH_ESTIMATE if p.cudagraphs else 0


def error_bars(model: ModelSpec, p: ProfileInputs, before_0_14: bool) -> dict[str, int]:
    """How far each estimated term may be off (docs/vllm-estimate.md, 'Error bars')."""
    activation = 100 << 20
    if p.v1 and before_0_14:
        # Before 0.14 the V1 sampler used FlashInfer whenever it was installed (an optional
        # extra): the sort path costs this much more, and kvcap cannot tell which ran.
        activation += int(p.requests * model.vocab_size
                          * (SAMPLER_BYTES_PER_LOGIT["sort"] - SAMPLER_BYTES_PER_LOGIT["flashinfer"]))
    non_torch_bar = (100 << 20) if p.v1 else (750 << 20)
    if p.world > 1:
        non_torch_bar = 1300 << 20
    return {"activation": activation, "non_torch": non_torch_bar, "cudagraph": 512 << 20 if p.cudagraphs else 0}
