"""Run the fit search for two halves of the engines at once, one half in a forked child.

Engine policies are pure functions of (model, device, options), so two processes searching
disjoint engines need nothing from each other; each settles its own top answers and engine
bests, and the parent merges them (the merged top is exact since each half's is). Only where
the OS forks cheaply (Linux) and there are two CPUs; elsewhere the search runs in one process.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Callable

from .search import Group, Search

# Relative cost of one plan per engine (measured, benchmarks/fit_speed.py), to balance halves.
COST = {"mlc": 1, "vllm": 3, "sglang": 3, "llamacpp": 4, "ollama": 4, "mlx": 4}


def workers() -> int:
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return 1
    try:
        return min(2, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return min(2, os.cpu_count() or 1)


def split(groups: list[Group]) -> tuple[list[Group], list[Group]]:
    """Two halves of whole engines with about equal cost."""
    by_engine: dict[str, list[Group]] = {}
    for g in groups:
        by_engine.setdefault(g.ad.name, []).append(g)
    load = {e: COST.get(e, 3) * sum(len(g.classes) for g in gs) for e, gs in by_engine.items()}
    a: list[Group] = []
    b: list[Group] = []
    wa = wb = 0
    for e in sorted(load, key=lambda e: -load[e]):
        if wa <= wb:
            a += by_engine[e]
            wa += load[e]
        else:
            b += by_engine[e]
            wb += load[e]
    return a, b


def run(make: Callable[[], Search], groups: list[Group]) -> list[Search]:
    """Searches over `groups`, in two processes where that helps; each returned Search holds its
    solutions, misses, tried configurations and plan count."""
    engines = {g.ad.name for g in groups}
    if workers() < 2 or len(engines) < 2:
        s = make()
        s.run(groups)
        return [s]
    mine, theirs = split(groups)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: search its half, send the result, leave without cleanup
        code = 0
        try:
            os.close(r)
            s = make()
            s.run(theirs)
            payload = pickle.dumps(("ok", _result(s)), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as e:  # noqa: BLE001 — any failure goes back to the parent
            payload = pickle.dumps(("error", e))
            code = 1
        with os.fdopen(w, "wb") as f:
            f.write(payload)
        os._exit(code)
    os.close(w)
    here = make()
    here.run(mine)
    with os.fdopen(r, "rb") as f:
        status, value = pickle.loads(f.read())
    os.waitpid(pid, 0)
    if status == "error":
        raise value
    there = make()
    there.solutions, there.misses, there.tried, calls = value
    there.planner.calls = calls
    return [here, there]


def _result(s: Search) -> tuple:
    return s.solutions, s.misses, s.tried, s.planner.calls
