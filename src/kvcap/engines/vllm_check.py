"""vLLM's refusals: the 'enough KV cache for one request' check, auto-fit, and their wording.

V1: v1/core/kv_cache_utils.py (kv_cache_planning.py in 0.33): check_enough_kv_cache_memory /
_check_enough_kv_cache_memory, estimate_max_model_len, _auto_fit_max_model_len.
V0: worker/worker.py: raise_if_cache_size_invalid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .vllm_era import Era
from .vllm_pages import Layout, estimate_max_model_len, max_memory_per_request

GiB = 1 << 30
DOCS = " See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details."


@dataclass(frozen=True)
class WorkerKV:
    """One worker's KV view: its layers' layout and the memory it offers the cache."""

    layout: Layout
    available: int


def gib(era: Era, n: int) -> str:
    # '%.2f' up to 0.13; utils/mem_utils.py: format_gib (round(x, 2)) from 0.14.
    return f"{round(n / GiB, 2)}" if era.docs_link else f"{n / GiB:.2f}"


def no_memory_error(era: Era) -> str:
    text = "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine."
    return text + (DOCS if era.docs_link else "")


def too_long_error(era: Era, max_model_len: int, needed: int, available: int, estimated: int) -> str:
    model_s = "models's" if era.models_typo else "model's"
    head = (f"To serve at least one request with the {model_s} max seq len ({max_model_len}), "
            f"({gib(era, needed)} GiB KV cache is needed, which is larger than the available KV cache memory "
            f"({gib(era, available)} GiB).")
    tail = "Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
    if era.estimate_sentence_broken:
        # 0.8.x: a stray statement dropped the number (see Era.estimate_sentence_broken).
        middle = " Based on the available memory," if (estimated > 0 and era.estimate_sentence) else ""
        return f"{head}{middle}  {tail}"
    middle = (f"Based on the available memory, the estimated maximum model length is {estimated}."
              if estimated > 0 and era.estimate_sentence else "")
    if era.docs_link:
        return f"{head} {middle + ' ' if middle else ''}{tail}{DOCS}"
    return f"{head} {middle} {tail}"


def v0_error(max_model_len: int, num_blocks: int, block_size: int, pp: int = 1) -> str | None:
    """worker/worker.py: raise_if_cache_size_invalid (V0 splits the blocks over its PP virtual engines)."""
    if num_blocks <= 0:
        return ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` "
                "when initializing the engine.")
    tokens = block_size * (num_blocks // pp)
    if max_model_len > tokens:
        return (f"The model's max seq len ({max_model_len}) is larger than the maximum number of tokens that can "
                f"be stored in KV cache ({tokens}). Try increasing `gpu_memory_utilization` or decreasing "
                f"`max_model_len` when initializing the engine.")
    return None


def _views(era: Era, global_layout: Layout, workers: Sequence[WorkerKV]) -> list[WorkerKV]:
    """What each check compares: per worker (<= 0.13 and >= 0.17) or the whole model against
    the smallest worker (0.14-0.16), with BlockPool's null block held back from 0.30."""
    rule = era.needed_memory_rule
    if rule == "global_groups":
        views = [WorkerKV(global_layout, min(w.available for w in workers))]
    else:
        views = list(workers)
    if era.null_block_in_checks:
        views = [WorkerKV(v.layout, v.available - v.layout.bytes_per_block) for v in views]
    return views


def needed(era: Era, view: WorkerKV, max_model_len: int, mnbt: int) -> int:
    rule = "layers" if era.needed_memory_rule == "layers" else "groups"
    return max_memory_per_request(view.layout, max_model_len, mnbt, rule)


def auto_fit(era: Era, global_layout: Layout, workers: Sequence[WorkerKV], derived: int,
             mnbt: int) -> tuple[int, int, str | None]:
    """_auto_fit_max_model_len: (max_model_len, the limiting worker's memory, error or None)."""
    best, limiting = derived, workers[0].available
    for view in _views(era, global_layout, workers):
        if view.layout.mode == "none":
            continue
        fit = estimate_max_model_len(lambda n: needed(era, view, n, mnbt), view.available, derived)
        if fit < best:
            best, limiting = fit, view.available
    if best <= 0:
        return 0, limiting, ("Cannot auto-fit max_model_len: not enough GPU memory available to serve even a "
                             "single token. Try increasing `gpu_memory_utilization`.")
    return best, limiting, None


def check(era: Era, global_layout: Layout, workers: Sequence[WorkerKV], max_model_len: int,
          mnbt: int) -> tuple[str | None, int, int, int]:
    """The first refusal vLLM raises, with (needed, available, estimated length) of that worker."""
    for view in _views(era, global_layout, workers):
        if view.layout.mode == "none":
            continue
        if view.available <= 0:
            return no_memory_error(era), 0, view.available, 0
        need = needed(era, view, max_model_len, mnbt)
        if need > view.available:
            est = estimate_max_model_len(lambda n: needed(era, view, n, mnbt), view.available, max_model_len)
            return too_long_error(era, max_model_len, need, view.available, est), need, view.available, est
    return None, 0, 0, 0
