"""The page's chart as SVG, drawn here in plain Python (no matplotlib needed for `kvcap web`).

It draws the same series as `kvcap plot` (report/plot.py `sweep`): KV tokens against device
memory on a log-2 token axis, one line per engine, each cap the sweep ran into as a dashed line,
MLX's "fits but pages" band shaded, and the chosen device's point marked. Elements carry
classes and data- attributes (series, cap, paging, chosen) so that tests can find them.
"""

from __future__ import annotations

import math
from typing import Sequence
from xml.sax.saxutils import escape, quoteattr

from ..report.plot import Series

GiB = 1 << 30
WIDTH, PLOT_H = 760, 320
LEFT, RIGHT, TOP = 64, 16, 28
LEGEND_ROW = 16
# Matplotlib's tab10, so that `kvcap plot` and the page colour engines alike.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


def _nice_step(span: float, ticks: int = 6) -> float:
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def _tokens(v: int) -> str:
    if v >= 1 << 20:
        return f"{v / (1 << 20):g}M"
    if v >= 1024:
        return f"{v / 1024:g}k"
    return str(v)


def _attr(**kw: object) -> str:
    return " ".join(f"{k.replace('_', '-')}={quoteattr(str(v))}" for k, v in kw.items())


def render(series: Sequence[Series], title: str = "") -> str:
    """An SVG document (str). Series with an error or no point that fits are listed, not drawn."""
    drawn = [s for s in series if not s.error and any(p.kv_tokens > 0 for p in s.points)]
    skipped = [s for s in series if s not in drawn]
    values = [v for s in drawn for p in s.points for v in (p.resident_tokens, p.paging_tokens) if v > 0]
    values += [c.kv_tokens for s in drawn for c in s.caps]
    legend = [(PALETTE[i % len(PALETTE)], s) for i, s in enumerate(drawn)]
    n_rows = sum(1 + len(s.caps) + (1 if s.chosen and s.chosen.kv_tokens else 0) for _, s in legend) + len(skipped)
    height = TOP + PLOT_H + 44 + LEGEND_ROW * n_rows + 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
           f'<text x="{WIDTH // 2}" y="16" text-anchor="middle" font-size="13">'
           f'{escape(title or "KV capacity against device memory")}</text>']
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP + PLOT_H, TOP
    if not values:
        out.append(f'<text x="{WIDTH // 2}" y="{TOP + PLOT_H // 2}" text-anchor="middle" class="empty">'
                   'nothing fits at any memory swept</text>')
    else:
        xmax = max(p.memory_bytes for s in drawn for p in s.points) / GiB
        lo, hi = math.floor(math.log2(min(values))), math.ceil(math.log2(max(values)) + 0.25)
        hi = max(hi, lo + 1)
        sx = lambda gib: x0 + (x1 - x0) * gib / xmax
        sy = lambda tok: y0 - (y0 - y1) * (math.log2(tok) - lo) / (hi - lo)
        out += _axes(x0, x1, y0, y1, xmax, lo, hi, sx, sy)
        out.append(f'<clipPath id="plot"><rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}"/></clipPath>')
        out.append('<g clip-path="url(#plot)">')
        for color, s in legend:
            out += _series(s, color, sx, sy, x0, x1, 2 ** lo)
        out.append("</g>")
    y = y0 + 44
    for color, s in legend:
        y = _legend(out, s, color, y)
    for s in skipped:
        why = s.error or "does not fit at any memory swept"
        out.append(f'<text x="{x0}" y="{y}" fill="#666" class="skipped" {_attr(data_engine=s.engine)}>'
                   f'{escape(s.label)}: {escape(why[:140])}</text>')
        y += LEGEND_ROW
    out.append("</svg>")
    return "\n".join(out)


def _axes(x0, x1, y0, y1, xmax, lo, hi, sx, sy) -> list[str]:
    out = [f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#999"/>']
    step = _nice_step(xmax)
    k = 0
    while k * step <= xmax + 1e-9:
        x = sx(k * step)
        out.append(f'<line x1="{x:.1f}" y1="{y1}" x2="{x:.1f}" y2="{y0}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{y0 + 14}" text-anchor="middle">{k * step:g}</text>')
        k += 1
    ystep = max(1, math.ceil((hi - lo) / 8))
    for e in range(lo, hi + 1, ystep):
        y = sy(2 ** e)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{_tokens(2 ** e)}</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.0f}" y="{y0 + 30}" text-anchor="middle">'
               'device memory as the backend reports it (GiB)</text>')
    out.append(f'<text x="14" y="{(y0 + y1) / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {(y0 + y1) / 2:.0f})">KV cache (tokens)</text>')
    return out


def _segments(xs_ys: list[tuple[float, int]]) -> list[list[tuple[float, int]]]:
    """Runs of consecutive points that fit (a line breaks where nothing fits)."""
    runs: list[list[tuple[float, int]]] = [[]]
    for x, v in xs_ys:
        if v > 0:
            runs[-1].append((x, v))
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def _series(s: Series, color: str, sx, sy, x0, x1, floor: int) -> list[str]:
    key = s.device_key or s.device
    out = []
    tops = [(p.memory_bytes / GiB, p.paging_tokens) for p in s.points]
    for run in _segments(tops):
        lower = {p.memory_bytes / GiB: p.resident_tokens or floor for p in s.points}
        upper = " ".join(f"{sx(x):.1f},{sy(v):.1f}" for x, v in run)
        back = " ".join(f"{sx(x):.1f},{sy(lower[x]):.1f}" for x, _ in reversed(run))
        out.append(f'<polygon class="paging" {_attr(data_engine=s.engine, data_device=key)} points="{upper} {back}" '
                   f'fill="{color}" fill-opacity="0.18" stroke="none"/>')
    for c in s.caps:
        y = sy(c.kv_tokens)
        out.append(f'<line class="cap" {_attr(data_engine=s.engine, data_binding=c.binding, data_tokens=c.kv_tokens)} '
                   f'x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="{color}" stroke-dasharray="5 4"/>')
    for run in _segments([(p.memory_bytes / GiB, p.resident_tokens) for p in s.points]):
        pts = " ".join(f"{sx(x):.1f},{sy(v):.1f}" for x, v in run)
        out.append(f'<polyline class="series" {_attr(data_engine=s.engine, data_device=key)} points="{pts}" '
                   f'fill="none" stroke="{color}" stroke-width="2"/>')
    if s.chosen and s.chosen.kv_tokens > 0:
        out.append(f'<circle class="chosen" {_attr(data_engine=s.engine, data_tokens=s.chosen.kv_tokens)} '
                   f'cx="{sx(s.chosen.memory_bytes / GiB):.1f}" cy="{sy(s.chosen.kv_tokens):.1f}" r="5" '
                   f'fill="{color}" stroke="#000"/>')
    return out


def _legend(out: list[str], s: Series, color: str, y: int) -> int:
    x = LEFT
    out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 22}" y2="{y - 4}" stroke="{color}" stroke-width="2"/>')
    band = " (shaded: fits but pages)" if any(p.paging_tokens for p in s.points) else ""
    out.append(f'<text x="{x + 28}" y="{y}">{escape(s.label)} ({escape(s.backend)}){band}</text>')
    y += LEGEND_ROW
    for c in s.caps:
        out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 22}" y2="{y - 4}" stroke="{color}" stroke-dasharray="5 4"/>')
        out.append(f'<text x="{x + 28}" y="{y}">cap: {escape(c.binding)} {c.kv_tokens:,} tokens</text>')
        y += LEGEND_ROW
    if s.chosen and s.chosen.kv_tokens:
        out.append(f'<circle cx="{x + 11}" cy="{y - 4}" r="4" fill="{color}" stroke="#000"/>')
        out.append(f'<text x="{x + 28}" y="{y}">{escape(s.device)}: {s.chosen.kv_tokens:,} tokens '
                   f'({escape(s.chosen.binding)})</text>')
        y += LEGEND_ROW
    return y
