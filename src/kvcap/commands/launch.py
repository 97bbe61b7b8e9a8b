"""kvcap launch MODEL --device D --engine E [options]: the command line that starts the engine as planned."""

from __future__ import annotations

import argparse
import sys

from . import common
from . import plan as plan_command

HELP = "print the command line that starts an engine with the planned configuration"


def add_arguments(p: argparse.ArgumentParser) -> None:
    plan_command.add_arguments(p)     # the plan's flags (and its --model-ref: the path or id to load)


def run(args: argparse.Namespace) -> int:
    from .. import plan as make_plan
    from ..launch import launch

    model = common.model_from_args(args)
    device = common.device_from_args(args)
    p = make_plan(model, device, engine=args.engine, **plan_command.options_from_args(args))
    if not p.fits:
        print(f"kvcap: the plan does not fit: {p.binding.reason}", file=sys.stderr)
        return 1
    lt = launch(p, args.model_ref)
    if args.json:
        common.emit_json(lt.to_json())
    else:
        print(lt.text())
    return 0
