"""`kvcap web`: loopback by default, a warning for any other address, a real process that serves
and stops, and no heavy import on the way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from kvcap.cli import build_parser, main


class FakeServer:
    url = "http://fake/"

    def __init__(self, host, port, **kw):
        self.host, self.port, self.kw = host, port, kw
        self.closed = False

    def serve_forever(self):
        return None

    def server_close(self):
        self.closed = True


@pytest.fixture
def fake(monkeypatch):
    made = []

    def make(host, port, **kw):
        made.append(FakeServer(host, port, **kw))
        return made[-1]
    monkeypatch.setattr("kvcap.web.make_server", make)
    return made


def test_default_is_loopback_without_a_warning(fake, capsys):
    args = build_parser().parse_args(["web"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    assert main(["web"]) == 0
    assert (fake[0].host, fake[0].port, fake[0].kw["max_upload"]) == ("127.0.0.1", 8000, 16 << 20) and fake[0].closed
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("host,warned", [("0.0.0.0", True), ("192.168.1.5", True), ("::", True),
                                         ("localhost", False), ("127.0.0.2", False), ("::1", False)])
def test_other_hosts_are_warned_about(fake, capsys, host, warned):
    assert main(["web", "--host", host, "--port", "0"]) == 0
    err = capsys.readouterr().err
    assert ("warning" in err and "not loopback" in err) is warned


@pytest.mark.parametrize("argv,words", [(["--port", "70000"], "--port"), (["--max-upload-mib", "0"], "--max-upload-mib")])
def test_bad_arguments_exit_2(fake, capsys, argv, words):
    assert main(["web", *argv]) == 2 and words in capsys.readouterr().err and not fake


def test_kvcap_web_process_serves_then_stops():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "kvcap", "web", "--port", "0", "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "serving on http://127.0.0.1:" in line, (line, proc.poll())
        url = line.split("serving on ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "api/engines", timeout=60) as r:
            assert "mlc" in [e["name"] for e in json.load(r)["engines"]]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_web_and_plot_modules_import_nothing_heavy():
    code = ("import sys, kvcap.web.server, kvcap.web.api, kvcap.commands.web, kvcap.commands.plot, kvcap.report.plot; "
            "heavy = [m for m in ('matplotlib', 'numpy', 'torch', 'safetensors', 'gguf') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
