"""The page's SVG chart, from hand-made series: valid SVG, lines break where nothing fits, caps,
the band and the chosen point present, text escaped, refused engines listed."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from kvcap.report.plot import Cap, Point, Series
from kvcap.web.chart import render

NS = "{http://www.w3.org/2000/svg}"
GiB = 1 << 30


def _svg(series, title=""):
    return ET.fromstring(render(series, title))


def _cls(root, tag, cls):
    return [e for e in root.iter(NS + tag) if e.get("class") == cls]


def test_lines_break_where_nothing_fits_and_caps_are_drawn():
    pts = (Point(1 * GiB, 1000, "memory"), Point(2 * GiB, 0, "refused"), Point(3 * GiB, 2000, "memory"),
           Point(4 * GiB, 4096, "device_cap"), Point(5 * GiB, 4096, "device_cap"))
    s = Series("mlc", "Dev", "dev", "metal", pts, pts[3], (Cap("device_cap", 4096),))
    root = _svg([s])
    lines = _cls(root, "polyline", "series")
    assert len(lines) == 2                                   # 1 point, then the 3 after the gap
    assert [len(l.get("points").split()) for l in lines] == [1, 3]
    caps = _cls(root, "line", "cap")
    assert [(c.get("data-binding"), c.get("data-tokens")) for c in caps] == [("device_cap", "4096")]
    # The cap line is horizontal at the height of the capped points.
    y_cap = float(caps[0].get("y1"))
    assert y_cap == float(caps[0].get("y2")) == float(lines[1].get("points").split()[-1].split(",")[1])
    dot = _cls(root, "circle", "chosen")
    assert dot and dot[0].get("data-tokens") == "4096" and float(dot[0].get("cy")) == y_cap


def test_more_tokens_are_drawn_higher():
    pts = (Point(1 * GiB, 1024, "memory"), Point(2 * GiB, 4096, "memory"))
    s = Series("vllm", "GPU", "gpu", "cuda", pts, pts[1], ())
    ys = [float(p.split(",")[1]) for p in _cls(_svg([s]), "polyline", "series")[0].get("points").split()]
    assert ys[1] < ys[0]                                     # SVG y grows downwards


def test_paging_band_and_refused_engine_listed():
    pts = (Point(1 * GiB, 500, "fits_but_will_page", 500), Point(2 * GiB, 1000, "memory", 3000),
           Point(3 * GiB, 4000, "memory"))
    ok = Series("mlx", "Mac", "mac", "metal", pts, pts[2], ())
    bad = Series("vllm", "Mac", "mac", "metal", (), None, (), "vLLM <does not> run on Metal & co")
    text = render([ok, bad], "a <title> & more")
    root = ET.fromstring(text)                               # escaped text keeps the XML valid
    assert _cls(root, "polygon", "paging")
    skipped = _cls(root, "text", "skipped")
    assert skipped and "vLLM <does not> run on Metal & co" in skipped[0].text
    assert "a <title> & more" in "".join(t.text or "" for t in root.iter(NS + "text"))
    # A paging-only point has no resident tokens: the line starts at the second point.
    assert len(_cls(root, "polyline", "series")[0].get("points").split()) == 2


def test_nothing_fits_is_said_not_drawn():
    s = Series("mlc", "Tiny", "tiny", "cuda", (Point(GiB, 0, "insufficient_memory"),), None, ())
    root = _svg([s])
    assert not _cls(root, "polyline", "series")
    assert any("nothing fits" in (t.text or "") for t in root.iter(NS + "text"))
