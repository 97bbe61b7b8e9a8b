"""Mutations of JSON-like trees (config.json, mlc-chat-config.json, validation cases, headers).

A mutation picks a random place in the tree and deletes it, replaces it with garbage (wrong
types, negative, huge, NaN/Infinity, nested junk), scales a number, or adds a stray key.
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any

# Values that break naive readers: wrong types, out of range, non-finite, nested junk.
GARBAGE: tuple[Any, ...] = (
    None, True, False, 0, 1, -1, -7, 2, 3, 2**31 - 1, 2**31, -2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63,
    2**64 - 1, 2**64 + 1, 10**30, 10**400, 0.0, -0.0, 0.5, 1.5, -2.5, 1e-300, 1e308, -1e308,
    math.nan, math.inf, -math.inf, "", "0", "-1", "abc", "128k", "4096", "float16", "bfloat16", "auto",
    "nan", "\x00", "é" * 3, [], [0], [None], [-1, 2**64], [[[]]], ["a", 1, None], {}, {"a": None},
    {"type": "linear", "factor": math.nan}, {"x": {"y": {"z": [1, {"w": "v"}]}}},
)


def garbage(rng: random.Random) -> Any:
    g = rng.choice(GARBAGE)
    return copy.deepcopy(g) if isinstance(g, (list, dict)) else g


def numeric_variant(rng: random.Random, value: Any) -> Any:
    """A nearby or extreme variant of a number: 0, negative, doubled, off by one, huge, float, NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return garbage(rng)
    ops = (lambda v: 0, lambda v: -v, lambda v: v + 1, lambda v: v - 1, lambda v: v * 2, lambda v: v * 1000,
           lambda v: v // 3 if isinstance(v, int) else v / 3, lambda v: v + 0.5, lambda v: v * 2**40,
           lambda v: float(v), lambda v: math.nan, lambda v: math.inf, lambda v: str(v), lambda v: [v])
    try:
        return rng.choice(ops)(value)
    except OverflowError:           # an int past float range met a float op: keep it an int
        return -value


def _places(tree: Any, path: tuple = ()) -> list[tuple]:
    """Every (container path, key) in the tree, depth-first."""
    out = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.append(path + (k,))
            out += _places(v, path + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree[:64]):          # long lists: mutate the head only
            out.append(path + (i,))
            out += _places(v, path + (i,))
    return out


def _parent(tree: Any, path: tuple) -> Any:
    for k in path[:-1]:
        tree = tree[k]
    return tree


def mutate(rng: random.Random, tree: Any, n: int | None = None, extra_keys: tuple[str, ...] = ()) -> Any:
    """A mutated deep copy of `tree` with `n` (default 1 to 4) random changes."""
    tree = copy.deepcopy(tree)
    for _ in range(n if n is not None else rng.randint(1, 4)):
        places = _places(tree)
        op = rng.random()
        if not places or op < 0.08:                 # a stray key at the top (or a nested junk object)
            if isinstance(tree, dict):
                key = rng.choice(extra_keys) if extra_keys and rng.random() < 0.7 else rng.choice(
                    ("text_config", "vision_config", "rope_scaling", "quantization_config", "layer_types",
                     "__metadata__", "x" * rng.randint(1, 40), ""))
                tree[key] = garbage(rng)
            continue
        path = rng.choice(places)
        parent = _parent(tree, path)
        key = path[-1]
        if op < 0.25:                                # delete
            if isinstance(parent, dict):
                parent.pop(key, None)
            elif parent:
                parent.pop(key)
        elif op < 0.6:                               # a number nearby or extreme
            parent[key] = numeric_variant(rng, parent[key])
        elif op < 0.9:                               # garbage of any type
            parent[key] = garbage(rng)
        else:                                        # wrap or duplicate
            v = parent[key]
            parent[key] = rng.choice(([v], {"value": v}, [v, v], {"nested": {"deeper": v}}))
    return tree
