"""kvcap verify's text report: the plan's memory lines against what was allocated and used."""

from __future__ import annotations

from ..units import fmt_bytes
from .verify import VerifyResult


def _b(n: int | None) -> str:
    return "-" if n is None else fmt_bytes(n)


def _diff(planned: int, measured: int | None) -> str:
    if measured is None:
        return ""
    delta = measured - planned
    pct = f" ({delta / planned:+.2%})" if planned else ""
    return f"{'+' if delta >= 0 else '-'}{fmt_bytes(abs(delta))}{pct}"


def render(r: VerifyResult) -> str:
    p, d, kv = r.plan, r.device, r.kv
    out = [f"kvcap verify: {p.model.name} under {p.engine} on {d.name} ({d.backend}, {fmt_bytes(d.total_memory_bytes)})",
           f"plan: {p.kv_tokens:,} KV tokens, " + ", ".join(f"{k}={v}" for k, v in p.engine_config.items()),
           f"KV cache as allocated: {kv.layout} layout, {kv.num_layers} layers x {kv.pages:,} pages of {kv.page} tokens"
           f" = {fmt_bytes(kv.total_bytes)} ({kv.rule})",
           f"run: one prefill chunk of {kv.prefill_chunk:,} tokens and one decode step of {kv.batch} sequences, every layer"
           + (" - ok" if r.run_ok else " - FAILED"), "",
           f"  {'line':<28}{'role':<11}{'planned':>14}{'allocated':>14}{'reserved':>14}  allocated - planned"]
    for l in r.lines:
        out.append(f"  {l.name:<28}{l.role:<11}{fmt_bytes(l.planned):>14}{_b(l.allocated):>14}{_b(l.reserved):>14}"
                   f"  {_diff(l.planned, l.allocated)}")
    if d.type != "cuda":
        out += ["", f"  planned (the lines verify allocates)  {fmt_bytes(r.planned_total)}",
                f"  peak memory: not measured on {d.type} (torch reports it on CUDA/ROCm only)"]
        return "\n".join(out + _limit(r) + [f"note: {n}" for n in r.notes])
    out += ["",
            f"  planned (the lines verify allocates)  {fmt_bytes(r.planned_total)}",
            f"  peak in tensors (torch)               {fmt_bytes(r.peak_allocated)}  {_diff(r.planned_total, r.peak_allocated)}",
            f"  peak reserved (torch)                 {fmt_bytes(r.peak_reserved)}  {_diff(r.planned_total, r.peak_reserved)}",
            f"  of which the run's own scratch        {fmt_bytes(r.run_extra)} (beyond the workspaces)",
            f"  device in use before verify           {fmt_bytes(r.baseline_used)} (context, other processes)",
            f"  peak device in use                    {fmt_bytes(r.peak_device_used)} of {fmt_bytes(d.total_memory_bytes)}"]
    if "total" in p.memory:
        out.append(f"  plan's total line                     {fmt_bytes(int(p.memory['total']))}")
    return "\n".join(out + _limit(r) + [f"note: {n}" for n in r.notes])


def _limit(r: VerifyResult) -> list[str]:
    if r.limit_tokens is None:
        return []
    ratio = r.plan_over_limit or 0.0
    flag = "  (over 1: the plan promises more than fits)" if ratio > 1 else ""
    return ["", f"limit: {r.limit_tokens:,} KV tokens allocate and run ({len(r.limit_trials)} trials); "
                f"plan / limit = {r.plan.kv_tokens:,} / {r.limit_tokens:,} = {ratio:.4f}{flag}"]
