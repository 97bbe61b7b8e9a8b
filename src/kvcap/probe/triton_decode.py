"""A Triton paged decode-attention kernel (CUDA and ROCm), split over the sequence.

Decode reads every cached token of every sequence once and does little arithmetic per byte,
so its speed is the memory bandwidth it reaches. To keep enough loads in flight, each program
owns one (sequence, KV head, partition of the sequence) and all the query heads of that KV head
(GQA), like the split-KV "flash decoding" kernels of vLLM (`attention/ops/triton_decode_attention.py`)
and FlashInfer; a second small kernel merges the partitions with their log-sum-exp.

Pages are reached through a table of element offsets (int64), computed on the host from the
page ids, so one kernel serves one pool buffer, a pool split in chunks (offsets relative to the
first chunk), and the engines' layouts (MLC [pages, 2, H, 16, D], vLLM [2, blocks, 16, H, D],
llama.cpp K and V [tokens, H*D]) through `stride_tok`, `stride_head` and `v_off`.

Importing this module imports triton: import it lazily.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _decode_partial(
    Q, KV, PAGE_OFF, SEQ_LENS, M_OUT, L_OUT, ACC_OUT,
    v_off, stride_tok, stride_head, stride_pt, num_parts, sm_scale,
    NUM_Q_HEADS: tl.constexpr, GROUP: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr, PART_TOKENS: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    part = tl.program_id(2)
    seq_len = tl.load(SEQ_LENS + b)
    start = part * PART_TOKENS
    n_tok = tl.minimum(seq_len - start, PART_TOKENS)

    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    d_mask = d < HEAD_DIM
    heads = h * GROUP + g
    g_mask = g < GROUP
    out_row = (b * NUM_Q_HEADS + heads) * num_parts + part
    # A partition past this sequence's end runs no iteration and stores an empty softmax
    # (m = -inf, l = 0), which the merge weighs 0.
    gd_mask = g_mask[:, None] & d_mask[None, :]
    q = tl.load(Q + (b * NUM_Q_HEADS + heads)[:, None] * HEAD_DIM + d[None, :], mask=gd_mask, other=0.0)
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    n = tl.arange(0, BLOCK_N)
    head_off = h.to(tl.int64) * stride_head
    for blk in range(0, n_tok, BLOCK_N):
        pos = start + blk + n                       # token positions in the sequence
        valid = pos < seq_len
        page_off = tl.load(PAGE_OFF + b.to(tl.int64) * stride_pt + pos // PAGE, mask=valid, other=0)
        # Every page offset is a multiple of 16 elements (pages of 16 tokens; chunk bases 512-byte
        # aligned): saying so lets Triton load 16 bytes per thread along the head dim.
        page_off = tl.multiple_of(page_off, 16)
        tok_off = page_off + head_off + (pos % PAGE).to(tl.int64) * stride_tok
        nd_mask = valid[:, None] & d_mask[None, :]
        k = tl.load(KV + tok_off[:, None] + d[None, :], mask=nd_mask, other=0.0)
        v = tl.load(KV + v_off + tok_off[:, None] + d[None, :], mask=nd_mask, other=0.0)
        s = tl.dot(q, tl.trans(k)) * sm_scale                        # [BLOCK_G, BLOCK_N]
        s = tl.where(valid[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    tl.store(M_OUT + out_row, m_i, mask=g_mask)
    tl.store(L_OUT + out_row, l_i, mask=g_mask)
    tl.store(ACC_OUT + out_row[:, None] * HEAD_DIM + d[None, :], acc, mask=gd_mask)


@triton.jit
def _decode_merge(M_IN, L_IN, ACC_IN, OUT, num_parts,
                  HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_P: tl.constexpr):
    row = tl.program_id(0)                           # one (sequence, query head)
    p = tl.arange(0, BLOCK_P)
    d = tl.arange(0, BLOCK_D)
    d_mask = d < HEAD_DIM
    p_mask = p < num_parts
    m = tl.load(M_IN + row * num_parts + p, mask=p_mask, other=float("-inf"))
    l = tl.load(L_IN + row * num_parts + p, mask=p_mask, other=0.0)
    m_max = tl.max(m, 0)
    w = tl.where(p_mask & (l > 0), tl.exp(m - m_max), 0.0)
    acc = tl.load(ACC_IN + (row * num_parts + p)[:, None] * HEAD_DIM + d[None, :], mask=p_mask[:, None] & d_mask[None, :], other=0.0)
    out = tl.sum(acc * w[:, None], 0) / tl.sum(l * w, 0)
    tl.store(OUT + row * HEAD_DIM + d, out.to(OUT.dtype.element_ty), mask=d_mask)


def decode(q, kv_base, page_off, seq_lens, v_off: int, stride_tok: int, stride_head: int,
           num_kv_heads: int, page: int, max_seq_len: int, sm_scale: float, out, scratch=None,
           block_n: int = 64, part_tokens: int = 512, num_warps: int = 2, num_stages: int = 3):
    """Launch the two kernels. `q`, `out`: [B, Hq, D]; `page_off`: [B, pages] int64 element
    offsets from `kv_base`; `scratch`: optional float32 tensor reused for the partitions.

    The default tuning was the fastest of twelve on an H200 (benchmarks/probe_kernel.py,
    benchmarks/results/probe.md): 92 % of the copy bandwidth for 32 x 4096 tokens."""
    import torch

    batch, num_q_heads, head_dim = q.shape
    group = num_q_heads // num_kv_heads
    num_parts = triton.cdiv(max_seq_len, part_tokens)
    rows = batch * num_q_heads * num_parts
    need = rows * (head_dim + 2)
    if scratch is None or scratch.numel() < need:
        scratch = torch.empty(need, dtype=torch.float32, device=q.device)
    m_buf, l_buf, acc_buf = scratch[:rows], scratch[rows:2 * rows], scratch[2 * rows:need]
    _decode_partial[(batch, num_kv_heads, num_parts)](
        q, kv_base, page_off, seq_lens, m_buf, l_buf, acc_buf,
        v_off, stride_tok, stride_head, page_off.stride(0), num_parts, sm_scale,
        NUM_Q_HEADS=num_q_heads, GROUP=group, BLOCK_G=max(16, triton.next_power_of_2(group)),
        HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)), PAGE=page, BLOCK_N=block_n, PART_TOKENS=part_tokens,
        num_warps=num_warps, num_stages=num_stages,
    )
    _decode_merge[(batch * num_q_heads,)](
        m_buf, l_buf, acc_buf, out, num_parts,
        HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)), BLOCK_P=max(2, triton.next_power_of_2(num_parts)), num_warps=4,
    )
    return out
