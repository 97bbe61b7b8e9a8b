"""llama.cpp's `--fit`: shrink the context, then move layers off the device, until free memory fits.

Follows `llama_params_fit_impl` (src/llama.cpp, ec98e2002; later `common_params_fit_impl`):
1. probe the memory a load would use with the given parameters; done if every device keeps the
   margin (`-fitt`, default 1024 MiB);
2. if the user left `-c` unset: cut n_ctx linearly, `bytes_per_ctx = context bytes / n_ctx_train`,
   by `ceil(deficit / bytes_per_ctx)` tokens but not below `-fitc` (default 4096);
3. if the user left `-ngl` unset: fill the device back to front with whole layers (MoE: with all
   expert tensors on the CPU first), then, for MoE whose dense part fits, move expert tensors of
   whole layers onto the device front to back.
llama.cpp finds the layer counts by false position over repeated probes; on a memory use that
grows with each layer that search ends at the largest count that fits, which is what `largest`
returns. The extra fractional layer llama.cpp then tries (`-ot` overflow of ATTN/UP/GATE parts)
is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

MiB = 1 << 20


@dataclass(frozen=True)
class Placement:
    n_gpu_layers: int            # llama.cpp's -ngl: layers counted from the back; n_layer + 1 adds the output
    experts_on_device: int       # MoE: offloaded layers whose expert tensors stay on the device
    overflowing: int = 0         # MoE: offloaded layers whose experts go to system memory (n_part)


@dataclass
class FitResult:
    n_ctx: int | None                  # the n_ctx fit chose (None: unchanged)
    placement: Placement | None        # the layer placement fit chose (None: unchanged)
    ok: bool = True
    reason: str = ""
    log: list[str] = field(default_factory=list)


# probe(n_ctx, placement) -> (bytes the load would use on the device, of which context bytes)
Probe = Callable[[int, Placement], tuple[int, int]]


def largest(lo: int, hi: int, fits: Callable[[int], bool]) -> int:
    """The largest n in [lo, hi] with fits(n), for fits monotone decreasing; lo when none."""
    if fits(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def fit(probe: Probe, *, n_layer: int, n_ctx_train: int, n_ctx_user: int | None, ngl_user: int | None,
        full: Placement, is_moe: bool, free: int, margin: int, n_ctx_min: int, n_devices: int = 1,
        total: int | None = None) -> FitResult:
    n_ctx = n_ctx_user or n_ctx_train
    used, ctx_bytes = probe(n_ctx, full if ngl_user is None else Placement(ngl_user, n_layer))
    res = FitResult(None, None)
    # llama.cpp prints the devices' total here, though it calls it free memory
    res.log.append(f"projected to use {used // MiB} MiB of device memory vs. {(total or free) // MiB} MiB of free device memory")
    surplus = free - used - n_devices * margin
    if free - used >= n_devices * margin:
        res.log.append(f"will leave {(free - used) // MiB} >= {margin // MiB} MiB of free device memory, no changes needed")
        return res
    res.log.append(f"cannot fulfill margin of {margin // MiB} MiB, need to reduce device memory by {-surplus // MiB} MiB")
    # step 2: the context (only when -c was not given)
    if n_ctx_user:
        res.log.append(f"context size set by user to {n_ctx_user} -> no change")
    elif n_ctx_train > n_ctx_min and ctx_bytes // n_ctx_train > 0:
        per_ctx = ctx_bytes // n_ctx_train
        reduction = min(-(surplus // per_ctx), n_ctx_train - n_ctx_min)   # ceil(-surplus / per_ctx)
        n_ctx = n_ctx_train - reduction
        res.n_ctx = n_ctx
        surplus += reduction * per_ctx
        res.log.append(f"context size reduced from {n_ctx_train} to {n_ctx} -> need {reduction * per_ctx // MiB} MiB less memory in total")
        if surplus >= 0 and n_devices == 1:
            res.log.append("entire model can be fit by reducing context")
            return res
    else:
        res.log.append(f"default model context size is {n_ctx_train} which is <= the min. context size of {n_ctx_min} -> no change")
    # step 3: the layers (only when -ngl was not given)
    if ngl_user is not None:
        res.ok, res.reason = False, f"n_gpu_layers already set by user to {ngl_user}, abort"
        return res
    target = free - n_devices * margin

    def fits(p: Placement) -> bool:
        return probe(n_ctx, p)[0] <= target

    partial_moe = False
    if is_moe:
        moe_cpu = Placement(n_layer + 1, 0, n_layer)
        surplus_cpu_moe = free - probe(n_ctx, moe_cpu)[0] - n_devices * margin
        partial_moe = surplus_cpu_moe > 0
        word = "surplus" if partial_moe else "still a total deficit"
        res.log.append(f"with only dense weights in device memory there is {word} of {abs(surplus_cpu_moe) // MiB} MiB")
    if partial_moe:
        # step 4: every layer's dense part and the output fit; give whole layers their experts, front first
        e = largest(0, n_layer, lambda k: fits(Placement(n_layer + 1, k, n_layer - k)))
        placement = Placement(n_layer + 1, e, n_layer - e)
    else:
        # dense (or MoE with experts on the CPU): whole layers from the back, the output stays on the host
        n = largest(0, n_layer, lambda k: fits(Placement(k, 0, k if is_moe else 0)))
        placement = Placement(n, 0, n if is_moe else 0)
    res.placement = placement
    used = probe(n_ctx, placement)[0]
    res.log.append(f"- device: {min(placement.n_gpu_layers, n_layer)} layers ({placement.overflowing} overflowing), "
                   f"{used // MiB} MiB used, {(free - used) // MiB} MiB free")
    return res
