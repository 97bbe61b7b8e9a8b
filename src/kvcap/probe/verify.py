"""kvcap verify: allocate on the device what a Plan says the engine allocates, run one prefill
chunk and one decode step at the planned batch, and compare measured memory with the plan's
lines; optionally bisect the largest KV capacity that allocates and runs (--find-limit).

Weights are uninitialised tensors (the model's shapes and dtype where the plan prices them so,
else byte tensors in proportion to them); the KV cache is laid out as the engine does it
(verify_layouts.py); each workspace line is one buffer, and the run's own scratch (queries,
outputs, partitions) is carved out of the largest workspace when it fits, so the run adds only
what an engine would also have to find room for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..plan import Plan
from . import verify_layouts as VL
from .kernels import Decoder, PagedKV
from .torchdev import Device, is_oom, require_torch


@dataclass(frozen=True)
class LineCheck:
    name: str
    role: str
    planned: int
    allocated: int | None        # bytes of tensors verify created for the line (None: not allocated)
    reserved: int | None         # growth of the allocator's reserved memory while creating them
    note: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "role": self.role, "planned": self.planned, "allocated": self.allocated,
                "reserved": self.reserved, "note": self.note}


@dataclass
class VerifyResult:
    device: Device
    plan: Plan
    kv: VL.KVShape
    lines: list[LineCheck] = field(default_factory=list)
    baseline_used: int = 0          # device memory in use before verify allocated anything
    planned_total: int = 0          # sum of the lines verify allocates
    peak_allocated: int = 0         # torch: peak bytes in tensors
    peak_reserved: int = 0          # torch: peak bytes held from the device
    peak_device_used: int = 0       # device: peak in use (all processes, context included)
    run_extra: int = 0              # reserved beyond the static allocations during the run
    run_ok: bool = False
    limit_tokens: int | None = None
    limit_trials: list[tuple[int, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def plan_over_limit(self) -> float | None:
        return self.plan.kv_tokens / self.limit_tokens if self.limit_tokens else None

    def to_json(self) -> dict:
        return {"device": {"name": self.device.name, "backend": self.device.backend,
                           "total_memory_bytes": self.device.total_memory_bytes, "detail": self.device.detail},
                "engine": self.plan.engine, "model": self.plan.model.name, "kv_tokens": self.plan.kv_tokens,
                "engine_config": dict(self.plan.engine_config),
                "kv_layout": {"layout": self.kv.layout, "layers": self.kv.num_layers, "pages_per_layer": self.kv.pages,
                              "page": self.kv.page, "bytes": self.kv.total_bytes, "batch": self.kv.batch,
                              "prefill_chunk": self.kv.prefill_chunk, "rule": self.kv.rule},
                "lines": [l.to_json() for l in self.lines], "baseline_used": self.baseline_used,
                "planned_total": self.planned_total, "peak_allocated": self.peak_allocated,
                "peak_reserved": self.peak_reserved, "peak_device_used": self.peak_device_used,
                "run_extra": self.run_extra, "run_ok": self.run_ok, "limit_tokens": self.limit_tokens,
                "plan_over_limit": self.plan_over_limit,
                "limit_trials": [{"tokens": t, "ok": ok} for t, ok in self.limit_trials], "notes": self.notes}


class _Memory:
    """Reserved/allocated bytes and device use, on CUDA exactly and elsewhere as 0."""

    def __init__(self, device: Device):
        self.torch = require_torch()
        self.device = device
        self.cuda = device.type == "cuda"

    def reserved(self) -> int:
        return int(self.torch.cuda.memory_reserved(self.device.torch_device)) if self.cuda else 0

    def allocated(self) -> int:
        return int(self.torch.cuda.memory_allocated(self.device.torch_device)) if self.cuda else 0

    def used(self) -> int:
        if not self.cuda:
            return 0
        free, total = self.torch.cuda.mem_get_info(self.device.torch_device)
        return int(total - free)

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device.torch_device)

    def peaks(self) -> tuple[int, int]:
        if not self.cuda:
            return 0, 0
        d = self.device.torch_device
        return int(self.torch.cuda.max_memory_allocated(d)), int(self.torch.cuda.max_memory_reserved(d))


def _weights(plan: Plan, nbytes: int, dev) -> tuple[list, str]:
    """The model's tensors, uninitialised: in their shapes and dtype when they add up to the
    plan's bytes, else as byte tensors in proportion to their sizes (quantized weights)."""
    torch = require_torch()
    tensors = [t for t in plan.model.tensors if t.numel > 0]
    dtype = getattr(torch, plan.model.dtype, None) if plan.model.dtype in ("float16", "bfloat16", "float32") else None
    itemsize = torch.empty((), dtype=dtype).element_size() if dtype is not None else 0
    if dtype is not None and sum(t.numel for t in tensors) * itemsize == nbytes:
        return [torch.empty(t.shape, dtype=dtype, device=dev) for t in tensors], "model shapes and dtype"
    total = sum(t.numel for t in tensors)
    if not tensors or total == 0:
        return ([torch.empty(nbytes, dtype=torch.uint8, device=dev)] if nbytes else []), "one buffer"
    out, left = [], nbytes
    for i, t in enumerate(tensors):
        size = left if i == len(tensors) - 1 else nbytes * t.numel // total
        left -= size
        if size:
            out.append(torch.empty(size, dtype=torch.uint8, device=dev))
    return out, f"{len(out)} byte tensors in proportion to the model's (priced as the plan prices them)"


def _kv_buffers(shape: VL.KVShape, dev) -> list[PagedKV]:
    """One PagedKV per layer over freshly allocated buffers filled with random data."""
    torch = require_torch()
    layer_elems = shape.layer_bytes // shape.itemsize
    per_buffer = shape.layers_per_buffer
    out = []
    for first in range(0, shape.num_layers, per_buffer):
        n = min(per_buffer, shape.num_layers - first)
        buf = torch.empty(layer_elems * n, dtype=torch.float16, device=dev).normal_()
        for i in range(n):
            view = buf[i * layer_elems:(i + 1) * layer_elems]
            out.append(PagedKV((view,), shape.pages, shape.layout, shape.num_kv_heads, shape.head_dim, shape.page))
    return out


class _Arena:
    """Views carved out of a workspace buffer; a fresh tensor when it is full."""

    def __init__(self, buf):
        self.buf, self.offset, self.outside = buf, 0, 0

    def take(self, shape: tuple[int, ...], dtype, dev):
        torch = require_torch()
        n = 1
        for s in shape:
            n *= s
        size = n * torch.empty((), dtype=dtype).element_size()
        start = -(-self.offset // 256) * 256
        if self.buf is not None and start + size <= self.buf.numel():
            self.offset = start + size
            return self.buf[start:start + size].view(dtype).view(shape)
        self.outside += size
        return torch.empty(shape, dtype=dtype, device=dev)


def _run(plan: Plan, shape: VL.KVShape, layers: list[PagedKV], arena: _Arena, dev) -> None:
    """One prefill chunk (written into the cache, attended causally) and one decode step at the
    planned batch, over every layer, with the probe's kernel."""
    torch = require_torch()
    layer = plan.model.layers[0]
    hq, hk, d = layer.num_q_heads or layer.num_kv_heads, shape.num_kv_heads, shape.head_dim
    total_pages = shape.pages
    capacity = (total_pages - (1 if shape.layout == "mlc" else 0)) * shape.page
    chunk = max(1, min(shape.prefill_chunk, capacity))
    # Prefill: sequence 0 gets the first pages at random; query i reads tokens 0..i.
    n_pages = -(-chunk // shape.page)
    perm = torch.randperm(total_pages, device=dev)
    prefill_table = perm[:n_pages].reshape(1, n_pages).expand(chunk, n_pages)
    prefill_lens = torch.arange(1, chunk + 1, device=dev)
    q = arena.take((chunk, hq, d), torch.float16, dev).normal_()
    out = arena.take((chunk, hq, d), torch.float16, dev)
    pos = torch.arange(chunk, device=dev)
    new_kv = arena.take((chunk, 2, hk, d), torch.float16, dev).normal_()
    # Decode: `batch` sequences sharing the capacity, pages drawn from the whole cache.
    batch = max(1, min(shape.batch, capacity))
    per_seq = max(1, capacity // batch)
    dec_pages = -(-per_seq // shape.page)
    dec_table = perm[: batch * dec_pages].reshape(batch, dec_pages) if batch * dec_pages <= total_pages else \
        torch.randint(0, total_pages, (batch, dec_pages), device=dev)
    dec_lens = torch.full((batch,), per_seq, device=dev)
    dq = arena.take((batch, hq, d), torch.float16, dev).normal_()
    dout = arena.take((batch, hq, d), torch.float16, dev)
    prefill_part = -(-chunk // 64) * 64        # one partition per query row: scratch stays small
    parts = -(-per_seq // 512)
    scratch = arena.take((max(chunk * hq, batch * hq * parts) * (d + 2),), torch.float32, dev)
    for kv in layers:
        view = kv.view(0)
        view[prefill_table[0][pos // shape.page], :, :, pos % shape.page, :] = new_kv
        step = Decoder(kv, prefill_table, prefill_lens, part_tokens=prefill_part)
        if step.kernel == "triton":
            step.scratch = scratch
            step(q, out)
        else:   # the fallback gathers each query's prefix: a few queries at a time
            for i in range(0, chunk, 8):
                rows = slice(i, min(chunk, i + 8))
                Decoder(kv, prefill_table[rows], prefill_lens[rows])(q[rows], out[rows])
        step = Decoder(kv, dec_table, dec_lens)
        step.scratch = scratch if step.kernel == "triton" else None
        step(dq, dout)
    if not bool(torch.isfinite(dout).all()) or not bool(torch.isfinite(out).all()):
        raise RuntimeError("verify's attention produced non-finite values")


_NOT_ALLOCATED = {VL.SUM: "a total of other lines", VL.HOST: "host memory", VL.UNUSED: "left free",
                  VL.NON_TORCH: "outside torch (context, libraries): see device in use"}


def verify(plan: Plan, device: Device, find_limit: bool = False,
           progress: Callable[[int, int, str], None] | None = None) -> VerifyResult:
    torch = require_torch()
    if not plan.fits:
        from ..errors import ProbeError
        raise ProbeError(f"the plan does not fit ({plan.binding.reason}); nothing to verify")
    roles = VL.roles(plan)
    shape = VL.kv_shape(plan)
    mem = _Memory(device)
    dev = device.torch_device
    device.release()
    result = VerifyResult(device, plan, shape, baseline_used=mem.used())
    mem.reset_peak()
    held: dict[str, Any] = {}
    try:
        steps = 3 + (20 if find_limit else 0)
        for name, role in roles.items():
            planned = int(plan.memory[name])
            if role in _NOT_ALLOCATED:
                result.lines.append(LineCheck(name, role, planned, None, None, _NOT_ALLOCATED[role]))
                continue
            before = mem.reserved()
            if role == VL.WEIGHTS:
                tensors, note = _weights(plan, planned, dev)
            elif role == VL.KV:
                tensors, note = [], f"{shape.layout} layout, {shape.rule}"
            else:
                tensors, note = ([torch.empty(planned, dtype=torch.uint8, device=dev)] if planned else []), "one buffer"
            held[name] = tensors
            result.lines.append(LineCheck(name, role, planned, sum(t.numel() * t.element_size() for t in tensors),
                                          mem.reserved() - before, note))
            result.planned_total += planned
        if progress:
            progress(1, steps, "weights and workspaces allocated")
        kv_index = next(i for i, l in enumerate(result.lines) if l.role == VL.KV) if VL.KV in roles.values() else None
        workspaces = [t for n, r in roles.items() if r == VL.WORKSPACE for t in held.get(n, [])]
        arena_buf = max(workspaces, key=lambda t: t.numel(), default=None)

        def attempt(s: VL.KVShape) -> tuple[int, int]:
            """Allocate the KV cache of shape `s`, run; (allocated, reserved growth). Frees it."""
            before = mem.reserved()
            layers = _kv_buffers(s, dev)
            try:
                grown = mem.reserved() - before
                _run(plan, s, layers, _Arena(arena_buf), dev)
                device.synchronize()
                return s.total_bytes, grown
            finally:
                del layers

        static_reserved = mem.reserved()
        try:
            allocated, grown = attempt(shape)
            result.run_ok = True
        except Exception as e:  # noqa: BLE001 - out of memory is a finding, anything else a bug
            if not is_oom(e):
                raise
            allocated = grown = None
            result.notes.append(f"the planned KV cache ({shape.tokens:,} tokens) did not allocate and run: out of memory")
        result.peak_allocated, result.peak_reserved = mem.peaks()
        result.run_extra = max(0, result.peak_reserved - static_reserved - (grown or 0))
        result.peak_device_used = mem.used() - mem.reserved() + result.peak_reserved
        if kv_index is not None:
            line = result.lines[kv_index]
            result.lines[kv_index] = LineCheck(line.name, line.role, line.planned, allocated, grown, line.note)
        device.release()
        if progress:
            progress(3, steps, "planned cache allocated and run")
        if find_limit:
            _find_limit(plan, shape, attempt, device, result, progress, steps)
    finally:
        held.clear()
        device.release()
    return result


def _find_limit(plan: Plan, shape: VL.KVShape, attempt, device: Device, result: VerifyResult,
                progress, steps: int) -> None:
    """Bisect the capacity (in the engine's own steps) whose cache allocates and runs."""
    step = VL.token_step(plan)
    per_token = shape.total_bytes / max(1, shape.tokens)
    if result.run_ok:
        lo = shape.tokens                   # known to work: the planned run passed
        hi = -(-(lo + int(device.free_bytes() / per_token) + 2 * step) // step) * step
    else:
        lo, hi = 0, -(-shape.tokens // step) * step

    def ok(tokens: int) -> bool:
        try:
            attempt(VL.kv_shape(plan, tokens))
            good = True
        except Exception as e:  # noqa: BLE001 - only running out of memory means "too big"
            if not is_oom(e):
                raise
            good = False
        device.release()
        result.limit_trials.append((tokens, good))
        return good

    while result.run_ok and ok(hi):       # free memory can understate what fits
        lo, hi = hi, hi * 2
    done = 3
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if mid <= lo:
            break
        if ok(mid):
            lo = mid
        else:
            hi = mid
        done += 1
        if progress:
            progress(min(done, steps - 1), steps, f"limit between {lo:,} and {hi:,} tokens")
    result.limit_tokens = lo
    if progress:
        progress(steps, steps, "done")
