"""A ModelSpec as MLC-LLM's engine sees it: compiled metadata plus mlc-chat-config values.

MLC reads per model (cpp/serve/config.cc:GetModelConfigLimits, EstimateMemoryUsageOnMode):
  - from the compiled library's `_metadata()`: context_window_size, prefill_chunk_size,
    max_batch_size, pipeline_parallel_stages, the `params` list (per-shard shapes) and
    `kv_cache` = (num_hidden_layers, num_attention_heads/TP, num_key_value_heads/TP, head_dim);
  - from mlc-chat-config.json: the runtime context_window_size / prefill_chunk_size and
    model_config.{vocab_size, prefill_chunk_size}.
kvcap has no library: it rebuilds those values from the ModelSpec with `mlc_llm gen_config`'s
defaults (research/mlc.md §8.2), the preset's MLC keys, and compile_* options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .. import quant
from ..errors import ModelError, OptionsError
from ..model.spec import FULL, MLA, SLIDING, ModelSpec
from . import mlc_temp
from .mlc_era import Era

# Families whose MLC config defaults the prefill chunk to min(ctx, 2048) even today
# (qwen3_model.py, qwen35_model.py, internlm2_model.py, deepseek_v2_model.py __post_init__).
PREFILL_2048 = frozenset({"qwen3", "qwen3_5", "qwen3_moe", "internlm2", "deepseek_v2"})
# MLC's default attention sinks for sliding-window Mistral (mistral_model.py).
MISTRAL_SINKS = 4


@dataclass(frozen=True)
class MLCModel:
    """One model loaded by the engine, with every value the estimator reads."""

    spec: ModelSpec
    scheme: quant.Scheme
    tp: int
    pp: int
    context_window_size: int          # compile time (metadata); -1 = unlimited (sliding window)
    prefill_chunk_size: int           # compile time (metadata and model_config)
    max_batch_size: int               # compile time (metadata)
    sliding_window_size: int          # -1 = none
    attention_sink_size: int          # -1 = none
    vocab_size: int
    kv_layers: int                    # kv_cache metadata, whole model (PP divides it later)
    kv_qo_heads: int                  # per shard
    kv_heads: int                     # per shard
    head_dim: int
    params_bytes: int                 # Σ stored tensor bytes on one shard, before PP division
    temp_func_bytes: int              # max per-function planned bytes (before MLC's ×2)
    temp_estimated: bool
    temp_formula: str
    rnn: bool = False                 # model_type contains "rwkv": InferForRNNState
    rnn_head_size: int = 0
    rnn_num_heads: int = 0
    defaults_used: tuple[str, ...] = ()  # compile-time values taken from gen_config defaults

    @property
    def hidden_size(self) -> int:
        """EstimateMemoryUsageOnMode: hidden_size = head_dim × num_qo_heads (per shard)."""
        return self.head_dim * self.kv_qo_heads


def describe(spec: ModelSpec, quantization: str | None, compile_opts: Mapping[str, Any], era: Era,
             tp: int, pp: int, temp_buffer_bytes: int | None = None) -> MLCModel:
    """Rebuild MLC's metadata for `spec` compiled with `quantization` (None: checkpoint dtype)."""
    scheme = quant.scheme(quantization) if quantization else quant.unquantized_for(spec.dtype)
    rnn = "rwkv" in spec.model_type
    kinds = {l.kind for l in spec.layers}
    defaults: list[str] = []

    sliding = compile_opts.get("sliding_window_size")
    window = -1
    if not rnn:
        if any(l.kv_source is not None or l.is_mtp for l in spec.layers):
            raise ModelError(f"{spec.name}: MLC-LLM builds no shared-KV or multi-token-prediction layers; the MLC "
                             "policy supports full-attention, Mistral sliding-window, MLA and RWKV models")
        if kinds <= {FULL}:
            if not spec.is_uniform_attention:
                raise ModelError(f"{spec.name}: MLC's KV metadata is one (heads, head_dim) for every layer; "
                                 "this model's layers differ")
            if sliding is not None:
                raise OptionsError("sliding_window_size applies to sliding-window models (Mistral v0.1); "
                                   f"{spec.name} uses full attention")
        elif kinds == {SLIDING} and spec.model_type == "mistral":
            window = int(sliding or spec.layers[0].window or 0)
        elif kinds == {MLA}:
            pass
        else:
            raise ModelError(f"{spec.name}: the MLC policy supports full-attention, Mistral sliding-window, "
                             f"MLA and RWKV models; this one has layers {sorted(kinds)}")

    # --- compile-time context window (model config __post_init__ / gen_config) ----------
    ctx = compile_opts.get("context_window_size")
    if ctx is None:
        ctx = spec.mlc.get("context_window_size")
        if window != -1:
            ctx = -1  # MistralConfig.__post_init__: a sliding window means no context limit
        elif ctx is None:
            if spec.context_window is None:
                raise ModelError(f"{spec.name}: no max_position_embeddings; give compile_context_window_size")
            ctx = spec.context_window
            defaults.append("context_window_size = max_position_embeddings")
    ctx = int(ctx)

    # --- compile-time prefill chunk -------------------------------------------------------
    pcs = compile_opts.get("prefill_chunk_size")
    if pcs is None:
        pcs = spec.mlc.get("prefill_chunk_size")
        if pcs is None:
            pcs = _default_prefill(spec.model_type, ctx, window, era)
            defaults.append(f"prefill_chunk_size = {_prefill_rule(spec.model_type, era)}")
        elif ctx != -1 and pcs > ctx:
            pcs = min(ctx, 8192)  # LlamaConfig.__post_init__: "Overriding prefill_chunk_size"
    pcs = int(pcs)

    mbs = compile_opts.get("max_batch_size")
    if mbs is None:
        mbs = spec.mlc.get("max_batch_size")
        if mbs is None:
            mbs = era.default_max_batch_size
            defaults.append(f"max_batch_size = {mbs} (gen_config default of the era)")
    mbs = int(mbs)

    sinks = compile_opts.get("attention_sink_size")
    if sinks is None:
        sinks = spec.mlc.get("attention_sink_size", MISTRAL_SINKS if window != -1 else -1)
    if window != -1 and sinks is not None and sinks >= window:
        raise OptionsError(f"attention_sink_size {sinks} must be smaller than sliding_window_size {window}")

    layers, qo, kv, hd = _kv_metadata(spec, tp, rnn)
    if pp < 1 or (layers and pp > layers) or (rnn and pp > spec.num_hidden_layers):
        raise OptionsError(f"pipeline_parallel_stages {pp} must be between 1 and the {layers or spec.num_hidden_layers} layers")
    if not rnn and spec.intermediate_size % tp:
        raise OptionsError(f"tensor_parallel_shards={tp} does not divide the MLP intermediate size "
                           f"{spec.intermediate_size} (llama_model.py:LlamaFFN)")
    params = quant.param_bytes(spec, scheme, tp)

    if temp_buffer_bytes is not None:
        temp, formula, estimated = int(temp_buffer_bytes), "given (temp_buffer_bytes)", False
    else:
        shape = mlc_temp.TempShape(
            model_type=spec.model_type, hidden=spec.hidden_size, q_width=qo * hd, kv_width=kv * hd,
            intermediate=spec.intermediate_size // tp, vocab=spec.vocab_size, tied=spec.tie_word_embeddings,
            act_bytes=scheme.dtype_bytes, prefill_chunk_size=pcs, max_batch_size=mbs)
        temp, formula = mlc_temp.estimate(shape)
        estimated = True

    head_size = num_heads = 0
    if rnn:
        head_size = int(spec.config.get("head_size") or 64)
        if spec.hidden_size % head_size:
            raise ModelError(f"{spec.name}: hidden_size {spec.hidden_size} is not a multiple of head_size {head_size}")
        num_heads = spec.hidden_size // head_size
    return MLCModel(
        spec=spec, scheme=scheme, tp=tp, pp=pp, context_window_size=ctx, prefill_chunk_size=pcs,
        max_batch_size=mbs, sliding_window_size=window, attention_sink_size=int(sinks if window != -1 else -1),
        vocab_size=spec.vocab_size, kv_layers=layers, kv_qo_heads=qo, kv_heads=kv, head_dim=hd,
        params_bytes=params, temp_func_bytes=temp, temp_estimated=estimated, temp_formula=formula,
        rnn=rnn, rnn_head_size=head_size, rnn_num_heads=num_heads, defaults_used=tuple(defaults))


def _kv_metadata(spec: ModelSpec, tp: int, rnn: bool) -> tuple[int, int, int, int]:
    """compiler_pass/dispatch_kv_cache_creation.py:attach_kv_cache_metadata, per shard."""
    if rnn:
        return 0, 0, 0, 0  # InferForRNNState reads model_config, not kv_cache metadata
    layers = spec.layers
    first = layers[0]
    if first.kind == MLA:
        # deepseek_v2_model.py: one latent of kv_lora_rank + qk_rope_head_dim, metadata kv heads = 1.
        return len(layers), spec.num_attention_heads // tp, 1, first.kv_lora_rank + first.qk_rope_head_dim
    n_kv = first.num_kv_heads
    if n_kv % tp or n_kv < tp:
        # llama_model.py:LlamaAttention asserts num_kv_heads divisible by, and at least, the shards.
        raise OptionsError(f"tensor_parallel_shards={tp} must divide the {n_kv} KV heads of {spec.name}")
    if spec.num_attention_heads % tp:
        raise OptionsError(f"tensor_parallel_shards={tp} must divide the {spec.num_attention_heads} attention heads")
    return len(layers), spec.num_attention_heads // tp, n_kv // tp, first.head_dim_k


def _default_prefill(model_type: str, ctx: int, window: int, era: Era) -> int:
    if window != -1:
        return min(window, 8192 if era.date >= (2024, 10) else 2048)
    if era.date < (2024, 5):
        return ctx                      # before #2278: prefill = context window
    if era.date < (2024, 10) or model_type in PREFILL_2048:
        return min(ctx, 2048)           # #2278 (2024-05-05) until #2917 (2024-09-18)
    return min(ctx, 8192)               # #2917


def _prefill_rule(model_type: str, era: Era) -> str:
    if era.date < (2024, 5):
        return "context window (gen_config before #2278)"
    if era.date < (2024, 10) or model_type in PREFILL_2048:
        return "min(context, 2048) (gen_config default)"
    return "min(context, 8192) (gen_config default)"
