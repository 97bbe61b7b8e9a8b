"""Paged decode attention: where the KV pages are, and three ways to attend over them.

`PagedKV` describes a KV pool as the engines lay it out: one or more buffers ("chunks"), each
seen as pages of `page` tokens, every page holding K and V of all KV heads. A layout is four
strides (in elements): from one page to the next, from K to V, from one head to the next, from
one token to the next; the head dim is contiguous. The page table maps each sequence's i-th
page to a global page id (chunks are numbered in order, `pages_per_chunk` pages each).

- `decode` runs the Triton kernel on CUDA/ROCm, else the torch fallback (mps, xpu, cpu).
- `decode_torch` gathers the pages (index_select) and attends with plain matmuls.
- `reference` does the same in float64 on the CPU, for correctness checks.
torch is imported by the caller (probe.torchdev.require_torch) before any of these run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Layouts as strides (page, K->V, head, token) for H kv heads, head dim D, page size P.
# MLC: one buffer per layer [pages, 2, H, P, D] (TVM paged_kv_cache.cc, GetKVCacheShape in attn_utils.h).
# vLLM: one tensor per layer [2, blocks, P, H, D] (FlashAttentionBackend.get_kv_cache_shape).
# llama.cpp: K and V per layer [n_ctx, H*D] (llama-kv-cache.cpp, llama_kv_cache constructor);
#   K and V of one layer lie in one backend buffer, so V is a fixed element offset from K.
MLC = "mlc"
VLLM = "vllm"
LLAMACPP = "llamacpp"
LAYOUTS = (MLC, VLLM, LLAMACPP)


def layout_strides(layout: str, num_pages: int, heads: int, page: int, head_dim: int) -> tuple[int, int, int, int]:
    """(page, K->V, head, token) strides in elements for a buffer of `num_pages` pages."""
    if layout == MLC:
        return 2 * heads * page * head_dim, heads * page * head_dim, page * head_dim, head_dim
    if layout in (VLLM, LLAMACPP):
        return page * heads * head_dim, num_pages * page * heads * head_dim, head_dim, heads * head_dim
    raise ValueError(f"unknown KV layout {layout!r}; known: {', '.join(LAYOUTS)}")


def buffer_elems(num_pages: int, heads: int, page: int, head_dim: int) -> int:
    """Elements of one buffer of `num_pages` pages, K and V together (every layout)."""
    return num_pages * 2 * heads * page * head_dim


@dataclass(frozen=True)
class PagedKV:
    chunks: tuple[Any, ...]       # flat 1-D tensors, one per buffer, same dtype and device
    pages_per_chunk: int
    layout: str
    num_kv_heads: int
    head_dim: int
    page: int = 16

    @property
    def strides(self) -> tuple[int, int, int, int]:
        return layout_strides(self.layout, self.pages_per_chunk, self.num_kv_heads, self.page, self.head_dim)

    @property
    def num_pages(self) -> int:
        return self.pages_per_chunk * len(self.chunks)

    def view(self, i: int):
        """Chunk i as [pages, 2, H, P, D] (a strided view, no copy)."""
        import torch
        s_page, s_kv, s_head, s_tok = self.strides
        shape = (self.pages_per_chunk, 2, self.num_kv_heads, self.page, self.head_dim)
        return torch.as_strided(self.chunks[i], shape, (s_page, s_kv, s_head, s_tok, 1))

    def page_offsets(self, page_table):
        """Page ids [B, n] -> int64 element offsets from chunks[0]'s first element."""
        import torch
        itemsize = self.chunks[0].element_size()
        base = self.chunks[0].data_ptr()
        deltas = []
        for c in self.chunks:
            delta = c.data_ptr() - base
            if delta % itemsize:
                raise RuntimeError("KV chunks are not aligned to their element size")
            deltas.append(delta // itemsize)
        chunk_off = torch.tensor(deltas, dtype=torch.int64, device=page_table.device)
        pt = page_table.to(torch.int64)
        return chunk_off[pt // self.pages_per_chunk] + (pt % self.pages_per_chunk) * self.strides[0]


def gather(kv: PagedKV, page_table, seq_lens):
    """K and V of each sequence, padded: ([B, H, T, D], [B, H, T, D]) with T = pages * P."""
    import torch
    batch, n = page_table.shape
    shape = (batch * n, 2, kv.num_kv_heads, kv.page, kv.head_dim)
    flat = page_table.reshape(-1).to(torch.int64)
    if len(kv.chunks) == 1:
        pages = kv.view(0).index_select(0, flat)
    else:
        pages = torch.empty(shape, dtype=kv.chunks[0].dtype, device=page_table.device)
        owner = flat // kv.pages_per_chunk
        for c in range(len(kv.chunks)):
            sel = (owner == c).nonzero().reshape(-1)
            if sel.numel():
                pages[sel] = kv.view(c).index_select(0, flat[sel] % kv.pages_per_chunk)
    pages = pages.reshape(batch, n, 2, kv.num_kv_heads, kv.page, kv.head_dim)
    pages = pages.permute(2, 0, 3, 1, 4, 5).reshape(2, batch, kv.num_kv_heads, n * kv.page, kv.head_dim)
    return pages[0], pages[1]


def _attend(q, k, v, seq_lens):
    """q [B, Hq, D], k/v [B, H, T, D] -> [B, Hq, D]; tokens past seq_len masked out."""
    import torch
    batch, hq, d = q.shape
    group = hq // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = torch.einsum("bhd,bhtd->bht", q, k) / math.sqrt(d)
    pos = torch.arange(k.shape[2], device=q.device)
    scores = scores.masked_fill(pos[None, None, :] >= seq_lens.to(q.device)[:, None, None], float("-inf"))
    return torch.einsum("bht,bhtd->bhd", torch.softmax(scores, dim=-1), v)


def decode_torch(q, kv: PagedKV, page_table, seq_lens):
    """The fallback for mps/xpu/cpu: gather the pages, then attend in float32."""
    k, v = gather(kv, page_table, seq_lens)
    return _attend(q.float(), k.float(), v.float(), seq_lens).to(q.dtype)


def reference(q, kv: PagedKV, page_table, seq_lens):
    """Float64 on the CPU: the answer every kernel is checked against."""
    import torch
    k, v = gather(kv, page_table, seq_lens)
    cpu = torch.device("cpu")
    return _attend(q.to(cpu, torch.float64), k.to(cpu, torch.float64), v.to(cpu, torch.float64), seq_lens.to(cpu))


def triton_available(device) -> bool:
    """True where the Triton kernel runs: a CUDA (or ROCm, which torch also calls cuda) device."""
    if getattr(device, "type", str(device)) != "cuda":
        return False
    from importlib.util import find_spec
    return find_spec("triton") is not None


class Decoder:
    """One decode step over a fixed pool and page table, ready to be called repeatedly.

    The page offsets and the partition scratch are prepared once, so a timed call is only the
    kernel launches (kernel="triton") or the gather + attention (kernel="torch")."""

    def __init__(self, kv: PagedKV, page_table, seq_lens, kernel: str = "auto", **tuning: int):
        import torch
        device = kv.chunks[0].device
        if kernel == "auto":
            kernel = "triton" if triton_available(device) else "torch"
        if kernel not in ("triton", "torch"):
            raise ValueError(f"unknown kernel {kernel!r}; known: auto, triton, torch")
        if int(seq_lens.min()) < 1:
            raise ValueError("every sequence needs at least one token")
        self.kernel, self.kv, self.page_table, self.seq_lens = kernel, kv, page_table, seq_lens
        self.max_seq_len = int(seq_lens.max())
        self.tuning = tuning
        self.scratch = None
        if kernel == "triton":
            self.page_off = kv.page_offsets(page_table).contiguous()
            self.seq_lens_i32 = seq_lens.to(device=device, dtype=torch.int32)
            part = tuning.get("part_tokens", 512)
            num_parts = -(-self.max_seq_len // part)
            self.scratch_rows = num_parts

    def __call__(self, q, out=None):
        import torch
        if self.kernel == "torch":
            result = decode_torch(q, self.kv, self.page_table, self.seq_lens)
            if out is not None:
                out.copy_(result)
                return out
            return result
        from . import triton_decode
        if out is None:
            out = torch.empty_like(q)
        if self.scratch is None:
            rows = q.shape[0] * q.shape[1] * self.scratch_rows
            self.scratch = torch.empty(rows * (q.shape[2] + 2), dtype=torch.float32, device=q.device)
        _, v_off, s_head, s_tok = self.kv.strides
        return triton_decode.decode(
            q, self.kv.chunks[0], self.page_off, self.seq_lens_i32, v_off, s_tok, s_head,
            self.kv.num_kv_heads, self.kv.page, self.max_seq_len, 1.0 / math.sqrt(q.shape[2]), out,
            scratch=self.scratch, **self.tuning)


def kv_bytes_read(seq_lens, num_kv_heads: int, head_dim: int, itemsize: int) -> int:
    """Bytes of K and V one decode step must read: every cached token once."""
    return int(seq_lens.sum()) * 2 * num_kv_heads * head_dim * itemsize
