"""kvcap models [--family F] [--json]: the embedded catalog, grouped by family."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ModelError
from ..units import fmt_bytes
from . import common

HELP = "list the catalog of models kvcap knows offline, grouped by family"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", "-f", help="only this family (e.g. llama, qwen, gemma, deepseek)")
    common.add_json(p)


def describe(entry) -> dict[str, Any]:
    """One catalog entry with its headline numbers; an unsupported one says why."""
    from ..model import hf
    row: dict[str, Any] = {"name": entry.key, "family": entry.family, "model_type": entry.model_type,
                           "source": entry.source, "path": entry.path}
    try:
        spec = hf.from_config(entry.config(), entry.key, f"catalog:{entry.source}:{entry.path}")
    except ModelError as e:
        row["unsupported"] = str(e)
        return row
    kinds: dict[str, int] = {}
    for l in spec.layers:
        key = "mtp" if l.is_mtp else "shared" if l.kv_source is not None else l.kind
        kinds[key] = kinds.get(key, 0) + 1
    row.update(params=spec.num_params, layers=spec.num_hidden_layers, context_window=spec.context_window,
               layer_kinds=kinds, kv_bytes_per_token_16bit=2 * spec.kv_elems_per_token(include_mtp=False),
               state_elems_per_sequence=sum(l.state_elems for l in spec.layers if not l.is_mtp))
    return row


def run(args: argparse.Namespace) -> int:
    from ..model import catalog
    rows = [describe(e) for e in catalog.by_family(args.family)]
    rows.sort(key=lambda r: (r["family"], r["name"].lower()))
    if args.json:
        common.emit_json(rows)
        return 0
    family = None
    for r in rows:
        if r["family"] != family:
            family = r["family"]
            print(f"\n{family}" if r is not rows[0] else family)
        if "unsupported" in r:
            print(f"  {r['name']:<46} {r['source']:<10} unsupported: {r['unsupported']}")
            continue
        kinds = ", ".join(f"{n} {k}" for k, n in r["layer_kinds"].items())
        ctx = "-" if r["context_window"] is None else f"{r['context_window']:,}"
        kv = fmt_bytes(r["kv_bytes_per_token_16bit"]) + "/tok" if r["kv_bytes_per_token_16bit"] else "no KV"
        print(f"  {r['name']:<46} {r['source']:<10} {r['params'] / 1e9:>8.2f}B  ctx {ctx:>10}  {kv:>13}  {kinds}")
    return 0
