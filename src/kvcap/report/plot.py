"""KV capacity against device memory: the sweep (pure Python) and its matplotlib figure.

`sweep` reruns an engine's own policy (`kvcap.engines.get_engine(name).plan`) with only the
device's memory changed, so every point is a real plan: where memory binds the curve rises,
where a cap binds (MLC's Metal 32,768, a context window, a mode default) it is flat, and the cap
is drawn as a line. The web page draws the same series as SVG (web/chart.py); `kvcap plot`
draws them with matplotlib, which is imported only inside `figure`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import InsufficientMemory, KvcapError, OptionsError

# Bindings that follow memory; every other binding name is a cap (a flat line). MLX-LM's
# "fits but will page" (engines/mlx.py PAGING): tokens fit only past the working set.
MEMORY_BINDINGS = frozenset({"memory", "insufficient_memory", "fits_but_will_page", "refused"})
PAGING = "fits_but_will_page"
DEFAULT_POINTS = 32
MAX_POINTS = 256


@dataclass(frozen=True)
class Point:
    memory_bytes: int
    kv_tokens: int          # the engine's KV pool (0: does not fit)
    binding: str
    paging_tokens: int = 0  # top of the "fits but pages" band (0: no band at this memory)

    @property
    def resident_tokens(self) -> int:
        """Tokens that fit without paging (a paging plan's tokens are all past the working set)."""
        return 0 if self.binding == PAGING else self.kv_tokens


@dataclass(frozen=True)
class Cap:
    binding: str
    kv_tokens: int


@dataclass(frozen=True)
class Series:
    engine: str
    device: str             # the device's name
    device_key: str
    backend: str
    points: tuple[Point, ...]
    chosen: Point | None    # the plan at the device's own memory
    caps: tuple[Cap, ...]
    error: str = ""         # the engine refused the model/device/options at the device's memory

    @property
    def label(self) -> str:
        return f"{self.engine} on {self.device_key or self.device}"

    def to_json(self) -> dict:
        pt = lambda p: {"memory_bytes": p.memory_bytes, "kv_tokens": p.kv_tokens, "binding": p.binding,
                        "paging_tokens": p.paging_tokens}
        return {"engine": self.engine, "device": self.device, "device_key": self.device_key, "backend": self.backend,
                "points": [pt(p) for p in self.points], "chosen": pt(self.chosen) if self.chosen else None,
                "caps": [{"binding": c.binding, "kv_tokens": c.kv_tokens} for c in self.caps], "error": self.error}


def memory_grid(top: int, points: int = DEFAULT_POINTS, extra: Sequence[int] = ()) -> tuple[int, ...]:
    """`points` evenly spaced memories in (0, top], plus the `extra` ones (the devices' own)."""
    if not 2 <= points <= MAX_POINTS:
        raise OptionsError(f"points must be 2 to {MAX_POINTS}, got {points}")
    if top <= 0:
        raise OptionsError(f"the largest memory must be positive, got {top}")
    grid = {top * i // points for i in range(1, points + 1)} | {m for m in extra if 0 < m}
    return tuple(sorted(m for m in grid if m > 0))


def _point(mod, model, device, options: Mapping[str, Any], memory: int) -> Point:
    dev = dataclasses.replace(device, memory_bytes=memory, memory_source="kvcap plot: memory swept")
    try:
        p = mod.plan(model, dev, options)
    except InsufficientMemory:
        return Point(memory, 0, "insufficient_memory")
    except KvcapError:
        return Point(memory, 0, "refused")
    return Point(memory, p.kv_tokens, p.binding.name, _paging_top(p))


def _paging_top(plan) -> int:
    """MLX-LM solves the largest context under its memory limit besides the one inside the
    working set (engines/mlx.py: ledger `context_in_memory_limit`); between them it pages."""
    if plan.binding.name == PAGING:
        return plan.kv_tokens
    try:
        per_seq = plan.line("context_in_memory_limit")
    except KeyError:
        return 0
    batch = plan.engine_config.get("batch") or 1
    top = int(per_seq) * int(batch)
    return top if top > plan.kv_tokens else 0


def caps_of(points: Sequence[Point]) -> tuple[Cap, ...]:
    """The flat limits the sweep ran into: each (binding, tokens) met where memory did not bind."""
    seen: dict[tuple[str, int], Cap] = {}
    for p in points:
        if p.binding not in MEMORY_BINDINGS and p.kv_tokens > 0:
            seen.setdefault((p.binding, p.kv_tokens), Cap(p.binding, p.kv_tokens))
    return tuple(sorted(seen.values(), key=lambda c: (c.kv_tokens, c.binding)))


def sweep(model, device, engine: str, options: Mapping[str, Any], memories: Sequence[int]) -> Series:
    """One engine on one device, its memory replaced by each of `memories` (bytes)."""
    from ..engines import get_engine

    mod = get_engine(engine)
    name = getattr(mod, "NAME", engine)
    try:
        chosen_plan = mod.plan(model, device, options)
        chosen = Point(device.memory_bytes, chosen_plan.kv_tokens, chosen_plan.binding.name, _paging_top(chosen_plan))
    except InsufficientMemory:
        chosen = Point(device.memory_bytes, 0, "insufficient_memory")
    except KvcapError as e:
        return Series(name, device.name, device.key, device.backend, (), None, (), str(e))
    points = tuple(chosen if m == device.memory_bytes else _point(mod, model, device, options, m) for m in memories)
    return Series(name, device.name, device.key, device.backend, points, chosen, caps_of(points))


def options_for(engine: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options one engine has, out of options given for several engines at once."""
    from ..engines import get_engine
    known = getattr(get_engine(engine), "OPTIONS", {})
    return {k: v for k, v in options.items() if k in known}


# ---- matplotlib ----------------------------------------------------------------------------

GiB = 1 << 30


def figure(series: Sequence[Series], title: str = ""):
    """A matplotlib Figure of the series: one line per engine × device, caps dashed, the
    "fits but pages" band shaded, each device's own point marked. Lines carry labels and gids
    ("series:ENGINE:DEVICE", "cap:…", "chosen:…", "paging:…") so that tests can find them."""
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise OptionsError("kvcap plot needs matplotlib: pip install 'kvcap[plot]'") from None
    drawn = [s for s in series if not s.error and any(p.kv_tokens > 0 for p in s.points)]
    if not drawn:
        reasons = "; ".join(f"{s.label}: {s.error or 'does not fit at any memory swept'}" for s in series)
        raise OptionsError(f"nothing to plot ({reasons})")
    fig = Figure(figsize=(12, 5.5), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    floor = min(v for s in drawn for p in s.points for v in (p.resident_tokens, p.paging_tokens) if v > 0)
    for i, s in enumerate(drawn):
        color = colors[i % len(colors)]
        xs = [p.memory_bytes / GiB for p in s.points]
        ys = [p.resident_tokens if p.resident_tokens > 0 else float("nan") for p in s.points]
        (line,) = ax.plot(xs, ys, color=color, lw=2, label=s.label)
        line.set_gid(f"series:{s.engine}:{s.device_key or s.device}")
        tops = [p.paging_tokens for p in s.points]
        if any(tops):
            # Where even the first token pages, the band starts at the bottom of the axis.
            band = ax.fill_between(xs, [p.resident_tokens or floor for p in s.points], [t or float("nan") for t in tops],
                                   color=color, alpha=0.18, label=f"{s.label}: fits but pages")
            band.set_gid(f"paging:{s.engine}:{s.device_key or s.device}")
        for c in s.caps:
            cap = ax.axhline(c.kv_tokens, color=color, ls="--", lw=1,
                             label=f"{s.engine} cap: {c.binding} {c.kv_tokens:,} ({s.backend})")
            cap.set_gid(f"cap:{s.engine}:{c.binding}:{c.kv_tokens}")
        if s.chosen and s.chosen.kv_tokens > 0:
            (dot,) = ax.plot([s.chosen.memory_bytes / GiB], [s.chosen.kv_tokens], "o", color=color, ms=8,
                             label=f"{s.label}: {s.chosen.kv_tokens:,} tokens ({s.chosen.binding})")
            dot.set_gid(f"chosen:{s.engine}:{s.device_key or s.device}")
    ax.set_yscale("log", base=2)
    ax.set_xlim(left=0)
    ax.set_xlabel("device memory as the backend reports it (GiB)")
    ax.set_ylabel("KV cache (tokens)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _tokens(v)))
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(title or "KV capacity against device memory")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.85)
    fig.tight_layout()
    return fig


def _tokens(v: float) -> str:
    if v >= 1 << 20:
        return f"{v / (1 << 20):g}M"
    if v >= 1024:
        return f"{v / 1024:g}k"
    return f"{v:g}"


def save(fig, path: str) -> None:
    """Write the figure; the format follows the suffix (.png or .svg)."""
    low = path.lower()
    if not low.endswith((".png", ".svg")):
        raise OptionsError(f"--out must end in .png or .svg, got {path!r}")
    try:
        fig.savefig(path, format="png" if low.endswith(".png") else "svg")
    except OSError as e:
        raise OptionsError(f"cannot write {path}: {e.strerror or e}") from None
