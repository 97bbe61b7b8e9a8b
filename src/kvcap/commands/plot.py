"""kvcap plot MODEL [--device D…] [--engine E…] --out FILE.png|.svg: KV capacity against memory.

Each engine × device is one line: the engine's own plan rerun with the device's memory swept
(report/plot.py `sweep`); caps it runs into are dashed lines, MLX's "fits but pages" band is
shaded, and each device's own point is marked.
"""

from __future__ import annotations

import argparse
import sys

from . import common
from .plan import OPTION_FLAGS, options_from_args

HELP = "plot KV capacity against device memory for one or more engines and devices (matplotlib)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..report.plot import DEFAULT_POINTS, MAX_POINTS
    common.add_model(p)
    g = p.add_argument_group("devices")
    g.add_argument("--device", "-d", action="append", default=[], help="catalog device (repeatable)")
    g.add_argument("--backend", help="with --memory: a custom device besides the catalog ones")
    g.add_argument("--memory", help="memory of the custom device, e.g. 24GiB")
    g.add_argument("--macos", type=int, choices=(13, 14, 15, 26), help="macOS major for the Apple working-set rule")
    g.add_argument("--count", type=int, default=1, help="identical devices on the host (default 1)")
    p.add_argument("--engine", "-e", action="append", default=[], help="engine (repeatable; default mlc)")
    o = p.add_argument_group("engine options (each goes to the engines that have it)")
    for flag, (dest, typ, text) in OPTION_FLAGS.items():
        o.add_argument(flag, dest=f"opt_{dest}", type=typ, help=text)
    o.add_argument("--no-cap", dest="opt_no_cap", action="store_true", default=None, help="drop the engine's device KV cap")
    common.add_set(p)
    p.add_argument("--out", "-O", required=True, help="output file, .png or .svg")
    p.add_argument("--points", type=int, default=DEFAULT_POINTS, help=f"memories swept (2 to {MAX_POINTS}; default {DEFAULT_POINTS})")
    p.add_argument("--max-memory", help="right end of the memory axis, e.g. 192GiB (default: 2 × the largest device)")
    p.add_argument("--title", default="", help="figure title")
    common.add_json(p)


def _devices(args: argparse.Namespace) -> list:
    from ..device import get_device
    from ..errors import DeviceError
    devs = [get_device(d, macos=args.macos, count=args.count) for d in args.device]
    if args.backend or args.memory:
        devs.append(get_device(None, backend=args.backend, memory=args.memory, count=args.count))
    if not devs:
        raise DeviceError("give at least one --device (see `kvcap devices`), or --backend and --memory")
    return devs


def run(args: argparse.Namespace) -> int:
    from ..engines import get_engine
    from ..errors import OptionsError
    from ..report.plot import figure, memory_grid, options_for, save, sweep
    from ..units import parse_size

    if not args.out.lower().endswith((".png", ".svg")):
        raise OptionsError(f"--out must end in .png or .svg, got {args.out!r}")
    model = common.model_from_args(args)
    devices = _devices(args)
    engines = [getattr(get_engine(e), "NAME", e) for e in (args.engine or ["mlc"])]
    engines = list(dict.fromkeys(engines))
    options = options_from_args(args)
    unused = sorted(set(options) - {k for e in engines for k in options_for(e, options)})
    if unused:
        raise OptionsError(f"no engine plotted has option(s) {', '.join(unused)} ({', '.join(engines)})")
    top = parse_size(args.max_memory, "--max-memory") if args.max_memory else 2 * max(d.memory_bytes for d in devices)
    grid = memory_grid(top, args.points, [d.memory_bytes for d in devices if d.memory_bytes <= top])
    series = [sweep(model, d, e, options_for(e, options), grid) for d in devices for e in engines]
    for s in series:
        if s.error:
            print(f"kvcap plot: {s.label}: not drawn: {s.error}", file=sys.stderr)
    fig = figure(series, args.title or f"KV capacity of {model.name} against device memory")
    save(fig, args.out)
    if args.json:
        common.emit_json({"model": model.name, "out": args.out, "series": [s.to_json() for s in series]})
    else:
        for s in series:
            if s.chosen is not None:
                caps = ", ".join(f"{c.binding} {c.kv_tokens:,}" for c in s.caps) or "none"
                print(f"{s.label}: {s.chosen.kv_tokens:,} tokens at its own memory ({s.chosen.binding}); caps: {caps}")
        print(f"wrote {args.out}")
    return 0
