"""Random command lines for every kvcap command, built from the parser itself (so a new flag
is fuzzed the day it lands): each flag present or not, each value drawn from a pool that fits
its name (devices, sizes, token counts, engines, options) or from junk.

`probe`, `verify` and `web` are left out: the first two run kernels on a device (torch), the
last one serves HTTP until stopped; the web engineer fuzzes its request handling.
"""

from __future__ import annotations

import argparse
import random
from functools import lru_cache

from . import world as w

SKIP = frozenset({"probe", "verify", "web"})
# How often a flag is given: the device almost always (most commands need one), the engine
# often, any other flag now and then (so most command lines stay plausible).
USUAL = {"device": 0.9, "devices": 0.6, "engine": 0.6, "context": 0.5, "json": 0.3}


@lru_cache(maxsize=1)
def commands() -> dict[str, argparse.ArgumentParser]:
    from kvcap.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p for name, p in sub.choices.items() if name not in SKIP}


def _value(rng: random.Random, world: w.World, dest: str, action: argparse.Action) -> str:
    dest = dest.removeprefix("opt_")
    if action.choices and rng.random() < 0.85:
        return str(rng.choice(list(action.choices)))
    if rng.random() < 0.05:
        return w.value(rng)
    if dest in ("device", "devices"):
        return rng.choice(w.device_keys()) if rng.random() < 0.9 else rng.choice(w.JUNK + ("local", "m2", "a100"))
    if dest == "backend":
        return w.pick(rng, w.BACKEND_NAMES, 7)
    if dest in ("memory", "max_memory", "temp_buffer_bytes"):
        return w.pick(rng, w.SIZES)
    if dest == "engine":
        return w.pick(rng, w.ENGINE_NAMES, 6)
    if dest in ("context", "tokens", "max_total_sequence_length", "max_model_len", "n_ctx", "cap"):
        return w.pick(rng, w.TOKENS) if action.type is not int else w.pick(rng, w.INTS)
    if dest == "set":
        name = rng.choice(w.option_names()) if rng.random() < 0.85 else rng.choice(("", "x", "a-b", "=", "mode "))
        return f"{name}={w.value(rng)}" if rng.random() < 0.95 else name
    if dest in ("quant", "quantization"):
        return w.pick(rng, w.QUANTS)
    if dest in ("kv_dtype", "kv_cache_dtype"):
        return w.pick(rng, w.KV_DTYPES)
    if dest == "mode":
        return rng.choice(("local", "interactive", "server", "Server", "batch", ""))
    if dest == "out":
        return world.out_file(rng)
    if dest == "calibration":
        return world.calibration_file(rng)
    if dest == "files":
        return str(world.case_file(rng))
    if dest == "model":
        return world.model_arg(rng)
    if dest in ("family", "vendor"):
        return rng.choice(("llama", "qwen", "gemma", "deepseek", "mistral", "apple", "nvidia", "amd", "x", ""))
    if action.type is int:
        return w.pick(rng, w.INTS)
    if action.type is float:
        return w.pick(rng, w.FLOATS, 3)
    return w.value(rng)


def argv(rng: random.Random, world: w.World, command: str | None = None) -> list[str]:
    """One random command line (without the program name)."""
    name = command or rng.choice(sorted(commands()))
    parser = commands()[name]
    out: list[str] = [name]
    flags: list[list[str]] = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            if rng.random() < 0.01:
                flags.append([action.option_strings[0]])
            continue
        if not action.option_strings:                         # a positional
            n = rng.randint(1, 3) if action.nargs in ("+", "*") else 1
            if rng.random() < 0.03:
                n = 0                                          # missing: argparse's own error
            out += [_value(rng, world, action.dest, action) for _ in range(n)]
            continue
        if not (action.required and rng.random() < 0.97) and rng.random() > USUAL.get(action.dest, 0.12):
            continue
        flag = rng.choice(action.option_strings)
        if action.nargs == 0:
            flags.append([flag])
        elif action.nargs in ("+", "*"):
            flags.append([flag] + [_value(rng, world, action.dest, action) for _ in range(rng.randint(1, 3))])
        elif action.nargs == "?" and rng.random() < 0.4:
            flags.append([flag])
        else:
            reps = rng.randint(1, 3) if isinstance(action, argparse._AppendAction) else 1
            for _ in range(reps):
                flags.append([flag, _value(rng, world, action.dest, action)])
    rng.shuffle(flags)
    for f in flags:
        # "--flag=value" keeps a value that starts with "-" a value, as users write it.
        out += [f"{f[0]}={f[1]}"] if len(f) == 2 and f[1].startswith("-") and f[0].startswith("--") else f
    if rng.random() < 0.03:
        out.insert(rng.randrange(1, len(out) + 1), rng.choice(("--bogus", "-z", "extra", "--json=1")))
    return out
