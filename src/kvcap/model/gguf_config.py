"""GGUF metadata -> a HuggingFace-style config dict, so the family builders apply to GGUF files.

llama.cpp's converter (`convert_hf_to_gguf.py`, `TextModel.set_gguf_parameters` and each model's
override) writes HF config fields under `<arch>.*` keys; this module writes them back under the
HF names, per architecture, and refuses architectures whose mapping it does not know. The
stored bytes come from the tensors themselves (`gguf_reader`), so they are exact whatever the
family builder lists.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ModelError
from .gguf_reader import FILE_TYPES, GGUFTensor, SkippedArray, read_gguf_model
from .limits import DEFAULT_LIMITS, ReadLimits

# general.architecture -> HF model_type. Architectures not listed fail closed.
ARCH_MODEL_TYPE: dict[str, str] = {
    "llama": "llama", "qwen2": "qwen2", "qwen2moe": "qwen2_moe", "qwen3": "qwen3",
    "qwen3moe": "qwen3_moe", "qwen3next": "qwen3_next", "gemma": "gemma", "gemma2": "gemma2",
    "gemma3": "gemma3_text", "phi3": "phi3", "starcoder2": "starcoder2", "stablelm": "stablelm",
    "olmo2": "olmo2", "granite": "granite", "internlm2": "internlm2", "command-r": "cohere",
    "cohere2": "cohere2", "deepseek2": "deepseek_v2", "gpt-oss": "gpt_oss", "minicpm": "minicpm",
    "orion": "orion", "baichuan": "baichuan", "gptneox": "gpt_neox", "glm4": "glm4", "glm4moe": "glm4_moe",
}
# Interleaved sliding-window layers: llama.cpp's `hparams.set_swa_pattern(n)` for these archs
# (`src/llama-model.cpp`, `load_hparams`): layer i slides iff i % n < n - 1. The HF configs say
# the same with `layer_types` (gpt-oss) or a pattern (Gemma 2 alternates starting with a
# sliding layer; Gemma 3 and Cohere 2 have `sliding_window_pattern`).
SWA_PATTERN: dict[str, int] = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}
# Where each MoE family keeps its expert count and expert FFN width in its HF config.
_EXPERTS: dict[str, tuple[str, str]] = {
    "mixtral": ("num_local_experts", ""), "qwen2_moe": ("num_experts", "moe_intermediate_size"),
    "qwen3_moe": ("num_experts", "moe_intermediate_size"), "qwen3_next": ("num_experts", "moe_intermediate_size"),
    "deepseek_v2": ("n_routed_experts", "moe_intermediate_size"),
    "deepseek_v3": ("n_routed_experts", "moe_intermediate_size"),
    "glm4_moe": ("n_routed_experts", "moe_intermediate_size"), "gpt_oss": ("num_local_experts", "intermediate_size"),
}
# llama_expert_gating_func_type (`src/llama-hparams.h`): 2 = sigmoid, DeepSeek V3's router.
_GATING_SIGMOID = 2
_TYPE_DTYPE = {"F32": "float32", "BF16": "bfloat16"}


def supported() -> list[str]:
    return sorted(ARCH_MODEL_TYPE)


class _Meta:
    """Typed access to `<arch>.*` keys with one-line errors naming the key."""

    def __init__(self, meta: Mapping[str, Any], arch: str, where: str):
        self.meta, self.arch, self.where = meta, arch, where

    def raw(self, key: str) -> Any:
        return self.meta.get(f"{self.arch}.{key}")

    def get_int(self, key: str, default: Any = ..., allow_zero: bool = False) -> Any:
        value = self.raw(key)
        if value is None:
            if default is ...:
                raise ModelError(f"{self.where}: missing GGUF key {self.arch}.{key}")
            return default
        if isinstance(value, tuple):
            value = self.uniform(key, value)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
            raise ModelError(f"{self.where}: {self.arch}.{key} must be a positive integer, got {value!r}")
        return value

    def uniform(self, key: str, values: Sequence[Any]) -> Any:
        distinct = set(values)
        if len(distinct) != 1:
            raise ModelError(
                f"{self.where}: {self.arch}.{key} varies by layer ({sorted(distinct)[:4]}...); "
                f"per-layer shapes are not supported for {self.arch}"
            )
        return values[0]

    def get_float(self, key: str) -> float | None:
        value = self.raw(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _vocab(m: _Meta, tensors: Sequence[GGUFTensor] | None) -> int | None:
    explicit = m.get_int("vocab_size", default=None)
    if explicit:
        return explicit
    for t in tensors or ():
        if t.name == "token_embd.weight" and len(t.shape) == 2:
            return t.shape[1]          # ggml order: ne0 = n_embd, ne1 = n_vocab
    tokens = m.meta.get("tokenizer.ggml.tokens")
    if isinstance(tokens, SkippedArray):
        return tokens.count
    if isinstance(tokens, tuple) and tokens:
        return len(tokens)
    return None


def _sliding(m: _Meta, cfg: dict, n_layers: int) -> None:
    window = m.get_int("attention.sliding_window", default=None)
    if window is None:
        return
    cfg["sliding_window"] = window
    pattern = m.raw("attention.sliding_window_pattern")
    if isinstance(pattern, tuple):   # newer converters write one bool per layer: true = sliding
        if len(pattern) != n_layers:
            raise ModelError(f"{m.where}: {m.arch}.attention.sliding_window_pattern has {len(pattern)} entries for {n_layers} layers")
        swa = [bool(x) for x in pattern]
    else:
        n = pattern if isinstance(pattern, int) and not isinstance(pattern, bool) and pattern > 0 else SWA_PATTERN.get(m.arch)
        if n is None:
            return                    # a window on every layer (Mistral-style): the builder decides
        swa = [i % n < n - 1 for i in range(n_layers)]
        if m.arch in ("gemma3", "cohere2"):
            cfg["sliding_window_pattern"] = n
    cfg["layer_types"] = ["sliding_attention" if s else "full_attention" for s in swa]


def _kv_heads(m: _Meta, n_heads: int) -> int:
    raw = m.raw("attention.head_count_kv")
    if isinstance(raw, tuple):
        return m.uniform("attention.head_count_kv", raw)
    return m.get_int("attention.head_count_kv", default=n_heads)


def config_from_gguf(meta: Mapping[str, Any], tensors: Sequence[GGUFTensor] | None = None,
                     where: str = "GGUF") -> dict[str, Any]:
    """The HF config a GGUF file was converted from, as far as its metadata records it.

    `tensors` (when known) decide the vocabulary size and whether embeddings are tied.
    Works on metadata alone too (validation cases quote only the metadata).
    """
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelError(f"{where}: missing GGUF key general.architecture")
    if arch == "clip":
        raise ModelError(f"{where}: a multimodal projector (mmproj) GGUF, not a language model; give the model's own GGUF")
    model_type = ARCH_MODEL_TYPE.get(arch)
    if model_type is None:
        raise ModelError(f"{where}: GGUF architecture {arch!r} is not supported; supported: {', '.join(supported())}")
    m = _Meta(meta, arch, where)
    blocks = m.get_int("block_count")
    nextn = m.get_int("nextn_predict_layers", default=0, allow_zero=True)
    if nextn >= blocks:
        raise ModelError(f"{where}: {arch}.nextn_predict_layers {nextn} leaves no decoder layers of {blocks}")
    n_heads = m.get_int("attention.head_count")
    cfg: dict[str, Any] = {
        "model_type": model_type,
        "num_hidden_layers": blocks - nextn,
        "hidden_size": m.get_int("embedding_length"),
        "num_attention_heads": n_heads,
        "num_key_value_heads": _kv_heads(m, n_heads),
    }
    if nextn or arch in ("deepseek2", "glm4moe"):
        # deepseek2 GGUFs leave the MTP block out; glm4moe ones keep it after the decoder layers.
        cfg["num_nextn_predict_layers"] = nextn
    ffn = m.get_int("feed_forward_length", default=None)
    if ffn:
        cfg["intermediate_size"] = ffn
    context = m.get_int("context_length", default=None)
    if context:
        cfg["max_position_embeddings"] = context
    vocab = _vocab(m, tensors)
    if vocab:
        cfg["vocab_size"] = vocab
    key_len, value_len = m.get_int("attention.key_length", default=None), m.get_int("attention.value_length", default=None)
    if arch != "deepseek2":
        if key_len and value_len and key_len != value_len:
            raise ModelError(f"{where}: {arch} with key_length {key_len} != value_length {value_len} is not supported")
        if key_len:
            cfg["head_dim"] = key_len
    if tensors is not None:
        cfg["tie_word_embeddings"] = not any(t.name == "output.weight" for t in tensors)
    ftype = meta.get("general.file_type")
    cfg["torch_dtype"] = _TYPE_DTYPE.get(FILE_TYPES.get(ftype, "") if isinstance(ftype, int) else "", "float16")
    _sliding(m, cfg, cfg["num_hidden_layers"])
    # What llama.cpp itself sizes its cache from (`llama_hparams::n_embd_k_gqa`): kept verbatim so
    # an engine policy can tell an absorbed-MLA GGUF (key_length 576, one KV head) from an old one.
    cfg["_gguf"] = {"architecture": arch, "block_count": blocks, "key_length": key_len, "value_length": value_len,
                    "head_count_kv": m.raw("attention.head_count_kv"),
                    "key_length_mla": m.get_int("attention.key_length_mla", default=None),
                    "value_length_mla": m.get_int("attention.value_length_mla", default=None),
                    "nextn_predict_layers": nextn}

    experts = m.get_int("expert_count", default=0, allow_zero=True)
    if experts and model_type == "llama":
        model_type = cfg["model_type"] = "mixtral"
    if arch == "deepseek2":
        _deepseek(m, cfg, key_len, value_len)
        model_type = cfg["model_type"]
    if arch == "qwen3next":
        _qwen3_next(m, cfg)
    if experts:
        count_key, width_key = _EXPERTS.get(model_type, ("num_experts", "moe_intermediate_size"))
        cfg[count_key] = experts
        cfg["num_experts_per_tok"] = m.get_int("expert_used_count")
        if model_type == "gpt_oss":
            cfg["experts_per_token"] = cfg["num_experts_per_tok"]
        width = m.get_int("expert_feed_forward_length", default=None)
        if width and width_key:
            cfg[width_key] = width
        shared = m.get_int("expert_shared_feed_forward_length", default=None)
        if shared:
            cfg["shared_expert_intermediate_size"] = shared
        n_shared = m.get_int("expert_shared_count", default=None)
        if n_shared:
            cfg["n_shared_experts"] = n_shared
        dense = m.get_int("leading_dense_block_count", default=None, allow_zero=True)
        if dense is not None:
            cfg["first_k_dense_replace"] = dense
    return cfg


def _deepseek(m: _Meta, cfg: dict, key_len: int | None, value_len: int | None) -> None:
    """MLA fields. GGUFs converted since llama.cpp PR #12801 store the absorbed form
    (head_count_kv 1, key_length 576 = kv_lora_rank + rope, value_length 512) and keep the
    per-head widths in key_length_mla / value_length_mla; older ones store the MHA widths."""
    if m.get_int("expert_gating_func", default=0, allow_zero=True) == _GATING_SIGMOID:
        # V3's sigmoid router with a selection bias (the GGUF's blk.N.exp_probs_b tensors).
        cfg.update(model_type="deepseek_v3", scoring_func="sigmoid", topk_method="noaux_tc")
    rope = m.get_int("rope.dimension_count")
    head_k = m.get_int("attention.key_length_mla", default=None) or key_len
    head_v = m.get_int("attention.value_length_mla", default=None) or value_len
    if head_k is None or head_v is None:
        raise ModelError(f"{m.where}: deepseek2 GGUF metadata needs attention.key_length and value_length")
    if head_k <= rope:
        raise ModelError(f"{m.where}: deepseek2 key length {head_k} is not larger than the rope dims {rope}")
    cfg.update(
        kv_lora_rank=m.get_int("attention.kv_lora_rank"),
        q_lora_rank=m.get_int("attention.q_lora_rank", default=None),
        qk_rope_head_dim=rope, qk_nope_head_dim=head_k - rope, v_head_dim=head_v,
        num_key_value_heads=cfg["num_attention_heads"],   # HF counts MLA heads as MHA
    )
    for key, hf in (("expert_group_count", "n_group"), ("expert_group_used_count", "topk_group")):
        value = m.get_int(key, default=None)
        if value:
            cfg[hf] = value
    scale = m.get_float("expert_weights_scale")
    if scale is not None:
        cfg["routed_scaling_factor"] = scale


def _qwen3_next(m: _Meta, cfg: dict) -> None:
    """Gated delta-net layers: the converter (`Qwen3NextModel.set_gguf_parameters`) writes
    conv_kernel = linear_conv_kernel_dim, state_size = linear_key_head_dim, group_count =
    linear_num_key_heads, time_step_rank = linear_num_value_heads, inner_size =
    linear_value_head_dim x linear_num_value_heads; MTP layers are not converted."""
    v_heads = m.get_int("ssm.time_step_rank")
    inner = m.get_int("ssm.inner_size")
    if inner % v_heads:
        raise ModelError(f"{m.where}: {m.arch}.ssm.inner_size {inner} is not a multiple of ssm.time_step_rank {v_heads}")
    cfg.update(
        linear_conv_kernel_dim=m.get_int("ssm.conv_kernel"), linear_key_head_dim=m.get_int("ssm.state_size"),
        linear_num_key_heads=m.get_int("ssm.group_count"), linear_num_value_heads=v_heads,
        linear_value_head_dim=inner // v_heads,
        full_attention_interval=m.get_int("full_attention_interval", default=4),
        num_nextn_predict_layers=0,
    )


def from_gguf(path: str | Path, limits: ReadLimits = DEFAULT_LIMITS):
    """A GGUF model file (or the first part of a split one) -> ModelSpec with exact stored bytes."""
    from . import hf
    first, tensors, files = read_gguf_model(path, limits)
    cfg = config_from_gguf(first.metadata, tensors, str(path))
    name = first.metadata.get("general.name")
    spec = hf.from_config(cfg, name if isinstance(name, str) and name else Path(path).stem, f"gguf:{path}")
    by_type: dict[str, int] = {}
    for t in tensors:
        by_type[t.type] = by_type.get(t.type, 0) + t.nbytes
    ftype = first.metadata.get("general.file_type")
    quant = {"format": "gguf", "file_type": FILE_TYPES.get(ftype, f"unknown ({ftype})") if ftype is not None else "",
             "gguf_version": first.version, "files": len(files), "stored_bytes_from": "gguf tensor infos"}
    return dataclasses.replace(spec, stored_bytes=dict(sorted(by_type.items())), quantization=quant,
                               stored_tensors=len(tensors))
