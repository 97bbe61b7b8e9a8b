"""`kvcap fit`: the configurations that serve K sequences of N tokens, ranked.

A configuration is an engine, a weight quantization, a KV dtype, a parallel layout (tensor ×
pipeline parallel; across nodes where the engine can) and a device; replicas (data parallel)
multiply it when one replica holds fewer than K sequences. Ranking: fewest devices, least
memory, least quantization. Configurations another of the same engine beats on every count
(a larger device, more quantization for nothing) are left out unless `complete=True`; without it
the answer is what the search settles exactly: the `top` best, and the best of every engine.
How the search is pruned: advise/search.py.
"""

from __future__ import annotations

import time
from typing import Iterable

from ..device.spec import DeviceSpec
from ..errors import OptionsError
from ..model.spec import ModelSpec
from .choices import kv_choices, weight_choices
from .engines import adapter
from .search import Group, Search
from .space import Planner, device_classes, kv_elems_lower, text_params
from .types import Config, FitResult, Miss, Solution, undominated

DEFAULT_MAX_GPUS = 8
DEFAULT_TOP = 10
# The search plans every node count up to --nodes: this bounds its time and memory (512 GPUs
# of 8 per node is far past what one replica of any catalog model needs).
MAX_NODES = 64
MAX_GPUS_PER_NODE = 1024    # an NVL72 rack is 72 GPUs in one NVLink domain; 2^31 took 28 s with --all

__all__ = ["fit", "FitResult", "Solution", "Miss", "Config"]


def fit(model: ModelSpec, context: int, concurrency: int = 1, *, engines: Iterable[str] | None = None,
        devices: Iterable[DeviceSpec] | None = None, quant: Iterable[str] | None = None,
        kv_dtype: Iterable[str] | None = None, max_gpus: int = DEFAULT_MAX_GPUS, nodes: int = 1,
        allow_long_context: bool = False, top: int = DEFAULT_TOP, complete: bool = False) -> FitResult:
    """The configurations in the search space that serve `concurrency` sequences of `context` tokens."""
    t0 = time.perf_counter()
    _check_target(model, context, concurrency, max_gpus, nodes, allow_long_context, top)
    from ..engines import available
    ads = [adapter(n) for n in dict.fromkeys(engines or available())]   # unknown engine: OptionsError
    explicit = devices is not None
    if devices is None:
        from ..device.catalog import entries
        devices = entries()
    devs = tuple(devices)
    if not devs:
        raise OptionsError("no devices to search: give --devices NAME… or --catalog")
    quant, kv_dtype = list(quant or ()), list(kv_dtype or ())
    misses: list[Miss] = []
    groups: list[Group] = []
    for ad in ads:
        ws, kvs = weight_choices(ad, model, quant), kv_choices(ad, model, kv_dtype)
        if not ws or not kvs:
            what = f"--quant {' '.join(quant)}" if not ws else f"--kv-dtype {' '.join(kv_dtype)}"
            misses.append(Miss(ad.name, "all", None, 0, f"{ad.name} has no {what}"))
            continue
        backends = sorted({d.backend for d in devs} & set(ad.backends))
        if not backends:
            misses.append(Miss(ad.name, "all", None, 0, f"kvcap's {ad.name} policy models "
                               f"{', '.join(ad.backends)}; no device searched is one"))
        for b in backends:
            classes = device_classes(tuple(d for d in devs if d.backend == b), ad.reads_device_name)
            groups.append(Group(ad, b, tuple(classes), tuple(ws), tuple(kvs)))
    if not groups:
        raise OptionsError("nothing to search: " + "; ".join(m.reason for m in misses))
    params, kv_elems = text_params(model), kv_elems_lower(model, context)

    search = Search(model, context, concurrency, max_gpus, nodes, Planner(model), params, top, complete, kv_elems)
    search.run(groups)
    search.misses = misses + search.misses
    if explicit:
        _device_misses(search, devs)
    sols = sorted(search.solutions, key=Solution.rank_key)
    if not complete:
        sols = _settled(_undominated(sols), top)
    return FitResult(model, context, concurrency, tuple(sols), tuple(search.misses), max_gpus, nodes,
                     search.planner.calls, time.perf_counter() - t0, complete)


def _undominated(sols: list[Solution]) -> list[Solution]:
    return undominated(sols)


def _settled(sols: list[Solution], top: int) -> list[Solution]:
    """The answers the search settles exactly: the first `top`, and each engine's best."""
    firsts = {}
    for s in sols:
        firsts.setdefault(s.config.engine, s)
    keep = set(map(id, sols[:top])) | set(map(id, firsts.values()))
    return [s for s in sols if id(s) in keep]


def _device_misses(search: Search, devs: tuple[DeviceSpec, ...]) -> None:
    """Devices the user named that serve under no engine: the best each got."""
    used = {m.key for s in search.solutions for m in s.config.device_class.members}
    for d in devs:
        if d.key in used:
            continue
        tried = [(cfg, s) for cfg, s in search.tried if d in cfg.device_class.members]
        if tried:
            cfg, s = max(tried, key=lambda t: (t[1].concurrency, t[0].layout.gpus, -t[0].weights.bits))
            search.misses.append(Miss(cfg.engine, d.key, cfg, s.concurrency, s.lacks))
        else:
            search.misses.append(Miss("any", d.key, None, 0, "too small for the weights and KV alone "
                                      "(below the lower bound at every quantization and layout searched)"))


def _check_target(model: ModelSpec, context: int, concurrency: int, max_gpus: int, nodes: int,
                  allow_long: bool, top: int) -> None:
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise OptionsError(f"--context must be a positive number of tokens, got {context!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise OptionsError(f"--concurrency must be at least 1 sequence, got {concurrency!r}")
    if max_gpus < 1 or nodes < 1 or top < 1:
        raise OptionsError(f"--max-gpus, --nodes and --top must be at least 1, got {max_gpus}, {nodes}, {top}")
    if max_gpus > MAX_GPUS_PER_NODE:
        raise OptionsError(f"--max-gpus {max_gpus}: kvcap searches at most {MAX_GPUS_PER_NODE} GPUs per node")
    if nodes > MAX_NODES:
        # --nodes 100000 ran past 4 GiB and a minute.
        raise OptionsError(f"--nodes {nodes}: kvcap searches layouts over at most {MAX_NODES} nodes")
    window = model.context_window
    if window and context > window and not allow_long:
        raise OptionsError(f"--context {context:,} is above {model.name}'s context window of {window:,} tokens; "
                           "ask for at most that, or pass --allow-long-context if you override the window (RoPE scaling)")
