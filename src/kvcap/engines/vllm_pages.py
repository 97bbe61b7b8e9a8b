"""vLLM's KV-cache pages: per-layer specs, groups, blocks, and the logged capacity numbers.

Mirrors v1/kv_cache_interface.py (page sizes, max_memory_usage_bytes) and
v1/core/kv_cache_utils.py (grouping, get_num_blocks, the report lines, the fit check and
estimate_max_model_len) of the release chosen by `engine_version` (see vllm_era.py). All
arithmetic here is exact integer arithmetic, as vLLM does it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

from ..errors import OptionsError
from .vllm_era import Era

FULL, SLIDING, CHUNKED, MLA, MAMBA = "full", "sliding", "chunked", "mla", "mamba"


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class KVSpec:
    """One layer's cache as vLLM specifies it (FullAttentionSpec, SlidingWindowSpec, …)."""

    kind: str
    block_size: int
    token_bytes: int = 0      # attention kinds: bytes one token adds to this layer
    state_bytes: int = 0      # MAMBA: one sequence's state in this layer
    padded_bytes: int = 0     # MAMBA: page padded up to the attention page (page_size_padded)
    window: int = 0           # SLIDING: sliding_window; CHUNKED: attention_chunk_size
    heads: int = 0            # identity only: vLLM keys its groups by the whole spec
    head_size: int = 0
    mamba_cache_mode: str = "none"   # MAMBA: 'none' | 'align' | 'all' (CacheConfig.mamba_cache_mode)

    @property
    def page_size_bytes(self) -> int:
        if self.kind == MAMBA:
            return self.padded_bytes or self.state_bytes
        return self.block_size * self.token_bytes

    def max_memory_usage_bytes(self, max_model_len: int, max_num_batched_tokens: int) -> int:
        """Bytes one request of max_model_len tokens needs in this layer (kv_cache_interface.py)."""
        page, b = self.page_size_bytes, self.block_size
        if self.kind == SLIDING:
            # SlidingWindowSpec: the last window-1 tokens plus a prefill chunk, +1 block because
            # the window need not start at a block boundary.
            tokens = min(self.window - 1 + max_num_batched_tokens, max_model_len)
            return (cdiv(tokens, b) + 1) * page
        if self.kind == CHUNKED:
            # ChunkedLocalAttentionSpec: the current chunk plus a prefill chunk.
            return cdiv(min(self.window + max_num_batched_tokens, max_model_len), b) * page
        if self.kind == MAMBA:
            # MambaSpec: one state per request; 'align' keeps a second for prefix caching, 'all'
            # one per block of the request (no speculative blocks).
            if self.mamba_cache_mode == "all":
                return cdiv(max_model_len, b) * page
            return page * (2 if self.mamba_cache_mode == "align" else 1)
        return cdiv(max_model_len, b) * page          # FullAttentionSpec, MLAAttentionSpec


@dataclass(frozen=True)
class Group:
    spec: KVSpec
    layers: tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """How vLLM lays out the pools: 'uniform' (one spec), 'uniform_type' (one group, pages
    differ), 'hybrid' (groups of equal size sharing G pools), 'none' (attention-free)."""

    mode: str
    groups: tuple[Group, ...]
    specs: Mapping[int, KVSpec]

    @property
    def group_size(self) -> int:
        return max((len(g.layers) for g in self.groups), default=0)

    @property
    def page(self) -> int:
        """Bytes of one block of one pool (uniform_type: the sum over its layers)."""
        if self.mode == "uniform_type":
            return sum(self.specs[i].page_size_bytes for i in self.groups[0].layers)
        return self.groups[0].spec.page_size_bytes if self.groups else 0

    @property
    def bytes_per_block(self) -> int:
        """What one block index costs across this worker's layers."""
        if self.mode == "uniform_type":
            return self.page
        return self.page * self.group_size

    def project(self, layers: set[int]) -> "Layout":
        """_project_kv_cache_groups_to_worker: keep only one PP stage's layers."""
        groups = tuple(Group(g.spec, tuple(i for i in g.layers if i in layers)) for g in self.groups)
        return Layout(self.mode, groups, {i: s for i, s in self.specs.items() if i in layers})


# ---- grouping (get_kv_cache_groups) -------------------------------------------------------

def group_layers(specs: Mapping[int, KVSpec], era: Era) -> Layout:
    """Split the layers into groups as get_kv_cache_groups does for the whole model."""
    if not specs:
        return Layout("none", (), {})
    distinct = list(dict.fromkeys(specs.values()))
    if len(distinct) == 1:
        return Layout("uniform", (Group(distinct[0], tuple(specs)),), dict(specs))
    kinds = {s.kind if s.kind != MLA else FULL for s in distinct}
    same_kind = len(kinds) == 1 and len({(s.window, s.block_size) for s in distinct}) == 1
    if same_kind and kinds != {MAMBA}:
        if not era.uniform_type_specs:
            raise OptionsError(
                f"vLLM {era.text} cannot lay out layers with different page sizes "
                f"(NotImplementedError in get_kv_cache_config); UniformTypeKVCacheSpecs needs 0.11+"
            )
        return Layout("uniform_type", (Group(distinct[0], tuple(specs)),), dict(specs))
    specs = _unify_page_size(dict(specs), era)
    return _hybrid_groups(specs, era)


def _unify_page_size(specs: dict[int, KVSpec], era: Era) -> dict[int, KVSpec]:
    """unify_kv_cache_spec_page_size: raise the block size of layers with smaller pages."""
    pages = {s.page_size_bytes for s in specs.values()}
    if len(pages) == 1:
        return specs
    if not era.unify_page_size:
        raise OptionsError(
            f"vLLM {era.text} cannot mix layer kinds with different page sizes "
            f"(NotImplementedError in get_kv_cache_groups); unify_kv_cache_spec_page_size needs 0.14+"
        )
    top = max(pages)
    out = {}
    for i, s in specs.items():
        if s.page_size_bytes == top:
            out[i] = s
        elif s.kind == MAMBA or top % s.page_size_bytes:
            raise OptionsError(
                "vLLM cannot unify these page sizes: the page size of the layer is not divisible "
                "by the maximum page size"
            )
        else:
            out[i] = replace(s, block_size=s.block_size * (top // s.page_size_bytes))
    return out


def _hybrid_groups(specs: dict[int, KVSpec], era: Era) -> Layout:
    """_get_kv_cache_groups_uniform_page_size: equal-size groups, strided within each type."""
    by_type: dict[KVSpec, list[int]] = {}
    for i, s in specs.items():
        by_type.setdefault(s, []).append(i)
    counts = [len(v) for v in by_type.values()]
    size = min(counts)
    if era.group_size_rule == "min_or_close_max" and max(counts) < size * 1.5:
        size = max(counts)
    groups = []
    for spec, layers in by_type.items():
        n = cdiv(len(layers), size)
        groups += [Group(spec, tuple(layers[i::n])) for i in range(n)]
    return Layout("hybrid", tuple(groups), specs)


# ---- blocks and the logged numbers -------------------------------------------------------

def num_blocks(available: int, layout: Layout) -> int:
    """get_num_blocks: available // page // layers (uniform_type: // the sum of pages)."""
    if layout.mode == "none":
        return 1     # attention-free: BlockPool still needs its null block
    return max(0, available // layout.bytes_per_block)


def max_memory_per_request(layout: Layout, max_model_len: int, mnbt: int, rule: str) -> int:
    """Bytes one max_model_len request needs on this worker (the fit check's Y)."""
    if layout.mode == "none":
        return 0
    if rule == "layers" or layout.mode == "uniform_type":
        # check_enough_kv_cache_memory (<= 0.13), and _max_memory_usage_bytes_from_groups for
        # UniformTypeKVCacheSpecs: the plain sum over layers.
        return sum(s.max_memory_usage_bytes(max_model_len, mnbt) for s in layout.specs.values())
    # _max_memory_usage_bytes_from_groups: padded groups, whole pages.
    page = layout.page
    blocks = sum(cdiv(g.spec.max_memory_usage_bytes(max_model_len, mnbt), page) for g in layout.groups)
    return layout.group_size * page * blocks


def blocks_per_request(layout: Layout, max_model_len: int, mnbt: int) -> int:
    """get_max_concurrency_for_kv_cache_config's denominator."""
    if layout.mode == "uniform_type":
        return max(cdiv(layout.specs[i].max_memory_usage_bytes(max_model_len, mnbt), layout.specs[i].page_size_bytes)
                   for i in layout.groups[0].layers)
    need = sum(g.spec.max_memory_usage_bytes(max_model_len, mnbt) for g in layout.groups)
    return cdiv(need, layout.page)


def report(layout: Layout, blocks: int, max_model_len: int, mnbt: int, era: Era) -> tuple[int, float]:
    """('GPU KV cache size: N tokens', 'Maximum concurrency for max_model_len tokens: C x')."""
    if layout.mode == "none":
        return 0, 0.0
    min_block = min(g.spec.block_size for g in layout.groups)
    if era.concurrency_line == "tokens_over_len":           # V0 and 0.8.x
        tokens = blocks * min_block
        return tokens, tokens / max_model_len
    conc = blocks / blocks_per_request(layout, max_model_len, mnbt)
    if era.tokens_line == "concurrency":                     # 0.21+
        return int(conc * max_model_len), conc
    return blocks // len(layout.groups) * min_block, conc     # 0.9-0.20


def estimate_max_model_len(need: Callable[[int], int], available: int, upper: int) -> int:
    """estimate_max_model_len: the binary search over 1..max_model_len (0 when 1 does not fit)."""
    if need(1) > available:
        return 0
    lo, hi, best = 1, upper, 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if need(mid) <= available:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def pp_partition(num_layers: int, pp: int, override: Sequence[int] | None = None) -> list[range]:
    """distributed/utils.py: get_pp_indices — extra layers go to the stages before the last."""
    if override:
        if len(override) != pp or sum(override) != num_layers:
            raise OptionsError(
                f"VLLM_PP_LAYER_PARTITION {','.join(map(str, override))} must have {pp} parts summing to {num_layers}"
            )
        parts = list(override)
    else:
        parts = [num_layers // pp] * pp
        for i in range(2, num_layers % pp + 2):
            parts[-i] += 1
    out, start = [], 0
    for n in parts:
        out.append(range(start, start + n))
        start += n
    return out
