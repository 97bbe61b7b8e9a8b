"""SGLang's token-to-KV pool: bytes per token (its `cell_size`) and the pool split per layer kind.

SGLang stores every token of the pool in every attention layer of the rank
(mem_cache/memory_pool.py `MHATokenToKVPool`, `MLATokenToKVPool`); the cell size is what one token
costs across those layers (model_runner.py `profile_max_num_token` up to 0.5.x,
model_executor/pool_configurator.py `DefaultPoolConfigurator._compute_cell_size` in 0.5.23).
Architectures SGLang lists as hybrid sliding-window get a second, smaller pool for their SWA
layers, `swa_full_tokens_ratio` of the full one (pool_configurator.py `HybridSWAPoolConfigurator`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError, OptionsError
from ..model.spec import CHUNKED, FULL, MLA, NONE, RECURRENT, SLIDING, Layer, ModelSpec

# configs/model_config.py `is_hybrid_swa_model` (sglang 0.5.23) — the architectures of that list
# kvcap can describe; any other model with sliding layers keeps them in the full pool.
HYBRID_SWA_ARCHS = frozenset({
    "Llama4ForConditionalGeneration", "GptOssForCausalLM", "Gemma4ForCausalLM", "Gemma4ForConditionalGeneration",
    "MiMoV2FlashForCausalLM", "Step3p5ForCausalLM", "GraniteSWAForCausalLM", "GraniteMoeSWAForCausalLM",
    "LagunaForCausalLM", "MellumForCausalLM",
})
# server_args.py --kv-cache-dtype choices, by the release that added them
KV_DTYPES = {"auto": (0, 4, 0, 0), "fp8_e5m2": (0, 4, 0, 0), "fp8_e4m3": (0, 4, 3, 0),
             "bf16": (0, 5, 4, 0), "bfloat16": (0, 5, 4, 0)}


def kv_dtype_bytes(kv_cache_dtype: str, load_dtype_bytes: int, version: tuple) -> int:
    since = KV_DTYPES.get(kv_cache_dtype)
    if since is None or version < since:
        offered = [k for k, v in KV_DTYPES.items() if version >= v]
        raise OptionsError(f"sglang: --kv-cache-dtype {kv_cache_dtype!r} is not a choice of this release; "
                           f"choose from {', '.join(offered)} (fp4 and mxfp8 caches are not modelled)")
    if kv_cache_dtype == "auto":
        return load_dtype_bytes
    return 1 if kv_cache_dtype.startswith("fp8") else 2


@dataclass(frozen=True)
class Pool:
    kind: str                      # "mha", "mla" or "hybrid_swa"
    full_layers: int
    swa_layers: int
    full_bytes_per_token: int      # one token across the full (or MLA) layers of the rank
    swa_bytes_per_token: int       # one token across the SWA layers (hybrid pools only)
    window: int | None
    formula: str

    def cell_size(self, ratio: float) -> float:
        """Bytes per pool token; a hybrid pool pays `ratio` of an SWA token per full token."""
        if self.kind != "hybrid_swa":
            return float(self.full_bytes_per_token)
        if self.full_layers == 0:
            return float(self.swa_bytes_per_token)
        return self.full_bytes_per_token + ratio * self.swa_bytes_per_token


def _heads(layer: Layer, tp: int) -> int:
    # model_config.py get_num_kv_heads: max(1, total_num_kv_heads // tp) — heads replicate past tp
    return max(1, layer.num_kv_heads // tp)


def build_pool(model: ModelSpec, tp: int, kv_bytes: int) -> Pool:
    layers = [l for l in model.layers if not l.is_mtp and l.kind != NONE]
    kinds = {l.kind for l in layers}
    if RECURRENT in kinds:
        raise ModelError("sglang: kvcap does not model SGLang's Mamba / linear-attention state pool "
                         "(max_mamba_cache_size, mamba_full_memory_ratio); supported layer kinds: full, sliding, chunked, mla")
    if any(l.kv_source is not None for l in layers):
        raise ModelError("sglang: cross-layer KV sharing is not modelled for SGLang; supported: full, sliding, chunked, mla layers")
    if MLA in kinds:
        if kinds != {MLA}:
            raise ModelError("sglang: a model mixing MLA with other attention layers is not modelled")
        cfg = model.config or {}
        if any(l.index_head_dim for l in layers) or any(k in cfg for k in ("index_topk", "index_head_dim")):
            raise ModelError("sglang: DeepSeek sparse attention (DSA) adds an indexer cache kvcap does not model")
        per = sum(l.kv_lora_rank + l.qk_rope_head_dim for l in layers) * kv_bytes
        first = layers[0]
        return Pool("mla", len(layers), 0, per, 0, None,
                    f"(kv_lora_rank {first.kv_lora_rank} + qk_rope_head_dim {first.qk_rope_head_dim}) × "
                    f"{len(layers)} layers × {kv_bytes} B — the latent is not split by tp")
    swa = [l for l in layers if l.kind in (SLIDING, CHUNKED)]
    full = [l for l in layers if l.kind == FULL]
    arch = model.architecture or ""
    cfg = model.config or {}
    hybrid = bool(swa) and (arch in HYBRID_SWA_ARCHS or (cfg.get("text_config") or cfg).get("is_hybrid_swa") is True)

    def per_token(ls: list[Layer]) -> int:
        return sum(_heads(l, tp) * (l.head_dim_k + l.head_dim_v) for l in ls) * kv_bytes

    if not hybrid:
        first = layers[0]
        words = (f"{_heads(first, tp)} KV heads per rank × (head_dim {first.head_dim_k} + {first.head_dim_v}) × "
                 f"{len(layers)} layers × {kv_bytes} B")
        if swa:
            words += f"; the {len(swa)} sliding layers keep the whole pool ({arch or 'this architecture'} has no SWA pool)"
        return Pool("mha", len(layers), 0, per_token(layers), 0, None, words)
    window = max((l.window or 0) for l in swa) or None
    return Pool("hybrid_swa", len(full), len(swa), per_token(full), per_token(swa), window,
                f"full layers {len(full)} × their K+V + swa_full_tokens_ratio × {len(swa)} SWA layers × their K+V")
