"""`kvcap web`: a local page over the same API as the CLI (optional extra `kvcap[web]`, which
needs nothing beyond the standard library).

    server.py   ThreadingHTTPServer, routes, limits, the error boundary
    api.py      the JSON endpoints (plan, compare, catalogs, upload) and the chart
    query.py    request parameters -> ModelSpec, DeviceSpec, engine options (no paths)
    upload.py   uploaded config.json / GGUF start / safetensors header, parsed in memory
    chart.py    the capacity-against-memory chart as SVG
    static/     index.html, app.js, style.css (plain, no CDN, no build step)
"""

from __future__ import annotations


def make_server(host: str = "127.0.0.1", port: int = 8000, **kwargs):
    from .server import make_server as _make
    return _make(host, port, **kwargs)


__all__ = ["make_server"]
