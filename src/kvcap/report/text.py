"""A Plan as text: headline, binding limit, ledger, what-ifs, warnings."""

from __future__ import annotations

from ..plan import Plan
from ..units import fmt_bytes


def _value(v, unit: str) -> str:
    if unit == "bytes" and isinstance(v, (int, float)):
        return f"{v:,.0f} B ({fmt_bytes(v)})" if abs(v) >= 1024 else f"{v:,.2f} B"
    if isinstance(v, float):
        return f"{v:,.4f}".rstrip("0").rstrip(".") + (f" {unit}" if unit else "")
    if isinstance(v, int):
        return f"{v:,}" + (f" {unit}" if unit else "")
    return f"{v}" + (f" {unit}" if unit else "")


def render(p: Plan) -> str:
    d = p.device
    mode = f", mode {p.mode}" if p.mode else ""
    out = [f"{p.model.name} on {d.name} ({d.backend}, {fmt_bytes(d.memory_bytes)} as the backend reports it"
           f"{', ×' + str(d.count) if d.count > 1 else ''}) under {p.engine}{mode}"]
    if p.fits:
        out.append(f"KV cache: {p.kv_tokens:,} tokens  —  " +
                   ", ".join(f"{k}={v}" for k, v in p.engine_config.items()))
    else:
        out.append("Does not fit.")
    out.append(f"Binding limit: {p.binding.name} — {p.binding.reason}" +
               (f" [{p.binding.source}]" if p.binding.source else ""))
    out.append("")
    out.append("Ledger")
    width = max((len(l.name) for l in p.ledger), default=10)
    for l in p.ledger:
        mark = " ~" if l.estimate else "  "
        out.append(f" {mark}{l.name:<{width}}  {_value(l.value, l.unit)}")
        if l.formula:
            out.append(f"   {'':<{width}}  = {l.formula}" + (f"  [{l.source}]" if l.source else ""))
        if l.note:
            out.append(f"   {'':<{width}}  ({l.note})")
    if any(l.estimate for l in p.ledger):
        out.append("  (~ marks an estimate)")
    if p.what_if:
        out.append("")
        out.append("What if")
        for w in p.what_if:
            tokens = f"{w.kv_tokens:,} tokens" if w.kv_tokens is not None else "—"
            gain = f" (×{w.gain:.2f})" if w.gain else ""
            out.append(f"  - {w.change}: {tokens}{gain}, binding {w.binding}; knob: {w.knob}")
    if p.warnings:
        out.append("")
        for w in p.warnings:
            out.append(f"warning: {w}")
    return "\n".join(out)
