"""kvcap verify MODEL --engine E: allocate what the plan says on this device, run, compare."""

from __future__ import annotations

import argparse

from . import common
from .plan import OPTION_FLAGS, options_from_args

HELP = "check a plan on this device by allocating it and running a step (needs kvcap[probe])"


def add_arguments(p: argparse.ArgumentParser) -> None:
    common.add_model(p)
    p.add_argument("--engine", "-e", required=True, help="mlc, vllm or llamacpp")
    p.add_argument("--device", "-d", default="auto", help="cuda[:N], mps, xpu[:N], cpu (default: the first accelerator)")
    p.add_argument("--memory", help="plan for this much device memory instead of the device's total (e.g. 2GiB)")
    p.add_argument("--find-limit", action="store_true",
                   help="bisect the largest KV capacity that allocates and runs; report plan / limit")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    g = p.add_argument_group("engine options (as for `kvcap plan`)")
    for flag, (dest, typ, text) in OPTION_FLAGS.items():
        g.add_argument(flag, dest=f"opt_{dest}", type=typ, help=text)
    common.add_set(p)
    common.add_json(p)


def local_device_spec(device, memory: str | None = None):
    """The probe's device as a DeviceSpec a policy can plan for: the memory its backend reports."""
    from ..device.spec import DeviceSpec
    from ..units import parse_size
    size = parse_size(memory, "--memory") if memory else device.total_memory_bytes
    source = "given with --memory" if memory else f"torch ({device.torch_device}) total memory"
    return DeviceSpec(name=device.name, backend=device.backend if device.backend != "xpu" else "cpu",
                      memory_bytes=size, memory_source=source, kind="gpu" if device.type != "cpu" else "cpu")


def run(args: argparse.Namespace) -> int:
    from .. import plan as make_plan
    from ..probe import torchdev

    model = common.model_from_args(args)
    options = options_from_args(args)
    torchdev.require_torch()
    from ..probe.progress import Bar
    from ..probe.verify import verify
    from ..probe.verify_report import render

    device = torchdev.open_device(args.device)
    plan = make_plan(model, local_device_spec(device, args.memory), engine=args.engine, **options)
    result = verify(plan, device, find_limit=args.find_limit, progress=Bar(enabled=not args.quiet))
    if args.json:
        common.emit_json(result.to_json())
    else:
        print(render(result))
    return 0 if result.run_ok else 1
