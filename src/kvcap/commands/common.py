"""Arguments shared by several commands: the model, the device, engine options, --json."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import OptionsError


def add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="catalog name (see `kvcap models`), HF id, config.json, .gguf file, or a model folder")
    p.add_argument("--offline", action="store_true",
                   help="never fetch from the Hugging Face Hub (also: HF_HUB_OFFLINE=1)")


def model_from_args(args: argparse.Namespace):
    from ..model import load_model
    return load_model(args.model, offline=True if getattr(args, "offline", False) else None)


def add_device(p: argparse.ArgumentParser, required: bool = False) -> None:
    g = p.add_argument_group("device")
    g.add_argument("--device", "-d", help="catalog device (see `kvcap devices`)")
    g.add_argument("--backend", help="cuda, rocm, metal, vulkan, opencl, webgpu or cpu (with --memory: a custom device)")
    g.add_argument("--memory", help="memory as the backend reports it, e.g. 24GiB; on Metal the working set")
    g.add_argument("--macos", type=int, choices=(13, 14, 15, 26), help="macOS major for the Apple working-set rule (default: newest)")
    g.add_argument("--wired-limit-mb", type=int, help="models `sysctl iogpu.wired_limit_mb=N` on a Mac")
    g.add_argument("--count", type=int, default=1, help="identical devices on the host (default 1)")


def device_from_args(args: argparse.Namespace):
    from ..device import get_device
    return get_device(args.device, backend=args.backend, memory=args.memory, macos=args.macos,
                      wired_limit_mb=args.wired_limit_mb, count=args.count)


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", "-o", action="append", default=[], metavar="NAME=VALUE",
                   help="any engine option by the engine's own name (repeatable)")


def parse_value(text: str) -> Any:
    """'8192' -> 8192, '0.9' -> 0.9, 'true' -> True, else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def set_options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise OptionsError(f"--set expects NAME=VALUE, got {pair!r}")
        out[name.strip().replace("-", "_")] = parse_value(value.strip())
    return out


def emit_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
