"""Paged decode attention: the torch fallback and the Triton kernel against a float64 reference."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch is the probe's extra (pip install 'kvcap[probe]')")

from kvcap.probe.kernels import (LAYOUTS, LLAMACPP, MLC, VLLM, Decoder, PagedKV, buffer_elems,  # noqa: E402
                                 decode_torch, kv_bytes_read, layout_strides, reference)

ROOT = Path(__file__).resolve().parents[1]


def pool(layout, pages, chunks, heads, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    bufs = tuple(torch.randn(buffer_elems(pages, heads, 16, dim), generator=g).half() for _ in range(chunks))
    return PagedKV(bufs, pages, layout, heads, dim)


def test_layout_strides_hand_worked():
    # 8 heads, page 16, dim 128; a buffer of 10 pages.
    assert layout_strides(MLC, 10, 8, 16, 128) == (2 * 8 * 16 * 128, 8 * 16 * 128, 16 * 128, 128)
    assert layout_strides(VLLM, 10, 8, 16, 128) == (16 * 8 * 128, 10 * 16 * 8 * 128, 128, 8 * 128)
    assert layout_strides(LLAMACPP, 10, 8, 16, 128) == layout_strides(VLLM, 10, 8, 16, 128)
    with pytest.raises(ValueError):
        layout_strides("other", 1, 1, 16, 16)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_view_places_k_and_v_where_the_engine_does(layout):
    kv = pool(layout, 3, 1, 2, 4)
    flat, view = kv.chunks[0], kv.view(0)
    page, which, head, tok, d = 2, 1, 1, 5, 3
    if layout == MLC:      # [pages, 2, H, 16, D]
        idx = (((page * 2 + which) * 2 + head) * 16 + tok) * 4 + d
    else:                  # [2, pages*16 tokens, H, D]
        idx = ((which * 3 * 16 + page * 16 + tok) * 2 + head) * 4 + d
    assert view[page, which, head, tok, d] == flat[idx]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("chunks", [1, 3])
def test_torch_fallback_matches_float64(layout, chunks):
    ppc = 30 if chunks == 1 else 12
    kv = pool(layout, ppc, chunks, heads=2, dim=32, seed=chunks)
    g = torch.Generator().manual_seed(7)
    lens = torch.tensor([1, 17, 64, 100])
    n = 7
    table = torch.randperm(kv.num_pages, generator=g)[: 4 * n].reshape(4, n)
    q = torch.randn(4, 8, 32, generator=g).half()
    ref = reference(q, kv, table, lens)
    out = decode_torch(q, kv, table, lens)
    assert torch.isfinite(out).all()
    assert float((out.double() - ref).norm() / ref.norm()) < 2e-3
    # Hand check of one output: sequence 0 has one token, so its output is that token's V.
    page0 = int(table[0, 0])
    v0 = kv.view(page0 // ppc)[page0 % ppc, 1, 0, 0].double()
    assert torch.allclose(ref[0, 0], v0, atol=1e-6)
    assert torch.allclose(ref[0, 3], v0, atol=1e-6)     # query head 3 reads KV head 0 (group 4)


def test_decoder_and_bytes_read():
    kv = pool(MLC, 8, 1, heads=2, dim=16)
    lens = torch.tensor([16, 40])
    table = torch.randperm(8)[:6].reshape(2, 3)
    q = torch.randn(2, 4, 16).half()
    out = torch.full_like(q, float("nan"))
    Decoder(kv, table, lens, kernel="auto")(q, out)       # cpu: the fallback
    assert torch.isfinite(out).all()
    # (16 + 40) tokens x K and V x 2 heads x 16 dims x 2 bytes
    assert kv_bytes_read(lens, 2, 16, 2) == 56 * 2 * 2 * 16 * 2
    with pytest.raises(ValueError):
        Decoder(kv, table, torch.tensor([0, 3]))
    with pytest.raises(ValueError):
        Decoder(kv, table, lens, kernel="cuda-magic")


def test_triton_kernel_in_the_interpreter():
    """The Triton kernel, run by Triton's CPU interpreter, against float64: all layouts, chunks,
    GQA groups, a non-power-of-two head dim, ragged lengths, several partitions."""
    pytest.importorskip("triton", reason="triton is the probe's extra on Linux (pip install 'kvcap[probe]')")
    script = r"""
import math, torch
from kvcap.probe.kernels import LAYOUTS, PagedKV, buffer_elems, reference
from kvcap.probe import triton_decode
g = torch.Generator().manual_seed(3)
worst = 0.0
for layout in LAYOUTS:
    for chunks, heads, group, dim in ((1, 2, 4, 32), (3, 1, 2, 48)):
        bufs = tuple(torch.randn(buffer_elems(16, heads, 16, dim), generator=g).half() for _ in range(chunks))
        kv = PagedKV(bufs, 16, layout, heads, dim)
        lens = torch.tensor([1, 33, 80])
        table = torch.randperm(kv.num_pages, generator=g)[:15].reshape(3, 5)
        q = torch.randn(3, heads * group, dim, generator=g).half()
        out = torch.full_like(q, float('nan'))
        _, v_off, s_head, s_tok = kv.strides
        triton_decode.decode(q, kv.chunks[0], kv.page_offsets(table), lens.int(), v_off, s_tok, s_head, heads, 16,
                             80, 1 / math.sqrt(dim), out, block_n=16, part_tokens=32)
        ref = reference(q, kv, table, lens)
        err = float('inf') if torch.isnan(out).any() else float((out.double() - ref).norm() / ref.norm())
        worst = max(worst, err)
print(worst)
assert worst < 2e-3, worst
"""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA/ROCm GPU (CI has none)")
def test_triton_kernel_on_the_gpu():
    dev = torch.device("cuda")
    g = torch.Generator().manual_seed(5)
    for layout in LAYOUTS:
        bufs = tuple(torch.randn(buffer_elems(64, 8, 16, 128), generator=g).half().to(dev) for _ in range(2))
        kv = PagedKV(bufs, 64, layout, 8, 128)
        lens = torch.tensor([1, 500, 1000, 2048], device=dev)
        table = torch.randperm(128, generator=g)[:128].reshape(4, 32).to(dev)
        q = torch.randn(4, 32, 128, generator=g).half().to(dev)
        out = torch.full_like(q, float("nan"))
        Decoder(kv, table, lens, kernel="triton")(q, out)
        ref = reference(q, kv, table, lens)
        assert float((out.double().cpu() - ref).norm() / ref.norm()) < 2e-3
