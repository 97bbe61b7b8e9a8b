"""The probe's Triton decode kernel on a GPU: correctness, tuning, fraction of copy bandwidth.

    PYTHONPATH=src python3 benchmarks/probe_kernel.py [--json FILE] [--quick]

1. Copy bandwidth: bytes read + written by a device-to-device copy of 1 and 4 GiB (median).
2. Correctness: the Triton kernel and the torch fallback against a float64 reference on fresh
   random inputs, for the MLC, vLLM and llama.cpp layouts, one buffer and chunks, GQA groups
   1/4/8, head dims 64/96/128/256, ragged lengths; outputs poisoned with NaN first, so an
   unwritten element fails.
3. Speed: the probe's work (32 x 4096 tokens, 8 KV heads x 128, fp16, random 16-token pages in
   a 4 GiB pool) under several tunings, plus other batch shapes and the torch fallback; KV bytes
   read per second against the copy bandwidth.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys

import torch

from kvcap.probe import kernels, torchdev
from kvcap.probe.kernels import LAYOUTS, Decoder, PagedKV, buffer_elems


def make_pool(layout, pages_per_chunk, chunks, heads, dim, dtype, dev, page=16):
    bufs = tuple(torch.empty(buffer_elems(pages_per_chunk, heads, page, dim), dtype=dtype, device=dev).normal_()
                 for _ in range(chunks))
    return PagedKV(bufs, pages_per_chunk, layout, heads, dim, page)


def check(dev, rows):
    worst = 0.0
    g = torch.Generator(device="cpu").manual_seed(1234)
    cases = []
    for layout in LAYOUTS:
        for chunks in (1, 3):
            for heads, group, dim in ((8, 4, 128), (4, 1, 64), (2, 8, 128), (4, 2, 96), (2, 4, 256)):
                cases.append((layout, chunks, heads, group, dim))
    for layout, chunks, heads, group, dim in cases:
        kv = make_pool(layout, 96, chunks, heads, dim, torch.float16, dev)
        batch = 5
        lens = torch.randint(1, 16 * 16 if chunks == 1 else 40 * 16, (batch,), generator=g)
        lens[0] = 1
        n = int(math.ceil(int(lens.max()) / 16))
        table = torch.randperm(kv.num_pages, generator=g)[: batch * n].reshape(batch, n).to(dev)
        q = torch.randn(batch, heads * group, dim, generator=g).to(dev, torch.float16)
        ref = kernels.reference(q, kv, table, lens.to(dev))
        for kernel, tuning in (("triton", {"part_tokens": 128, "block_n": 32}), ("triton", {}), ("torch", {})):
            out = torch.full_like(q, float("nan"))
            Decoder(kv, table, lens.to(dev), kernel=kernel, **tuning)(q, out)
            torch.cuda.synchronize()
            o = out.double().cpu()
            err = float("inf") if torch.isnan(o).any() else float((o - ref).norm() / ref.norm())
            worst = max(worst, err) if kernel == "triton" else worst
            rows.append({"layout": layout, "chunks": chunks, "kv_heads": heads, "group": group, "head_dim": dim,
                         "kernel": kernel, "tuning": tuning, "rel_err": err})
    return worst


def speed(dev, batch, tokens, pool_bytes, tuning, kernel="triton", heads=8, group=4, dim=128, repeats=100):
    device = torchdev.open_device(str(dev))
    page_bytes = buffer_elems(1, heads, 16, dim) * 2
    kv = make_pool("mlc", pool_bytes // page_bytes, 1, heads, dim, torch.float16, dev)
    n = tokens // 16
    table = torch.randperm(kv.num_pages, device=dev)[: batch * n].reshape(batch, n)
    lens = torch.full((batch,), tokens, device=dev)
    q = torch.randn(batch, heads * group, dim, device=dev, dtype=torch.float16)
    out = torch.empty_like(q)
    step = Decoder(kv, table, lens, kernel=kernel, **tuning)
    times = device.time_steps(lambda: step(q, out), repeats, 10)
    again = device.time_steps(lambda: step(q, out), repeats, 0)
    read = kernels.kv_bytes_read(lens, heads, dim, 2)
    del kv
    device.release()
    t1, t2 = statistics.median(times), statistics.median(again)
    return {"batch": batch, "tokens": tokens, "kernel": kernel, "tuning": tuning, "step_s": min(t1, t2),
            "step_s_runs": [t1, t2], "bytes": read, "gbps": read / min(t1, t2) / 1e9}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    dev = torch.device("cuda", 0)
    device = torchdev.open_device("cuda:0")
    import triton
    info = {"device": device.name, "detail": device.detail, "total_memory_bytes": device.total_memory_bytes,
            "torch": torch.__version__, "triton": triton.__version__}
    print(json.dumps(info), flush=True)
    copies = {gib: torchdev.copy_bandwidth(device, gib << 30) for gib in (1, 4)}
    copy = max(copies.values())
    print(f"copy bandwidth: " + ", ".join(f"{g} GiB {v:,.0f} GB/s" for g, v in copies.items()), flush=True)

    rows: list[dict] = []
    worst = check(dev, rows)
    bad = [r for r in rows if not r["rel_err"] < 1e-2]
    print(f"correctness: {len(rows)} cases, worst triton rel err {worst:.2e}, failures {len(bad)}", flush=True)
    for r in bad[:10]:
        print("  FAIL", r)

    tunings = [{}] if args.quick else [
        {"block_n": 64, "part_tokens": 512, "num_warps": 4, "num_stages": 2},
        {"block_n": 64, "part_tokens": 256, "num_warps": 4, "num_stages": 2},
        {"block_n": 64, "part_tokens": 1024, "num_warps": 4, "num_stages": 2},
        {"block_n": 32, "part_tokens": 512, "num_warps": 4, "num_stages": 2},
        {"block_n": 128, "part_tokens": 512, "num_warps": 4, "num_stages": 2},
        {"block_n": 128, "part_tokens": 512, "num_warps": 8, "num_stages": 2},
        {"block_n": 64, "part_tokens": 512, "num_warps": 4, "num_stages": 3},
        {"block_n": 64, "part_tokens": 512, "num_warps": 2, "num_stages": 3},
        {"block_n": 128, "part_tokens": 1024, "num_warps": 8, "num_stages": 3},
        {"block_n": 32, "part_tokens": 256, "num_warps": 2, "num_stages": 4},
        {"block_n": 64, "part_tokens": 256, "num_warps": 4, "num_stages": 4},
        {"block_n": 128, "part_tokens": 256, "num_warps": 4, "num_stages": 3},
    ]
    speeds = [speed(dev, 32, 4096, 4 << 30, t) for t in tunings]
    best = max(speeds, key=lambda r: r["gbps"])
    shapes = [speed(dev, b, l, 4 << 30, best["tuning"]) for b, l in ((8, 16384), (128, 1024), (64, 4096), (256, 512))]
    shapes += [speed(dev, b, l, 4 << 30, {}) for b, l in ((8, 16384), (128, 1024), (64, 4096), (256, 512))]
    fallback = speed(dev, 32, 4096, 4 << 30, {}, kernel="torch", repeats=20)
    print(f"\n{'kernel':<8}{'B':>5}{'L':>7}  {'tuning':<60}{'step':>10}{'GB/s':>8}{'of copy':>9}")
    for r in speeds + shapes + [fallback]:
        print(f"{r['kernel']:<8}{r['batch']:>5}{r['tokens']:>7}  {json.dumps(r['tuning']):<60}"
              f"{r['step_s'] * 1e6:8.1f}us{r['gbps']:8.0f}{r['gbps'] / copy:9.1%}")
    print(f"\nbest: {json.dumps(best['tuning'])} {best['gbps']:,.0f} GB/s = {best['gbps'] / copy:.1%} of copy {copy:,.0f} GB/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "copy_gbps": copies, "correctness": rows, "speeds": speeds, "shapes": shapes,
                       "fallback": fallback, "best": best}, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
