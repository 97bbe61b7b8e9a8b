"""ModelSpec layers -> vLLM's per-layer KV cache specs, for one tensor-parallel rank.

What each model runner's get_kv_cache_spec returns (v1/worker/gpu_model_runner.py), with the
block size the platform and the model config settle on (platforms/cuda.py:
check_and_update_config; model_executor/models/config.py: HybridAttentionMambaModelConfig).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import OptionsError
from ..model.spec import CHUNKED as M_CHUNKED, FULL as M_FULL, MLA as M_MLA, NONE as M_NONE
from ..model.spec import RECURRENT as M_RECURRENT, SLIDING as M_SLIDING, Layer, ModelSpec
from .vllm_era import Era
from .vllm_pages import CHUNKED, FULL, MAMBA, MLA, SLIDING, KVSpec, cdiv

DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "fp16": 2, "bf16": 2,
               "fp8": 1, "float8_e4m3fn": 1, "float8_e5m2": 1, "int8": 1, "uint8": 1}

# config/cache.py: CacheDType. 'auto' takes the model dtype; the fp8 kinds store one byte.
KV_CACHE_DTYPES = {"auto": None, "float16": 2, "bfloat16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1,
                   "fp8_ds_mla": 1}
# v1/kv_cache_interface.py: MLAAttentionSpec.page_size_bytes — 656 bytes a token for fp8_ds_mla
# (DeepSeek V3.2 sparse FlashMLA: 512 fp8 latent + 4 fp32 scales + 64 bf16 rope).
FP8_DS_MLA_TOKEN_BYTES = 656

# Attention backends that fix the block size for MLA (platforms/cuda.py: check_and_update_config
# forces 64 for FlashMLA / FlashInfer-MLA and 128 for CUTLASS MLA; Triton MLA keeps the user's).
MLA_BACKEND_BLOCK = {"FLASHMLA": 64, "FLASHINFER_MLA": 64, "FLASHMLA_SPARSE": 64, "CUTLASS_MLA": 128,
                     "TRITON_MLA": None}


@dataclass(frozen=True)
class LayerSetup:
    """The inputs that decide the specs of one rank."""

    tp: int
    block_size: int          # after the platform default / the user's value
    kv_cache_dtype: str
    model_dtype_bytes: int   # the dtype vLLM runs the model in (dtype='auto' resolved)
    hybrid_allocator: bool   # hybrid KV cache manager on (False: sliding/local stored as full)
    mla_backend: str         # one of MLA_BACKEND_BLOCK (used only by MLA models)
    era: Era
    mamba_cache_mode: str = "none"


def kv_elem_bytes(setup: LayerSetup) -> int:
    explicit = KV_CACHE_DTYPES[setup.kv_cache_dtype]
    return setup.model_dtype_bytes if explicit is None else explicit


def resolve_block_size(model: ModelSpec, setup: LayerSetup) -> int:
    """The attention block size vLLM ends up with for this model."""
    block = setup.block_size
    if any(l.kind == M_MLA for l in model.layers):
        forced = MLA_BACKEND_BLOCK[setup.mla_backend]
        if forced is not None:
            block = forced
    recurrent = [l for l in model.layers if l.kind == M_RECURRENT and not l.is_mtp]
    attention = [l for l in model.layers if l.kind in (M_FULL, M_SLIDING, M_CHUNKED, M_MLA) and not l.is_mtp]
    if recurrent and attention:
        # HybridAttentionMambaModelConfig.verify_and_update_config: raise the attention block so
        # one attention page holds at least one mamba state (aligned to 16 tokens; 64/128 for MLA
        # backends from 0.18).
        align = 16
        if attention[0].kind == M_MLA and setup.era.at_least(0, 18):
            align = MLA_BACKEND_BLOCK[setup.mla_backend] or 64
        per_token = _attn_token_bytes(attention[0], setup)
        mamba = max(_state_bytes(l, setup) for l in recurrent)
        need = align * cdiv(mamba, align * per_token)
        block = max(block, need)
    return block


def layer_specs(model: ModelSpec, setup: LayerSetup) -> dict[int, KVSpec]:
    """{layer index: spec} for every layer that owns a cache on each TP rank."""
    era = setup.era
    block = resolve_block_size(model, setup)
    has_recurrent = any(l.kind == M_RECURRENT and not l.is_mtp for l in model.layers)
    attn_page = 0
    specs: dict[int, KVSpec] = {}
    for i, layer in enumerate(model.layers):
        # Layers reading another layer's cache (kv_sharing_target_layer_name) and MTP blocks
        # (loaded only as a speculative draft) own no cache of their own.
        if layer.kv_source is not None or layer.kind == M_NONE or layer.is_mtp:
            continue
        if layer.kind == M_RECURRENT:
            continue
        kind = {M_FULL: FULL, M_SLIDING: SLIDING, M_CHUNKED: CHUNKED, M_MLA: MLA}.get(layer.kind)
        if kind is None:
            raise OptionsError(f"vLLM has no KV cache spec for layer kind {layer.kind!r}")
        if kind in (SLIDING, CHUNKED) and not setup.hybrid_allocator:
            # unify_hybrid_kv_cache_specs (and every V0/0.8.x release): such layers are
            # stored as full attention.
            kind = FULL
        if kind == MLA and not era.mla_supported:
            raise OptionsError(f"vLLM {era.text} runs MLA models as MHA (MLA caches need 0.7.1+); not modelled")
        if kind in (SLIDING, CHUNKED) and not layer.window:
            raise OptionsError(f"layer {i}: a {layer.kind} layer needs its window")
        heads = 1 if kind == MLA else max(1, layer.num_kv_heads // setup.tp)
        per_token = _attn_token_bytes(layer, setup)
        spec = KVSpec(kind, block, token_bytes=per_token, window=(layer.window or 0) if kind in (SLIDING, CHUNKED) else 0,
                      heads=heads, head_size=layer.head_dim_k or layer.kv_lora_rank)
        specs[i] = spec
        attn_page = attn_page or spec.page_size_bytes
    if has_recurrent:
        if not era.mamba_hybrid:
            raise OptionsError(
                f"vLLM {era.text} keeps recurrent state outside the paged KV cache; "
                f"recurrent and hybrid models are modelled from 0.10.1 (V1)"
            )
        for i, layer in enumerate(model.layers):
            if layer.kind != M_RECURRENT or layer.is_mtp or layer.kv_source is not None:
                continue
            state = _state_bytes(layer, setup)
            # The mamba page is padded to the attention page (mamba_page_size_padded).
            specs[i] = KVSpec(MAMBA, block, state_bytes=state, padded_bytes=max(attn_page, state),
                              mamba_cache_mode=setup.mamba_cache_mode)
        specs = dict(sorted(specs.items()))
    return specs


def _attn_token_bytes(layer: Layer, setup: LayerSetup) -> int:
    s = kv_elem_bytes(setup)
    if layer.kind == M_MLA:
        # MLAAttentionSpec: one latent (kv_lora_rank + qk_rope_head_dim) a token, whole on every
        # TP rank (ModelConfig.get_num_kv_heads returns 1 for MLA).
        if setup.kv_cache_dtype == "fp8_ds_mla":
            return FP8_DS_MLA_TOKEN_BYTES
        return (layer.kv_lora_rank + layer.qk_rope_head_dim) * s
    if setup.kv_cache_dtype == "fp8_ds_mla":
        raise OptionsError("kv_cache_dtype 'fp8_ds_mla' is only for MLA models (DeepSeek V3.2)")
    # AttentionSpec: heads divided by TP, replicated to one per rank when TP > heads
    # (ModelConfig.get_num_kv_heads: max(1, total_num_kv_heads // tensor_parallel_size)).
    heads = max(1, layer.num_kv_heads // setup.tp)
    return heads * (layer.head_dim_k + layer.head_dim_v) * s


def _state_bytes(layer: Layer, setup: LayerSetup) -> int:
    """MambaSpec.page_size_bytes: every state tensor, split over TP on its head/channel axis."""
    total = 0
    for t in layer.state:
        if t.numel % setup.tp:
            raise OptionsError(
                f"recurrent state {t.name} {t.shape} does not split evenly over tensor_parallel_size {setup.tp}"
            )
        size = DTYPE_BYTES.get(t.dtype) if t.dtype else setup.model_dtype_bytes
        if size is None:
            raise OptionsError(f"recurrent state dtype {t.dtype!r} is not known; known: {', '.join(DTYPE_BYTES)}")
        total += t.numel // setup.tp * size
    if total <= 0:
        raise OptionsError("a recurrent layer without state tensors cannot be sized")
    return total
