"""kvcap probe: measure on this device whether decode slows down as the KV pool grows."""

from __future__ import annotations

import argparse
import datetime
import sys

from . import common

HELP = "measure the large-buffer cliff on this device (needs kvcap[probe]: torch, triton)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", "-d", default="auto", help="cuda[:N], mps, xpu[:N], cpu (default: the first accelerator)")
    p.add_argument("--max-pool", help="largest pool, e.g. 60GiB (default: free memory less 1 GiB)")
    p.add_argument("--min-pool", help="smallest pool, the baseline (default: 2x the bytes one step reads, at least 64 MiB)")
    p.add_argument("--factor", type=float, default=2.0, help="growth between pool sizes (default 2)")
    p.add_argument("--layout", choices=("single", "chunked", "both"), default="both",
                   help="the pool as one buffer, split in chunks, or both (default)")
    p.add_argument("--chunk", default="1GiB", help="chunk size of the chunked layout (default 1GiB)")
    p.add_argument("--model", "-m", help="recommend a cap in tokens for this model (and use its KV geometry)")
    p.add_argument("--batch", type=int, default=32, help="sequences per step (default 32)")
    p.add_argument("--tokens", default="4096", help="tokens per sequence read each step (default 4096)")
    p.add_argument("--repeats", type=int, default=50, help="timed steps per size (median taken; default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--tolerance", type=float, default=0.10, help="slowdown beyond noise that counts as a cliff (default 0.10)")
    p.add_argument("--kernel", choices=("auto", "triton", "torch"), default="auto",
                   help="decode kernel: triton on CUDA/ROCm, torch elsewhere (default auto)")
    p.add_argument("--out", help="calibration file to write (default ~/.config/kvcap/calibration-<device>.json)")
    p.add_argument("--no-save", action="store_true", help="write no calibration file")
    p.add_argument("--plot", help="save a plot of the curves (PNG; needs matplotlib)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    common.add_json(p)


def _work(args: argparse.Namespace, model):
    from ..errors import OptionsError
    from ..probe.sweep import Work
    from ..units import parse_count
    if args.batch < 1:
        raise OptionsError(f"--batch must be at least 1, got {args.batch}")
    tokens = parse_count(args.tokens, "--tokens")
    if model is None:
        return Work(batch=args.batch, tokens_per_seq=tokens)
    layers = model.kv_layers
    first = layers[0] if layers else None
    if first is None or first.head_dim_k != first.head_dim_v or not first.num_kv_heads:
        raise OptionsError(f"{model.name}: the probe's kernel needs K and V of one head dim; "
                           "run without --model for the default geometry")
    return Work(batch=args.batch, tokens_per_seq=tokens, num_kv_heads=first.num_kv_heads,
                num_q_heads=first.num_q_heads or first.num_kv_heads, head_dim=first.head_dim_k)


def run(args: argparse.Namespace) -> int:
    from ..errors import OptionsError, ProbeError
    from ..probe import torchdev   # light; torch itself is imported by require_torch
    from ..units import GiB, MiB, fmt_bytes, parse_size

    model = None
    if args.model:
        from ..model import load_model
        model = load_model(args.model)
    work = _work(args, model)
    if not 0 <= args.tolerance < 10 or args.factor <= 1 or args.repeats < 3 or args.warmup < 0:
        raise OptionsError("need 0 <= --tolerance < 10, --factor > 1, --repeats >= 3, --warmup >= 0")
    torchdev.require_torch()
    from ..probe import calibration, cliff, report, sweep
    from ..probe.progress import Bar

    device = torchdev.open_device(args.device)
    free = device.free_bytes()
    max_pool = parse_size(args.max_pool, "--max-pool") if args.max_pool else max(0, free - GiB)
    min_pool = parse_size(args.min_pool, "--min-pool") if args.min_pool else max(64 * MiB, 2 * work.bytes_per_step)
    min_pool = max(min_pool, work.batch * work.pages_per_seq * work.page_bytes)
    if max_pool < min_pool:
        raise ProbeError(f"{device.name}: {fmt_bytes(free)} free; the probe needs a pool of at least "
                         f"{fmt_bytes(min_pool)} (try a smaller --batch or --tokens)")
    chunk = parse_size(args.chunk, "--chunk")
    sizes = cliff.geometric_sizes(min_pool, max_pool, args.factor, align=work.page_bytes)
    if args.layout != "single":
        # Whole chunks where a pool holds at least one, so both layouts measure the same sizes.
        sizes = sorted({s // chunk * chunk if s >= chunk else s for s in sizes})
    layouts = {"single": None, "chunked": chunk} if args.layout == "both" else {args.layout: None if args.layout == "single" else chunk}
    bar = Bar(enabled=not args.quiet)
    result = sweep.run(device, work, sizes, layouts, args.kernel, repeats=args.repeats, warmup=args.warmup,
                       tolerance=args.tolerance, progress=bar, copy_bytes=min(GiB, max(64 * MiB, min_pool)))
    if not any(r.points for r in result.layouts.values()):
        raise ProbeError(f"nothing measured on {device.name}: {result.stopped or 'no pool fitted'}")
    command = "kvcap probe " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["probe"] else sys.argv[1:])
    doc = sweep.to_document(result, command, datetime.date.today().isoformat(), args.tolerance)
    saved = ""
    if not args.no_save and "single" in result.layouts and result.layouts["single"].verdict:
        saved = str(calibration.save_calibration(doc, args.out or calibration.default_path(device.name)))
    rec = report.recommend(doc, model) if model is not None and "single" in doc["layouts"] and doc["layouts"]["single"]["verdict"] else None
    if args.plot:
        report.plot(doc, args.plot)
    if args.json:
        common.emit_json({**doc, "recommendation": rec.to_json() if rec else None, "calibration_file": saved})
    else:
        print(report.render(doc, rec, saved))
    return 0
