"""ModelSpec: what a model needs, engine-neutral.

Layers and the kind of each (what a KV cache must hold per token or per sequence), the parameter
tensors with their shapes (so any quantization scheme can price them), and the limits the model
declares. No engine or device knowledge lives here: engines decide what they store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any, Mapping

# Layer kinds. A layer's kind says what its cache holds:
FULL = "full"            # K and V for every token of the sequence
SLIDING = "sliding"      # K and V for the last `window` tokens (sinks: a few first tokens kept too)
CHUNKED = "chunked"      # K and V inside the current chunk of `window` tokens (Llama 4 local layers)
MLA = "mla"              # one latent of kv_lora_rank + qk_rope_head_dim per token (DeepSeek V2/V3)
RECURRENT = "recurrent"  # a constant per-sequence state (SSM, linear attention, conv, RWKV)
NONE = "none"            # no cache at all (e.g. an MTP block some engines skip, a shared layer)
LAYER_KINDS = (FULL, SLIDING, CHUNKED, MLA, RECURRENT, NONE)

# Parameter tensor roles. Quantization schemes decide per role what they quantize.
EMBED = "embed"
LM_HEAD = "lm_head"
LINEAR = "linear"        # a 2-D matmul weight [out, in] (or [experts, out, in] for MoE experts)
NORM = "norm"
BIAS = "bias"
ROUTER = "router"        # MoE gate [experts, hidden]; kept unquantized by most schemes
OTHER = "other"          # convolutions, position tables, state parameters, scalars
ROLES = (EMBED, LM_HEAD, LINEAR, NORM, BIAS, ROUTER, OTHER)

# How a tensor is split under tensor parallelism.
COL = "col"   # output dim (axis -2 of a linear, axis 0 of a bias) split across ranks
ROW = "row"   # input dim (axis -1) split across ranks
REP = "rep"   # every rank holds the whole tensor


@dataclass(frozen=True)
class StateTensor:
    """One tensor of a recurrent layer's per-sequence state (constant in sequence length)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = ""  # "" = the engine's choice (usually the model dtype or float32)

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class Layer:
    """One decoder layer as a cache sees it.

    `layers` holds one entry per decoder layer, then any MTP blocks (is_mtp). A parallel hybrid,
    whose decoder layer runs attention and an SSM side by side (Falcon-H1), is two entries for
    that layer — the attention one, then the RECURRENT one — so every entry has one kind.
    """

    kind: str = FULL
    num_kv_heads: int = 0
    head_dim_k: int = 0
    head_dim_v: int = 0
    num_q_heads: int = 0
    window: int | None = None          # SLIDING: window in tokens; CHUNKED: chunk size
    sinks: int = 0                     # attention-sink tokens kept besides the window
    kv_lora_rank: int = 0              # MLA
    qk_rope_head_dim: int = 0          # MLA
    state: tuple[StateTensor, ...] = ()  # RECURRENT
    kv_source: int | None = None       # reuses the cache of this layer index (cross-layer sharing)
    is_mtp: bool = False               # a multi-token-prediction / next-n block
    index_head_dim: int = 0            # MLA with a sparse-attention indexer (DeepSeek V3.2): the
                                       # indexer's own key per token, in elements, besides the latent

    @property
    def kv_elems_per_token(self) -> int:
        """Cache elements one token adds to this layer (K and V together; MLA: the latent)."""
        if self.kv_source is not None or self.kind in (RECURRENT, NONE):
            return 0
        if self.kind == MLA:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return self.num_kv_heads * (self.head_dim_k + self.head_dim_v)

    @property
    def state_elems(self) -> int:
        return sum(s.numel for s in self.state)


@dataclass(frozen=True)
class Tensor:
    """One parameter tensor as a checkpoint stores it before any engine quantization."""

    name: str
    shape: tuple[int, ...]
    role: str = LINEAR
    shard: str = REP
    dtype: str = ""      # "" = the model's dtype; else a stored dtype read from a file
    part: str = "text"   # "text", "vision", "audio", "mtp", "projector"

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class ModelSpec:
    """Everything about a model that decides its memory, independent of engine and device."""

    name: str
    model_type: str
    source: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int
    context_window: int | None          # max_position_embeddings (or the family's equivalent)
    dtype: str                          # torch_dtype of the checkpoint: float16, bfloat16, float32
    tie_word_embeddings: bool
    layers: tuple[Layer, ...]
    tensors: tuple[Tensor, ...]
    architecture: str = ""
    family: str = ""                    # catalog grouping, e.g. "llama", "qwen", "deepseek"
    num_experts: int = 0
    experts_per_token: int = 0
    # Values an MLC preset or mlc-chat-config carries (context_window_size, prefill_chunk_size, …).
    mlc: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # Checkpoint quantization (HF quantization_config, or a GGUF file type), as read.
    quantization: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # Exact stored parameter bytes by dtype when read from real files (safetensors, GGUF, MLC).
    stored_bytes: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)
    # How many tensors those files hold (0 when nothing was read from files).
    stored_tensors: int = field(default=0, compare=False, hash=False)
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    # One-line facts a reader should know (what was assumed from a default, what an engine may
    # treat differently), shown by `kvcap inspect`.
    notes: tuple[str, ...] = field(default=(), compare=False, hash=False)

    # ---- derived views -------------------------------------------------------------------
    @property
    def kv_layers(self) -> tuple[Layer, ...]:
        """Layers that own a per-token cache (not shared, not recurrent)."""
        return tuple(l for l in self.layers if l.kv_elems_per_token > 0)

    @property
    def num_params(self) -> int:
        return sum(t.numel for t in self.tensors)

    def kv_elems_per_token(self, include_mtp: bool = True) -> int:
        """K+V (or latent) elements one token adds across all layers, at full context."""
        return sum(l.kv_elems_per_token for l in self.layers if include_mtp or not l.is_mtp)

    @property
    def is_uniform_attention(self) -> bool:
        """Every layer full attention with the same geometry (plain MHA/GQA/MQA)."""
        first = self.layers[0] if self.layers else None
        return bool(first) and all(
            l.kind == FULL and l.kv_source is None and
            (l.num_kv_heads, l.head_dim_k, l.head_dim_v) == (first.num_kv_heads, first.head_dim_k, first.head_dim_v)
            for l in self.layers
        )

    def layer_kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for l in self.layers:
            key = "shared" if l.kv_source is not None else l.kind
            counts[key] = counts.get(key, 0) + 1
        return counts
