"""Text and JSON for advise: a fit answer, and the ranked what-ifs appended to a plan report."""

from __future__ import annotations

from typing import Any

from ..errors import KvcapError
from ..units import fmt_bytes
from .types import FitResult, Miss, Solution
from .whatif import RankedWhatIf


# ---- ranked what-ifs --------------------------------------------------------------------------------
def what_ifs_text(items: tuple[RankedWhatIf, ...], base_fits: bool) -> str:
    out = ["Ranked what-ifs (one change each, best gain first; kvcap advise)"]
    if not items:
        out.append("  (no single change in kvcap's search gives more usable KV)")
    for i, r in enumerate(items, 1):
        gain = f"×{r.gain:.2f}" if r.gain is not None else ("fits" if not base_fits else "—")
        conc = f" = {r.concurrency:,} × the plan's context" if r.concurrency and r.concurrency > 1 else ""
        out.append(f"  {i:>2}. {gain:>6}  {r.usable_tokens:>10,} tokens{conc}: {r.change}")
        out.append(f"      knob: {r.knob}; binding then: {r.binding}; cost: {r.cost}")
    return "\n".join(out)


# ---- fit ------------------------------------------------------------------------------------------------
def _layout(s: Solution) -> str:
    c = s.config
    split = "layers" if c.engine in ("llamacpp", "ollama") else "TP"
    parts = []
    if c.layout.tp > 1:
        parts.append(f"{split} {c.layout.tp}")
    if c.layout.pp > 1:
        parts.append(f"PP {c.layout.pp}")
    if c.layout.nodes > 1:
        parts.append(f"{c.layout.nodes} nodes")
    if s.replicas > 1:
        parts.append(f"{s.replicas} replicas")
    return ", ".join(parts) or "1 device"


def _miss_text(m: Miss, k: int) -> str:
    if m.config is None or m.scope == "all":
        return f"{m.engine}: {m.reason}"
    c = m.config
    where = f"{c.layout.gpus} × {c.device.key or c.device.name}" if c.layout.gpus > 1 else (c.device.key or c.device.name)
    return (f"{m.engine} ({m.scope}): best was {where}, weights {c.weights.label}, KV {c.kv.label}: holds "
            f"{m.concurrency} of {k} — {m.reason}")


def fit_text(r: FitResult, launches: dict[int, Any] | None = None) -> str:
    m = r.model
    head = (f"{m.name}: {r.concurrency:,} sequence{'s' if r.concurrency > 1 else ''} × {r.context:,} tokens "
            f"({r.concurrency * r.context:,} KV tokens); up to {r.max_gpus} GPUs per node, {r.nodes} node"
            f"{'s' if r.nodes > 1 else ''}")
    out = [head, f"searched with {r.plans} engine plans in {r.seconds:.2f} s"]
    if not r.feasible:
        out.append("")
        out.append("No configuration in the search space serves this.")
        cm = r.closest_miss()
        if cm is not None:
            out.append("Closest: " + _miss_text(cm, r.concurrency))
    else:
        out.append("")
        rows = [("#", "devices", "engine", "layout", "weights", "KV", "serves", "KV tokens", "binding", "memory")]
        for i, s in enumerate(r.solutions, 1):
            c = s.config
            alike = len(c.device_class.members) - 1
            dev = f"{s.devices} × {c.device.key or c.device.name}" + (f" (+{alike} alike)" if alike else "")
            serves = f"{s.served.concurrency}{'+' if not s.served.exact else ''}" + (
                f" ×{s.replicas}" if s.replicas > 1 else "")
            rows.append((str(i), dev, c.engine, _layout(s), c.weights.label, c.kv.label, serves,
                         f"{s.plan.kv_tokens:,}", s.plan.binding.name, fmt_bytes(s.memory)))
        widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
        for row in rows:
            out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        notes: dict[str, list[int]] = {}
        for i, s in enumerate(r.solutions, 1):
            for n in s.notes:
                notes.setdefault(n, []).append(i)
        if notes:
            out.append("")
            out += [f"  [{','.join(map(str, rows))}] {n}" for n, rows in notes.items()]
        out.append("")
        out.append("serves: sequences of the context one replica holds ('+': at least, the engine sizes exactly what "
                   "it is asked); memory: all devices, as their backends report it.")
        out.append("Listed: " + ("every configuration that serves." if r.complete else
                   "the best answers and each engine's best; one with more devices, more memory and no less "
                   "quantization is left out, and larger devices serve too (--all lists every configuration)."))
    served = {s.config.engine for s in r.solutions}
    out_engines = [mm for mm in r.misses if mm.engine not in served]
    elsewhere = [mm for mm in r.misses if mm.engine in served]
    if out_engines:
        out.append("")
        out.append("Engines that cannot serve this (their closest miss):" if r.feasible else "Why each engine fails:")
        out += [f"  {_miss_text(mm, r.concurrency)}" for mm in out_engines]
    if elsewhere:
        out.append("")
        out.append("Not served there either:")
        out += [f"  {_miss_text(mm, r.concurrency)}" for mm in elsewhere]
    for i, lt in (launches or {}).items():
        out.append("")
        out.append(f"Launch #{i}:")
        out.append(lt.text() if hasattr(lt, "text") else f"  ({lt})")
    return "\n".join(out)


def solution_json(s: Solution, rank: int) -> dict:
    c = s.config
    return {"rank": rank, "engine": c.engine, "device": c.device.key or c.device.name, "device_name": c.device.name,
            "alike": [d.key for d in c.device_class.members[1:]], "devices": s.devices, "replicas": s.replicas,
            "nodes": s.nodes, "layout": {"tp": c.layout.tp, "pp": c.layout.pp, "nodes": c.layout.nodes},
            "weights": c.weights.label, "kv_cache": c.kv.label, "concurrency": s.served.concurrency,
            "concurrency_exact": s.served.exact, "kv_tokens": s.plan.kv_tokens, "binding": s.plan.binding.to_json(),
            "memory_bytes": s.memory, "options": dict(s.plan.options), "engine_config": dict(s.plan.engine_config),
            "notes": list(s.notes)}


def miss_json(m: Miss) -> dict:
    c = m.config
    return {"engine": m.engine, "scope": m.scope, "concurrency": m.concurrency, "reason": m.reason,
            "config": None if c is None else {"device": c.device.key or c.device.name, "gpus": c.layout.gpus,
                                              "tp": c.layout.tp, "pp": c.layout.pp, "weights": c.weights.label,
                                              "kv_cache": c.kv.label}}


def fit_json(r: FitResult, launches: dict[int, Any] | None = None) -> dict:
    cm = r.closest_miss()
    doc = {"model": {"name": r.model.name, "source": r.model.source}, "context": r.context,
           "concurrency": r.concurrency, "max_gpus": r.max_gpus, "nodes": r.nodes, "feasible": r.feasible,
           "complete": r.complete, "plans": r.plans, "seconds": round(r.seconds, 3),
           "solutions": [solution_json(s, i) for i, s in enumerate(r.solutions, 1)],
           "misses": [miss_json(m) for m in r.misses],
           "closest_miss": None if r.feasible or cm is None else miss_json(cm)}
    for i, lt in (launches or {}).items():
        doc["solutions"][i - 1]["launch"] = lt.to_json() if hasattr(lt, "to_json") else {"error": str(lt)}
    return doc


def launches_for(r: FitResult, count: int, model_ref: str | None = None) -> dict[int, Any]:
    """Launch commands of the first `count` answers (an error where kvcap cannot build one)."""
    from ..launch import launch
    out: dict[int, Any] = {}
    for i, s in enumerate(r.solutions[:count], 1):
        try:
            out[i] = launch(s.plan, model_ref, nodes=s.config.layout.nodes, replicas=s.replicas)
        except KvcapError as e:
            out[i] = e
    return out


# ---- appended to `kvcap plan` ------------------------------------------------------------------------
def plan_extras(plan, advise: bool = True, launch: bool = False, model_ref: str | None = None) -> tuple[str, dict]:
    """Text sections and JSON keys `kvcap plan` adds to a plan report: `ranked_what_if` (the engine's
    own `what_if` stays as it is) and, with --launch, `launch`."""
    from .whatif import ranked_what_ifs
    sections, doc = [], {}
    if advise:
        items = ranked_what_ifs(plan)
        sections.append(what_ifs_text(items, plan.fits))
        doc["ranked_what_if"] = [r.to_json() for r in items]
    if launch:
        from ..launch import launch as make_launch
        try:
            lt = make_launch(plan, model_ref)
            sections.append("Launch\n" + lt.text())
            doc["launch"] = lt.to_json()
        except KvcapError as e:
            sections.append(f"Launch: {e}")
            doc["launch"] = {"error": str(e)}
    return "\n\n".join(sections), doc
