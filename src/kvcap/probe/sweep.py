"""The probe's sweep: fixed decode work while the KV pool grows, as one buffer and in chunks.

At every pool size the same work is done: `batch` sequences of `tokens_per_seq` tokens, whose
pages (16 tokens, MLC's layout) are drawn at random from the whole pool, so the reads spread
over all of it while their amount stays fixed. A slowdown can then only come from the pool's
size (address translation, residency of large buffers, …), not from more work.

Every size gets a fresh allocation filled with fresh random data (never zeros, which can run
faster), fresh random pages and queries, warm-up steps, then `repeats` timed steps. The smallest
size is measured twice, so the detector knows how much the baseline moves by itself; a size
that looks slow is measured once more before it is believed. An allocation failure stops the
sweep cleanly with what was measured so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..units import GiB, fmt_bytes
from . import cliff
from .kernels import MLC, Decoder, PagedKV, buffer_elems, kv_bytes_read
from .torchdev import Device, is_oom, require_torch


@dataclass(frozen=True)
class Work:
    batch: int = 32
    tokens_per_seq: int = 4096
    num_kv_heads: int = 8
    num_q_heads: int = 32
    head_dim: int = 128
    page: int = 16
    dtype: str = "float16"

    @property
    def itemsize(self) -> int:
        return 4 if self.dtype == "float32" else 2

    @property
    def page_bytes(self) -> int:
        return buffer_elems(1, self.num_kv_heads, self.page, self.head_dim) * self.itemsize

    @property
    def pages_per_seq(self) -> int:
        return -(-self.tokens_per_seq // self.page)

    @property
    def bytes_per_step(self) -> int:
        return self.batch * self.tokens_per_seq * 2 * self.num_kv_heads * self.head_dim * self.itemsize

    def to_json(self) -> dict:
        return {"batch": self.batch, "tokens_per_seq": self.tokens_per_seq, "num_kv_heads": self.num_kv_heads,
                "num_q_heads": self.num_q_heads, "head_dim": self.head_dim, "page": self.page,
                "dtype": self.dtype, "bytes_per_step": self.bytes_per_step}


@dataclass
class LayoutResult:
    layout: str                        # "single" or "chunked"
    chunk_bytes: int | None
    points: list[cliff.Point] = field(default_factory=list)
    verdict: cliff.Verdict | None = None

    def to_json(self, work: Work) -> dict:
        pts = [{"pool_bytes": p.pool_bytes, "step_s": p.step_s, "medians_s": list(p.medians),
                "gbps": work.bytes_per_step / p.step_s / 1e9} for p in self.points]
        return {"chunk_bytes": self.chunk_bytes, "points": pts,
                "verdict": self.verdict.to_json() if self.verdict else None}


@dataclass
class ProbeResult:
    device: Device
    work: Work
    kernel: str
    copy_bandwidth_gbps: float
    layouts: dict[str, LayoutResult]
    stopped: str = ""

    @property
    def kernel_bandwidth_gbps(self) -> float:
        first = next((r for r in self.layouts.values() if r.points), None)
        return self.work.bytes_per_step / first.points[0].step_s / 1e9 if first else 0.0


Progress = Callable[[int, int, str], None]


def _allocate_pool(device: Device, work: Work, pool_bytes: int, chunk_bytes: int | None) -> PagedKV:
    torch = require_torch()
    dtype = getattr(torch, work.dtype)
    pages = pool_bytes // work.page_bytes
    per_chunk = pages if not chunk_bytes else max(1, chunk_bytes // work.page_bytes)
    n_chunks = -(-pages // per_chunk)
    chunks = []
    for _ in range(n_chunks):
        t = torch.empty(buffer_elems(per_chunk, work.num_kv_heads, work.page, work.head_dim),
                        dtype=dtype, device=device.torch_device)
        t.normal_()   # fresh random data in every page, never zeros
        chunks.append(t)
    return PagedKV(tuple(chunks), per_chunk, MLC, work.num_kv_heads, work.head_dim, work.page)


def measure(device: Device, work: Work, pool_bytes: int, chunk_bytes: int | None, kernel: str,
            repeats: int, warmup: int, tuning: dict[str, int] | None = None) -> tuple[float, ...]:
    """One measurement: allocate, fill, draw pages, time `repeats` steps, free (also on failure)."""
    try:
        return _measure(device, work, pool_bytes, chunk_bytes, kernel, repeats, warmup, tuning)
    finally:
        device.release()   # after _measure returned: none of its tensors is referenced any more


def _measure(device: Device, work: Work, pool_bytes: int, chunk_bytes: int | None, kernel: str,
             repeats: int, warmup: int, tuning: dict[str, int] | None) -> tuple[float, ...]:
    torch = require_torch()
    kv = _allocate_pool(device, work, pool_bytes, chunk_bytes)
    need = work.batch * work.pages_per_seq
    if kv.num_pages < need:
        raise ValueError(f"pool of {fmt_bytes(pool_bytes)} holds {kv.num_pages} pages; the work reads {need}")
    dev = device.torch_device
    # Distinct random pages anywhere in the pool (a permutation's head: no page read twice).
    page_table = torch.randperm(kv.num_pages, device=dev)[:need].reshape(work.batch, work.pages_per_seq)
    seq_lens = torch.full((work.batch,), work.tokens_per_seq, dtype=torch.int64, device=dev)
    q = torch.randn(work.batch, work.num_q_heads, work.head_dim, dtype=getattr(torch, work.dtype), device=dev)
    out = torch.empty_like(q)
    step = Decoder(kv, page_table, seq_lens, kernel=kernel, **(tuning or {}))
    return tuple(device.time_steps(lambda: step(q, out), repeats, warmup))


def run(device: Device, work: Work, sizes: list[int], layouts: dict[str, int | None], kernel: str,
        repeats: int = 50, warmup: int = 5, tolerance: float = cliff.DEFAULT_TOLERANCE,
        progress: Progress | None = None, copy_bytes: int = GiB) -> ProbeResult:
    """Measure every size under every layout ({name: chunk bytes or None}); stop a layout at
    the first size that does not fit (checked against free memory first, then by catching the
    allocation failure), keeping what was measured."""
    from .kernels import triton_available
    from .torchdev import copy_bandwidth
    if kernel == "auto":
        kernel = "triton" if triton_available(device.torch_device) else "torch"
    stopped: list[str] = []
    copy = 0.0
    try:
        if sizes and sizes[0] + _HEADROOM > device.free_bytes():
            copy_bytes = 0          # nothing will fit: do not spend time on the copy either
        if copy_bytes:
            copy = copy_bandwidth(device, min(copy_bytes, max(2, device.free_bytes() // 4)))
    except Exception as e:  # noqa: BLE001 - an allocation failure is reported, anything else raised
        if not is_oom(e):
            raise
        device.release()
        stopped.append("copy bandwidth not measured (out of memory)")
    results: dict[str, LayoutResult] = {}
    steps, done = len(layouts) * (len(sizes) + 1), 0
    for name, chunk in layouts.items():
        res = results[name] = LayoutResult(name, chunk)
        for i, size in enumerate(sizes):
            measured: list[tuple[float, ...]] = []
            free = device.free_bytes()
            if size + _HEADROOM > free:
                stopped.append(f"{name}: a pool of {fmt_bytes(size)} is larger than free memory "
                               f"({fmt_bytes(free)}); stopped there")
                break
            try:
                for _ in range(2 if i == 0 else 1):   # the baseline twice: its own noise
                    if progress:
                        progress(done, steps, f"{name} {fmt_bytes(size)}")
                    measured.append(measure(device, work, size, chunk, kernel, repeats, warmup))
                    done += 1
                if res.points and cliff.detect(res.points + [cliff.Point(size, tuple(measured))],
                                               tolerance).cliff_bytes == size:
                    measured.append(measure(device, work, size, chunk, kernel, repeats, warmup))
            except Exception as e:  # noqa: BLE001
                if not is_oom(e):
                    raise
                device.release()
                stopped.append(f"{name}: out of memory at a pool of {fmt_bytes(size)}; stopped there")
                if measured:
                    res.points.append(cliff.Point(size, tuple(measured)))
                break
            res.points.append(cliff.Point(size, tuple(measured)))
        if res.points:
            res.verdict = cliff.detect(res.points, tolerance)
    if progress:
        progress(steps, steps, "done")
    return ProbeResult(device, work, kernel, copy, results, "; ".join(stopped))


# Room left beside the pool for the page table, queries and the kernel's scratch.
_HEADROOM = 256 * 1024 * 1024


def to_document(result: ProbeResult, command: str, date: str, tolerance: float) -> dict[str, Any]:
    """The calibration document (calibration.py documents its fields)."""
    from .calibration import FORMAT
    d = result.device
    return {
        "kvcap_calibration": FORMAT,
        "date": date,
        "command": command,
        "device": {"name": d.name, "backend": d.backend, "torch_device": str(d.torch_device),
                   "total_memory_bytes": d.total_memory_bytes, "detail": d.detail},
        "kernel": result.kernel,
        "copy_bandwidth_gbps": result.copy_bandwidth_gbps,
        "kernel_bandwidth_gbps": result.kernel_bandwidth_gbps,
        "tolerance": tolerance,
        "work": result.work.to_json(),
        "layouts": {name: r.to_json(result.work) for name, r in result.layouts.items()},
        "stopped": result.stopped,
    }
