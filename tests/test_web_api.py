"""kvcap web: the JSON API against a real server on a free loopback port.

The server runs in a thread for this module and stops at its end; every request has a timeout.
Answers are compared with what the same API gives when called directly (one code path).
"""

from __future__ import annotations

import http.client
import json
import threading
import xml.etree.ElementTree as ET

import pytest

import kvcap
from kvcap.web.server import make_server

TIMEOUT = 60


@pytest.fixture(scope="module")
def server():
    srv = make_server("127.0.0.1", 0, quiet=True)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(10)
    assert not t.is_alive()


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body bytes) from one request on a fresh connection."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get_json(server, path: str):
    status, headers, body = request(server, "GET", path)
    assert headers["content-type"].startswith("application/json"), (status, body[:200])
    return status, json.loads(body)


M2 = "model=llama3_1_8b&device=m2-max-64gb&engine=mlc&o.mode=interactive"


def test_plan_is_the_api_plan(server):
    status, doc = get_json(server, f"/api/plan?{M2}")
    assert status == 200
    direct = kvcap.plan("llama3_1_8b", "m2-max-64gb", "mlc", mode="interactive").to_json()
    assert json.loads(json.dumps(direct, default=str)) == doc["plan"]
    # MLC caps a Metal KV cache at 32,768 tokens whatever the memory (design.md; PR #1943): the
    # budget here holds ~293k tokens, so the cap binds, named as the device cap on Metal.
    assert doc["plan"]["kv_tokens"] == 32768 and doc["fits"] is True
    assert doc["plan"]["binding"]["name"] == "device_cap" and "Metal" in doc["plan"]["binding"]["reason"]
    assert doc["device"]["backend"] == "metal" and doc["model"]["num_hidden_layers"] == 32


def test_cuda_device_gets_more_than_the_metal_cap(server):
    _, metal = get_json(server, f"/api/plan?{M2}")
    _, cuda = get_json(server, "/api/plan?model=llama3_1_8b&device=h100-sxm&engine=mlc&o.mode=interactive")
    assert cuda["plan"]["kv_tokens"] > metal["plan"]["kv_tokens"]
    assert cuda["plan"]["binding"]["name"] != "device_cap"


def test_launch_command_is_served_with_the_plan(server):
    _, doc = get_json(server, f"/api/plan?{M2}")
    from kvcap.launch import launch
    want = launch(kvcap.plan("llama3_1_8b", "m2-max-64gb", "mlc", mode="interactive")).to_json()
    assert doc["launch"] == want
    assert "max_total_seq_length=32768" in doc["launch"]["commands"][0]["shell"]


def test_custom_device_from_backend_and_memory(server):
    status, doc = get_json(server, "/api/plan?model=llama3_1_8b&backend=cuda&memory=24GiB&engine=llamacpp&o.n_ctx=8192")
    assert status == 200
    assert doc["plan"]["device"]["memory_bytes"] == 24 * 2**30 and doc["plan"]["device"]["backend"] == "cuda"
    direct = kvcap.plan("llama3_1_8b", kvcap.get_device(backend="cuda", memory="24GiB"), "llamacpp", n_ctx=8192)
    assert doc["plan"]["kv_tokens"] == direct.kv_tokens


def test_option_values_are_parsed_like_the_cli_set(server):
    # o.gpu_memory_utilization=0.5 is the float 0.5, as `--set gpu_memory_utilization=0.5` gives.
    _, doc = get_json(server, "/api/plan?model=llama3_1_8b&device=h100-sxm&engine=mlc&o.gpu_memory_utilization=0.5")
    direct = kvcap.plan("llama3_1_8b", "h100-sxm", "mlc", gpu_memory_utilization=0.5)
    assert doc["plan"]["kv_tokens"] == direct.kv_tokens
    assert doc["plan"]["engine_config"]["gpu_memory_utilization"] == 0.5


def test_compare_rows_are_the_compare_commands(server):
    from kvcap.commands.compare import compare_rows, default_engines
    status, doc = get_json(server, "/api/compare?model=llama3_1_8b&device=h100-sxm&context=8k&concurrency=4")
    assert status == 200 and (doc["context"], doc["concurrency"]) == (8192, 4)
    dev = kvcap.get_device("h100-sxm")
    rows = compare_rows(kvcap.load_model("llama3_1_8b"), dev, default_engines("cuda"), 8192, 4)
    assert doc["rows"] == json.loads(json.dumps([r.to_json() for r in rows], default=str))
    assert [r["engine"] for r in doc["rows"]] == default_engines("cuda")


def test_catalog_search(server):
    _, doc = get_json(server, "/api/models?q=llama%203.1%208b")
    assert "llama3_1_8b" in [m["key"] for m in doc["models"]]
    _, every = get_json(server, "/api/models")
    assert every["total"] == len(kvcap.model.catalog.entries())
    _, devs = get_json(server, "/api/devices?q=m2%20max%2064")
    hit = [d for d in devs["devices"] if d["key"] == "m2-max-64gb"]
    assert hit and hit[0]["backend"] == "metal" and hit[0]["memory_bytes"] == kvcap.get_device("m2-max-64gb").memory_bytes
    _, none = get_json(server, "/api/devices?q=zzzz-no-such")
    assert none == {"total": 0, "devices": []}


def test_engines_list_their_own_options(server):
    from kvcap.engines import available, get_engine
    _, doc = get_json(server, "/api/engines")
    by = {e["name"]: e for e in doc["engines"]}
    assert sorted(by) == sorted(available())
    assert by["mlc"]["options"] == dict(get_engine("mlc").OPTIONS)
    assert by["mlx"]["backends"] == ["metal"]
    assert doc["max_upload"] == server.max_upload


def test_chart_is_svg_with_caps_and_the_chosen_point(server):
    status, headers, body = request(server, "GET", f"/api/plot?{M2}")
    assert status == 200 and headers["content-type"] == "image/svg+xml"
    root = ET.fromstring(body)
    ns = "{http://www.w3.org/2000/svg}"
    series = {(e.get("data-engine")) for e in root.iter(f"{ns}polyline") if e.get("class") == "series"}
    # The chosen engine and every engine kvcap runs on Metal, each drawn where it fits.
    from kvcap.commands.compare import default_engines
    assert series == set(default_engines("metal"))
    caps = [(e.get("data-engine"), e.get("data-binding"), e.get("data-tokens")) for e in root.iter(f"{ns}line")
            if e.get("class") == "cap"]
    assert ("mlc", "device_cap", "32768") in caps
    chosen = [(e.get("data-engine"), e.get("data-tokens")) for e in root.iter(f"{ns}circle") if e.get("class") == "chosen"]
    assert ("mlc", "32768") in chosen


def test_page_and_assets_are_served_without_a_cdn(server):
    status, headers, html = request(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"
    for path, kind in (("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")):
        s, h, body = request(server, "GET", path)
        assert s == 200 and h["content-type"].startswith(kind) and len(body) > 500
        assert b"http://" not in body and b"https://" not in body   # nothing fetched from elsewhere
    assert b"https://" not in html and b"/static/app.js" in html


def test_head_has_no_body(server):
    status, headers, body = request(server, "HEAD", "/")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_unexpected_exception_is_a_json_500_not_a_traceback(server, monkeypatch, capsys):
    from kvcap.web import server as srv_mod

    def boom(q, uploads):
        raise RuntimeError("deliberate")
    monkeypatch.setitem(srv_mod.GET_ROUTES, "/api/models", boom)
    status, doc = get_json(server, "/api/models")
    assert status == 500 and "internal error" in doc["error"] and "deliberate" in doc["error"]
    assert "Traceback" not in doc["error"] and "\n" not in doc["error"]
