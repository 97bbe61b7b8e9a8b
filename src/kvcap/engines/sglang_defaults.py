"""SGLang's memory defaults by release: chunked_prefill_size, cuda_graph_max_bs, mem_fraction_static.

SGLang picks these from the GPU memory that `nvidia-smi` / `rocm-smi` reports (MiB) before the
model loads. The heuristic changed many times; each era below was read from the released wheel
named in its `source` (python/sglang/srt/server_args.py `ServerArgs.__post_init__` up to 0.5.2,
`ServerArgs._handle_gpu_memory_settings` from 0.5.3, arg_groups/memory_hook.py
`handle_gpu_memory_settings` + `reserve_for_graph_mb` from 0.5.19). A release between two read
wheels gets the rule of the older one, and says so.

Not modelled (kvcap has no option for them): speculative decoding, DP attention, PD
disaggregation, DeepEP, the VLM adjustment (`adjust_mem_fraction_for_vlm`), NPU/XPU/HPU tiers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import OptionsError

OLDEST, NEWEST = "0.4.0", "0.5.23"
# Wheels read for this module (pip download sglang==V --no-deps); a version in between gets the
# rule of the nearest older one.
READ = ("0.4.0", "0.4.3", "0.4.5", "0.4.6", "0.4.6.post1", "0.4.6.post3", "0.4.6.post5", "0.4.7",
        "0.4.7.post1", "0.4.8", "0.4.9", "0.4.10", "0.4.10.post2", "0.5.0rc0", "0.5.1", "0.5.2",
        "0.5.3", "0.5.4", "0.5.5", "0.5.6", "0.5.7", "0.5.8", "0.5.9", "0.5.10", "0.5.11", "0.5.12",
        "0.5.13", "0.5.14", "0.5.15", "0.5.16", "0.5.17", "0.5.18", "0.5.19", "0.5.20", "0.5.21",
        "0.5.22", "0.5.23")

GiB_MiB = 1024  # SGLang writes its thresholds in MiB: `35 * 1024` is 35 GiB


def parse_version(text: str) -> tuple[int, int, int, int]:
    """'0.4.6.post5' -> (0, 4, 6, 5); '0.5.0rc0' -> (0, 5, 0, -1); '0.5.23' -> (0, 5, 23, 0)."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:\.?post(\d+)|rc(\d+))?", str(text).strip())
    if not m:
        raise OptionsError(f"sglang engine_version {text!r} is not a version: write e.g. 0.5.23 or 0.4.6.post5")
    major, minor, patch = int(m.group(1)), int(m.group(2)), int(m.group(3))
    post = int(m.group(4)) if m.group(4) is not None else (-1 if m.group(5) is not None else 0)
    return major, minor, patch, post


def check_version(text: str) -> tuple[int, int, int, int]:
    v = parse_version(text)
    if not parse_version(OLDEST) <= v <= parse_version(NEWEST):
        raise OptionsError(f"sglang engine_version {text} is not modelled; kvcap knows SGLang {OLDEST} to {NEWEST}")
    return v


def read_wheel(v: tuple[int, int, int, int]) -> str:
    """The newest read wheel not newer than `v` (the one whose code kvcap follows)."""
    return max((r for r in READ if parse_version(r) <= v), key=parse_version)


@dataclass(frozen=True)
class MemoryDefaults:
    chunked_prefill_size: int
    cuda_graph_max_bs: int | None
    mem_fraction_static: float
    reserved_mib: float | None      # the memory SGLang keeps outside the static pool, where it says so
    formula: str
    source: str
    given: bool = False             # mem_fraction_static came from the user


def _tp_table(parallel: int) -> float:
    # server_args.py __post_init__ (0.4.0 – 0.4.7): "Mem fraction depends on the tensor parallelism size"
    for at_least, frac in ((16, 0.79), (8, 0.81), (4, 0.85), (2, 0.87)):
        if parallel >= at_least:
            return frac
    return 0.88


def _tiers(v, gpu: float, tp: int) -> tuple[int, int]:
    """chunked_prefill_size and the decode cuda_graph_max_bs by GPU memory (0.5.3+)."""
    small_bs = (16, 80) if v < (0, 5, 5, 0) else (24, 80) if v < (0, 5, 20, 0) else (48, 160)
    small_cps = 2048 if v < (0, 5, 20, 0) else 4096
    if gpu < 20 * GiB_MiB:          # T4, 4080
        return 2048, 8
    if gpu < 35 * GiB_MiB:          # A10, 4090, 5090
        return small_cps, small_bs[0] if tp < 4 else small_bs[1]
    if gpu < 60 * GiB_MiB:          # A100 40GB, L40
        return 4096, 32 if tp < 4 else 160
    if gpu < 160 * GiB_MiB:         # H100, A100 80GB, H20, H200
        return 8192, 256 if tp < 4 else 512
    return 16384, 512               # B200, MI300


_SMALL_PREFILL_GRAPH_SIZES = (list(range(4, 33, 4)) + list(range(48, 257, 16)) + list(range(288, 513, 32))
                              + list(range(576, 1025, 64)) + list(range(1280, 4097, 256)))


def _prefill_graph_count(max_tokens: int) -> int:
    """How many prefill graph sizes are captured up to `max_tokens`:
    _generate_piecewise_cuda_graph_tokens (0.5.8+) / generate_prefill_cuda_graph_batch_sizes (0.5.19+)
    list 4..4096 in growing steps, then every 512 tokens. Counted, not listed: a user's huge
    --chunked-prefill-size must not build a huge list."""
    small = sum(1 for s in _SMALL_PREFILL_GRAPH_SIZES if s <= max_tokens)
    return small + max(0, (max_tokens - 4608) // 512 + 1)


def memory_defaults(version: str, gpu_mib: float, backend: str, tp: int, *, mla: bool,
                    chunked_prefill_size: int | None = None, cuda_graph_max_bs: int | None = None,
                    mem_fraction_static: float | None = None, max_prefill_tokens: int = 16384,
                    max_running_requests: int | None = None, max_total_tokens: int | None = None,
                    context_length: int | None = None, disable_cuda_graph: bool = False,
                    disable_piecewise_cuda_graph: bool = False, model_path: str = "") -> MemoryDefaults:
    """SGLang's defaults for one launch, with the formula in words. `gpu_mib` is nvidia-smi's total."""
    v = check_version(version)
    wheel = read_wheel(v)
    src = f"sglang {wheel} server_args.py"
    if v >= (0, 5, 3, 0):
        return _formula_era(v, wheel, gpu_mib, backend, tp, mla, chunked_prefill_size, cuda_graph_max_bs,
                            mem_fraction_static, max_prefill_tokens, max_running_requests, max_total_tokens,
                            context_length, disable_cuda_graph, disable_piecewise_cuda_graph, model_path)

    # ---- 0.4.0 – 0.5.2: chunked_prefill_size and cuda_graph_max_bs by simple thresholds
    if v >= (0, 4, 7, 1):
        cps = 2048 if gpu_mib < 35 * GiB_MiB else 8192 if gpu_mib < 160 * GiB_MiB else 16384
        bs = (8 if tp < 4 else 80) if gpu_mib < 35 * GiB_MiB else 160
    elif v >= (0, 4, 7, 0):
        cps = 16384 if gpu_mib > 180_000 else 2048 if gpu_mib < 25_000 else 8192
        bs = (8 if tp < 4 else 80) if gpu_mib < 25_000 else 160
    else:
        cps = 2048 if gpu_mib < 25_000 else 8192
        bs = (8 if tp < 4 or v < (0, 4, 3, 0) else 80) if gpu_mib < 25_000 else 160
    cps = chunked_prefill_size if chunked_prefill_size is not None else cps
    bs = cuda_graph_max_bs if cuda_graph_max_bs is not None else bs
    if mem_fraction_static is not None:
        return MemoryDefaults(cps, bs, mem_fraction_static, None, "given with --mem-fraction-static", src, True)

    if v >= (0, 4, 7, 1):
        # 0.4.7.post1 – 0.5.2: a reserve per GPU tier, then round((gpu − reserved) / gpu, 3)
        if gpu_mib < 35 * GiB_MiB:
            reserved, words = (2.8 + tp / 10) * 1024, "(2.8 + tp/10) GiB for GPUs under 35 GiB"
        elif gpu_mib < 90 * GiB_MiB:
            reserved, words = (9.5 + tp / 2) * 1024, "(9.5 + tp/2) GiB for GPUs of 35–90 GiB"
        elif gpu_mib < 160 * GiB_MiB:
            reserved, words = (12 + tp / 2) * 1024, "(12 + tp/2) GiB for GPUs of 90–160 GiB"
        else:
            reserved, words = 32 * 1024, "32 GiB for GPUs of 160 GiB and more"
        frac = round((gpu_mib - reserved) / gpu_mib, 3)
        return MemoryDefaults(cps, bs, frac, reserved, f"round((gpu_mem − reserved) / gpu_mem, 3), reserved = {words}",
                              f"{src} ServerArgs.__post_init__")
    if v >= (0, 4, 7, 0):
        frac = _tp_table(tp) if gpu_mib <= 81920 else 0.88
        words = "tp table (≤ 80 GiB) or 0.88"
        if gpu_mib > 180 * 1000 and backend == "cuda":
            frac, words = 0.79, "0.79 for CUDA GPUs over 180,000 MiB"
        elif gpu_mib > 96 * GiB_MiB:
            frac = min(frac + 48 * 1024 * (1 - frac) / gpu_mib, (gpu_mib - 18 * 1024) / gpu_mib)
            words = "min(f + 48 GiB·(1 − f)/gpu_mem, (gpu_mem − 18 GiB)/gpu_mem) over 96 GiB"
        return MemoryDefaults(cps, bs, frac, None, words, f"{src} ServerArgs.__post_init__")
    if v >= (0, 4, 6, 3):
        frac = _tp_table(tp) if gpu_mib <= 81920 else 0.88
        words = "tp table (≤ 80 GiB) or 0.88"
        if gpu_mib > 96 * GiB_MiB:
            frac = min(frac + 48 * 1024 * (1 - frac) / gpu_mib, (gpu_mib - 18 * 1024) / gpu_mib)
            words = "min(f + 48 GiB·(1 − f)/gpu_mem, (gpu_mem − 18 GiB)/gpu_mem) over 96 GiB"
        return MemoryDefaults(cps, bs, frac, None, words, f"{src} ServerArgs.__post_init__")
    if v >= (0, 4, 6, 0) and gpu_mib > 81920:
        frac = (gpu_mib - 13 * 1024) / gpu_mib
        return MemoryDefaults(cps, bs, frac, 13 * 1024.0, "(gpu_mem − 13 GiB) / gpu_mem over 80 GiB",
                              f"{src} ServerArgs.__post_init__")
    return MemoryDefaults(cps, bs, _tp_table(tp), None,
                          "by tp_size: ≥16 → 0.79, ≥8 → 0.81, ≥4 → 0.85, ≥2 → 0.87, else 0.88",
                          f"{src} ServerArgs.__post_init__")


def _formula_era(v, wheel, gpu, backend, tp, mla, cps, bs, mfs, max_prefill, max_running, max_total,
                 context_length, disable_graph, disable_piecewise, model_path) -> MemoryDefaults:
    """0.5.3+: reserved_mem = 512 + activation + cuda graphs + parallel slack, floor 10 GiB on > 60 GiB GPUs."""
    d_cps, d_bs = _tiers(v, gpu, tp)
    cps = cps if cps is not None else d_cps
    bs_default = bs is None
    bs = bs if bs is not None else d_bs
    if bs_default and v >= (0, 5, 22, 0) and max_running is not None and bs > max_running:
        bs = max_running  # memory_hook.py: a default decode max_bs never exceeds max_running_requests
    fn = "handle_gpu_memory_settings" if v >= (0, 5, 19, 0) else "ServerArgs._handle_gpu_memory_settings"
    src = f"sglang {wheel} {'arg_groups/memory_hook.py' if v >= (0, 5, 19, 0) else 'server_args.py'} {fn}"
    if mfs is not None:
        return MemoryDefaults(cps, bs, mfs, None, "given with --mem-fraction-static", src, True)

    activation = max(cps, 2048) if cps > 0 else max(max_prefill, 2048)
    reserved = 512 + activation * 1.5
    parts = [f"512 + {activation}·1.5 (activations)"]
    # reserve_for_graph_mb (0.5.16+) skips a disabled decode graph; before, it always counted
    if not (disable_graph and v >= (0, 5, 16, 0)):
        reserved += bs * 2
        parts.append(f"{bs}·2 (decode cuda graphs)")
    reserved += tp / 8 * 1024
    parts.append(f"{tp}/8·1024 (parallel)")
    graph_mib, words = _prefill_graph_reserve(v, backend, mla, cps, max_total, context_length, disable_graph,
                                              disable_piecewise, model_path)
    if graph_mib:
        reserved += graph_mib
        parts.append(words)
    floor = ""
    if gpu > 60 * GiB_MiB and reserved < 10 * 1024:
        reserved, floor = 10 * 1024.0, ", raised to the 10 GiB floor of GPUs over 60 GiB"
    frac = round((gpu - reserved) / gpu, 3)
    formula = f"round((gpu_mem − reserved) / gpu_mem, 3), reserved = {' + '.join(parts)} MiB{floor}"
    return MemoryDefaults(cps, bs, frac, reserved, formula, src)


def _prefill_graph_reserve(v, backend, mla, cps, max_total, context_length, disable_graph, disable_piecewise,
                           model_path) -> tuple[float, str]:
    """The piecewise / prefill cuda-graph reserve, which came and changed shape over 0.5.6 – 0.5.23."""
    if v < (0, 5, 10, 0):
        return 0.0, ""  # 0.5.6 – 0.5.9: only with --enable-piecewise-cuda-graph (off by default)
    if v < (0, 5, 14, 0):
        enabled = not disable_piecewise
    else:
        # cuda_graph_config.py default_prefill_backend: breakable (tc_piecewise before 0.5.15) on CUDA;
        # tc_piecewise elsewhere until 0.5.23 turned it off off-CUDA.
        enabled = not disable_graph and (backend == "cuda" or v < (0, 5, 23, 0))
    if not enabled:
        return 0.0, ""
    if mla:
        return 1.5 * 1024, "1.5 GiB (MLA prefill graphs)"
    max_tokens = cps
    if max_total is not None:
        max_tokens = min(max_tokens, max_total)
    if "llama-2" in model_path.lower():
        max_tokens = min(max_tokens, 4096)
    if context_length is not None and v >= (0, 5, 13, 0):
        max_tokens = min(max_tokens, context_length)
    n = _prefill_graph_count(max_tokens)
    return n * 8.0, f"{n}·8 (prefill graphs up to {max_tokens} tokens)"
