"""The cache of Ollama's own Go engine (`ollamarunner`, v0.6 - v0.24), for the models it runs.

`kvcache/causal.go Causal.Init`: a full-attention layer holds `maxSequences x capacity` cells, a
sliding-window layer `maxSequences x swaMemorySize + maxBatch` (swaMemorySize = the window, +1
with parallel sequences, full size once it reaches the capacity), rounded up to the backend's
CachePadding (`ml/backend/ggml/ggml.go Backend.CacheConfig`). Cells hold K and V of every KV head
in the cache dtype (f16, q8_0, q4_0), priced with ggml's block sizes like llama.cpp's cache.
"""

from __future__ import annotations

from ..errors import ModelError
from ..model.spec import CHUNKED, FULL, SLIDING, ModelSpec
from .llamacpp_kv import Cache, pad
from .llamacpp_types import GgmlType
from .ollama_versions import Version, go_cache_padding

INT32_MAX = 2**31 - 1


def causal_cells(capacity: int, max_sequences: int, max_batch: int, window: int | None, padding: int) -> int:
    """kvcache/causal.go Causal.Init: cells of one cache."""
    swa_memory = INT32_MAX if window is None else window
    if swa_memory != INT32_MAX and max_sequences > 1:
        # a spare cell for the stop token of each parallel sequence
        swa_memory = max(swa_memory, window + 1)
    if swa_memory >= capacity:
        swa_memory = INT32_MAX
    size = max_sequences * capacity if swa_memory == INT32_MAX else max_sequences * swa_memory + max_batch
    return pad(size, padding)


def go_caches(model: ModelSpec, v: Version, arch: str, num_ctx: int, num_parallel: int, num_batch: int,
              flash_attn: bool, dtype: GgmlType) -> tuple[Cache, ...]:
    padding = go_cache_padding(v, flash_attn)
    full_rows, swa_rows, windows = [], [], set()
    for il, layer in enumerate(model.layers):
        if layer.kind not in (FULL, SLIDING, CHUNKED) or layer.kv_source is not None or layer.state:
            if layer.is_mtp:
                continue
            raise ModelError(f"{model.name}: kvcap does not model the Ollama engine's cache for {arch!r} "
                             f"({layer.kind} layers); supported there: full and sliding-window attention")
        width_k = layer.num_kv_heads * layer.head_dim_k
        width_v = layer.num_kv_heads * layer.head_dim_v
        for n in (width_k, width_v):
            if dtype.quantized and n % dtype.block:
                raise ModelError(f"{model.name}: a {n}-wide row is not whole {dtype.name} blocks")
        if layer.kind == FULL:
            full_rows.append((il, width_k, width_v))
        else:
            swa_rows.append((il, width_k, width_v))
            windows.add(layer.window)
    caches = []
    if full_rows:
        caches.append(Cache("kv", causal_cells(num_ctx, num_parallel, num_batch, None, padding), 1, dtype, dtype,
                            tuple(full_rows)))
    if swa_rows:
        if len(windows) != 1 or None in windows:
            raise ModelError(f"{model.name}: one sliding window expected, got {sorted(w or 0 for w in windows)}")
        cells = causal_cells(num_ctx, num_parallel, num_batch, next(iter(windows)), padding)
        caches.append(Cache("kv_swa", cells, 1, dtype, dtype, tuple(swa_rows)))
    return tuple(caches)
