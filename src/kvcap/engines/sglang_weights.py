"""Weight bytes one SGLang tensor-parallel rank holds, for the checkpoints SGLang loads.

Unquantized checkpoints are exact: every parameter in the load dtype, split the way SGLang's
parallel layers split it (column / row parallel linears divide by tp; KV projections keep at
least one head per rank; `VocabParallelEmbedding` pads the vocabulary to a multiple of 64 then
divides it, layers/vocab_parallel_embedding.py `pad_vocab_size`, DEFAULT_VOCAB_PADDING_SIZE).
Quantized checkpoints use the bytes the checkpoint stores (safetensors headers, or the Models
rules for its `quantization_config`); on tp > 1 they are split by each rank's share of the
parameters, which is an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError
from ..model.spec import COL, EMBED, LM_HEAD, REP, ROW, ModelSpec, Tensor

VOCAB_PADDING = 64


@dataclass(frozen=True)
class WeightBytes:
    per_rank: int
    formula: str
    source: str
    estimate: bool = False
    note: str = ""


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def rank_numel(model: ModelSpec, t: Tensor, tp: int) -> int:
    """Elements of `t` one tp rank holds (0 for MTP blocks, which the target model does not load)."""
    if t.part == "mtp":
        return 0
    if t.role in (EMBED, LM_HEAD):
        vocab = _ceil_div(t.shape[0], VOCAB_PADDING) * VOCAB_PADDING
        return _ceil_div(vocab, tp) * (t.numel // t.shape[0])
    if tp == 1 or t.shard == REP:
        return t.numel
    axis = -2 if (t.shard == COL and len(t.shape) >= 2) else -1
    if t.shard == ROW and len(t.shape) < 2:
        return t.numel  # a row-parallel layer's bias is added once, after the all-reduce
    dim = t.shape[axis]
    kv_out = model.num_key_value_heads * model.head_dim
    if t.shard == COL and dim == kv_out and tp > model.num_key_value_heads and dim != model.num_attention_heads * model.head_dim:
        per = model.head_dim  # QKVParallelLinear replicates KV heads: one head per rank at least
    else:
        per = _ceil_div(dim, tp)
    return t.numel // dim * per


def weights_per_rank(model: ModelSpec, load_dtype_bytes: int, load_dtype: str, tp: int) -> WeightBytes:
    quant = dict(model.quantization or {})
    fmt = quant.get("format")
    if fmt in ("gguf", "mlc") or "gguf_file_type" in quant:
        raise ModelError(f"sglang: kvcap prices SGLang on HuggingFace checkpoints; this model is a {fmt or 'gguf'} file")
    method = quant.get("method")
    if method is None:
        cfg = model.config or {}
        qc = cfg.get("quantization_config") or (cfg.get("text_config") or {}).get("quantization_config")
        method = qc.get("quant_method") if isinstance(qc, dict) else None
    total = sum(rank_numel(model, t, tp) for t in model.tensors)
    if method is None:
        return WeightBytes(total * load_dtype_bytes,
                           f"{total:,} parameters on this rank × {load_dtype_bytes} B ({load_dtype})",
                           "model_loader: parameters created in the load dtype; parallel layers split by tp_size")
    stored = sum(model.stored_bytes.values()) if model.stored_bytes else None
    if stored is None:
        stored = _rule_bytes(model, quant)
    everything = sum(t.numel for t in model.tensors)
    share = total / everything if everything else 0.0
    per_rank = int(stored * share)
    exact = tp == 1 and all(t.part != "mtp" for t in model.tensors)
    return WeightBytes(per_rank, f"{stored:,} B stored ({method}) × this rank's share of the parameters {share:.4f}",
                       "checkpoint bytes as stored; SGLang's quantized linears keep the packed layout",
                       estimate=not exact,
                       note="" if exact else "a quantized checkpoint's bytes split by parameter share across ranks")


def _rule_bytes(model: ModelSpec, quant: dict) -> int:
    """The Models work's pricing of a quantized checkpoint from its config alone."""
    try:
        from ..model import quant_config
    except ImportError:  # pragma: no cover - shipped with the model readers
        raise ModelError("sglang: cannot price a quantized checkpoint without its safetensors files") from None
    scheme = quant if "method" in quant else quant_config.scheme(model.config or {})
    if not scheme:
        raise ModelError("sglang: the checkpoint's quantization_config could not be read")
    return sum(quant_config.rule_bytes(model, scheme).values())
