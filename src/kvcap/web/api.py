"""The JSON endpoints: each calls the API the CLI calls (kvcap.plan, the catalogs,
commands/compare.py `compare_rows`, report/plot.py `sweep`, kvcap.launch) and returns what
the CLI's --json would print, so the page and the terminal cannot disagree.

Every function takes the parsed query ({name: value}) and the server's upload store, and
returns a JSON-able dict (or, for the chart, SVG text). Bad input raises a KvcapError; the
server turns it into a 4xx with {"error": message}.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any, Mapping

from ..errors import KvcapError, OptionsError
from . import query

MAX_RESULTS = 60
CHART_POINTS = 32


def model_summary(spec) -> dict[str, Any]:
    stored = sum(spec.stored_bytes.values()) if spec.stored_bytes else None
    return {"name": spec.name, "model_type": spec.model_type, "architecture": spec.architecture,
            "source": spec.source, "num_hidden_layers": spec.num_hidden_layers, "kv_layers": len(spec.kv_layers),
            "num_key_value_heads": spec.num_key_value_heads, "head_dim": spec.head_dim,
            "context_window": spec.context_window, "dtype": spec.dtype, "num_params": spec.num_params,
            "stored_bytes": stored, "quantization": dict(spec.quantization), "notes": list(spec.notes)}


def device_summary(d) -> dict[str, Any]:
    return {"key": d.key, "name": d.name, "backend": d.backend, "memory_bytes": d.memory_bytes, "count": d.count,
            "vendor": d.vendor, "kind": d.kind, "memory_source": d.memory_source, "confidence": d.confidence}


def models(q: Mapping[str, str], uploads=None) -> dict:
    """Catalog models whose name contains the words of `q` (all of them when `q` is empty)."""
    from ..model.catalog import entries, norm
    words = [norm(w) for w in q.get("q", "").split() if norm(w)]
    hits = [e for e in entries() if all(w in norm(e.key) for w in words)]
    return {"total": len(hits), "models": [{"key": e.key, "source": e.source} for e in hits[:MAX_RESULTS]]}


def devices(q: Mapping[str, str], uploads=None) -> dict:
    from ..device.catalog import entries, norm
    words = [norm(w) for w in q.get("q", "").split() if norm(w)]
    hits = [d for d in entries() if all(w in norm(d.key) or w in norm(d.name) for w in words)]
    return {"total": len(hits), "devices": [device_summary(d) for d in hits[:MAX_RESULTS]]}


def engines(q: Mapping[str, str], uploads=None, max_upload: int | None = None) -> dict:
    """Each engine's own option names and help, and the backends it runs on."""
    from ..commands.compare import ENGINE_BACKENDS
    from ..device.spec import BACKENDS
    from ..engines import available, get_engine
    out = []
    for name in available():
        mod = get_engine(name)
        out.append({"name": name, "options": dict(getattr(mod, "OPTIONS", {})),
                    "backends": list(ENGINE_BACKENDS.get(name, BACKENDS))})
    doc = {"engines": out, "backends": list(BACKENDS)}
    if max_upload is not None:
        doc["max_upload"] = max_upload   # the page sends no more of a GGUF file than this
    return doc


def _launch(p) -> dict | None:
    """The launch command (kvcap.launch, issue 5) when that module is present and the plan fits."""
    if find_spec("kvcap.launch") is None or not p.fits:
        return None
    from ..launch import launch
    try:
        return launch(p).to_json()
    except KvcapError as e:
        return {"error": str(e)}


def plan(q: Mapping[str, str], uploads) -> dict:
    import kvcap
    spec = query.model(q, uploads)
    dev = query.device(q)
    name, options = query.engine(q)
    p = kvcap.plan(spec, dev, name, **options)
    out = {"plan": p.to_json(), "fits": p.fits, "model": model_summary(spec), "device": device_summary(dev)}
    launch = _launch(p)
    if launch is not None:
        out["launch"] = launch
    return out


def compare(q: Mapping[str, str], uploads) -> dict:
    from ..commands.compare import compare_rows, default_engines
    spec = query.model(q, uploads)
    dev = query.device(q)
    context, concurrency = query.context_and_concurrency(q)
    names = query.engines_list(q) or default_engines(dev.backend)
    rows = compare_rows(spec, dev, names, context, concurrency)
    return {"model": spec.name, "device": device_summary(dev), "context": context, "concurrency": concurrency,
            "rows": [r.to_json() for r in rows]}


def chart_series(q: Mapping[str, str], uploads) -> list:
    """The chosen engine with its options, then the other engines (`vs=`, default: those that
    run on the device's backend) with their defaults, each swept over 1/32 … 2 × the memory."""
    from ..commands.compare import default_engines
    from ..engines import ALIASES, get_engine
    from ..report.plot import memory_grid, sweep
    spec = query.model(q, uploads)
    dev = query.device(q)
    chosen, options = query.engine(q)
    chosen = getattr(get_engine(chosen), "NAME", chosen)
    others = query.engines_list(q, "vs")
    others = default_engines(dev.backend) if others is None else others
    names = [chosen] + [n for n in dict.fromkeys(ALIASES.get(o.lower(), o.lower()) for o in others) if n != chosen]
    grid = memory_grid(2 * dev.memory_bytes, CHART_POINTS, [dev.memory_bytes])
    return [sweep(spec, dev, n, options if n == chosen else {}, grid) for n in names]


def chart(q: Mapping[str, str], uploads) -> str:
    from .chart import render
    series = chart_series(q, uploads)
    return render(series, f"KV capacity against memory: {series[0].device} ({series[0].backend})")


def upload(body: bytes, q: Mapping[str, str], uploads) -> dict:
    filename = q.get("filename", "")
    token = q.get("token", "").strip() or None
    if len(filename) > 200:
        raise OptionsError("filename is too long")
    token, up = uploads.add(body, filename, token)
    return {"token": token, "model_param": f"upload:{token}", "label": up.label, "note": up.note,
            "model": model_summary(up.spec)}
