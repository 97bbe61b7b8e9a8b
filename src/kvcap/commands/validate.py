"""kvcap validate FILE…: replay real engine logs and compare kvcap's predictions with them."""

from __future__ import annotations

import argparse

from . import common

HELP = "replay real engine logs (validation JSONL files) and compare"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="validation cases, JSON Lines (../shared/validation/*.jsonl)")
    p.add_argument("--check", action="store_true", help="exit 1 when any case fails")
    common.add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..validate import validate
    report = validate(args.files)
    if args.json:
        common.emit_json(report)
    else:
        print(render(report))
    failed = any(c["status"] == "fail" for c in report["cases"])
    return 1 if args.check and failed else 0


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, str):
        return v if len(v) <= 60 else v[:57] + "…"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def render(report: dict) -> str:
    cases = report["cases"]
    width = max((len(c["id"]) for c in cases), default=4)
    out = [f"{'case':<{width}}  {'engine':<9} {'status':<8} fields  note"]
    for c in cases:
        judged = [f for f in c["fields"] if f["ok"] is not None]
        fields = f"{sum(f['ok'] for f in judged)}/{len(judged)}" if judged else "—"
        out.append(f"{c['id']:<{width}}  {c['engine']:<9} {c['status']:<8} {fields:<7} {c['reason']}")
        for f in c["fields"]:
            if f["ok"] is False:
                out.append(f"{'':<{width}}    {f['name']}: observed {_fmt(f['observed'])}, predicted "
                           f"{_fmt(f['predicted'])}, from given {_fmt(f['predicted_from_given'])} "
                           f"(± {f['tolerance']:g})")
    out.append("")
    for engine, s in report["summary"].items():
        med = "—" if s["median_rel_err"] is None else f"{s['median_rel_err']:.2%}"
        mx = "—" if s["max_rel_err"] is None else f"{s['max_rel_err']:.2%}"
        out.append(f"{engine}: {s['pass']} pass, {s['fail']} fail, {s['skipped']} skipped; {s['exact']} exact end to "
                   f"end; relative error end to end: median {med}, max {mx}")
    return "\n".join(out)
