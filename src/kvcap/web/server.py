"""The local web server: the standard library's ThreadingHTTPServer, a fixed route table, the
page's three static files held in memory, and one error boundary.

Security, for a server meant for one user on one machine (issue 8 item 4):
- bound to 127.0.0.1 unless the user asks otherwise (commands/web.py warns);
- the Host header must name this machine on a loopback bind (a DNS-rebinding page cannot
  reach the API under its own name);
- the upload is the only request with a body: it must carry `X-Kvcap: 1` (a header no plain
  cross-site form can send), declare its length, and stay under the limit, checked before a
  byte is read; any other request with a body is refused;
- static files are looked up in a dict built at start, never by a path from the request;
- every answer is JSON {"error": …} with a 4xx for bad input; an unexpected exception is a 500
  with a one-line JSON body (a kvcap bug, logged), never a traceback to the client.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Callable
from urllib.parse import urlsplit

from ..errors import InsufficientMemory, KvcapError
from . import api
from .upload import MAX_UPLOAD, UploadStore

STATIC = {  # URL path -> (file in web/static, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
GET_ROUTES: dict[str, Callable] = {
    "/api/models": api.models, "/api/devices": api.devices, "/api/plan": api.plan, "/api/compare": api.compare,
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or the name localhost."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def load_static() -> dict[str, tuple[bytes, str]]:
    root = files("kvcap.web") / "static"
    return {path: ((root / name).read_bytes(), ctype) for path, (name, ctype) in STATIC.items()}


class KvcapServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], *, max_upload: int = MAX_UPLOAD, quiet: bool = False):
        self.uploads = UploadStore()
        self.static = load_static()
        self.max_upload = max_upload
        self.quiet = quiet
        if ":" in address[0]:
            import socket
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def host_allowed(self, header: str | None) -> bool:
        """On a loopback bind, only loopback names (no DNS rebinding); on another bind, which
        the user chose and was warned about, any name."""
        if not is_loopback(self.server_address[0]):
            return True
        if not header:
            return False
        host = header.strip().lower()
        host = host[1:host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
        return is_loopback(host)


class Handler(BaseHTTPRequestHandler):
    server: KvcapServer
    server_version = "kvcap-web"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # so that a garbled request line still gets a status line
    timeout = 30  # seconds a connection may stay idle or trickle a request

    # ---- responses ------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        if status >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc) -> None:
        self._send(status, json.dumps(doc, default=str).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": " ".join(str(message).split())[:2000] or "error"})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (bad request line, headers too long, unknown method): JSON too.
        try:
            self._error(code, message or explain or "bad request")
        except OSError:
            pass

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        if not self.server.quiet:
            sys.stderr.write(f"kvcap web: {self.address_string()} {format % args}\n")

    # ---- the boundary ---------------------------------------------------------------------
    def _handle(self, method: str) -> None:
        try:
            self._route(method)
        except HTTPError as e:
            self._error(e.status, str(e))
        except InsufficientMemory as e:
            self._error(422, str(e))
        except KvcapError as e:
            self._error(400, str(e))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a kvcap bug: say so in one line, log the traceback here
            traceback.print_exc(file=sys.stderr)
            self._error(500, f"internal error (a kvcap bug, please report it): {type(e).__name__}: {e}")

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _other(self) -> None:
        self._error(405, f"method {self.command} is not allowed")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other  # noqa: N815

    def _route(self, method: str) -> None:
        if not self.server.host_allowed(self.headers.get("Host")):
            raise HTTPError(403, "this server answers requests to localhost / 127.0.0.1 only")
        parts = urlsplit(self.path)
        q = api.query.parse(parts.query)
        if method == "POST":
            if parts.path != "/api/upload":
                raise HTTPError(405, f"POST is for /api/upload only, not {parts.path[:80]}")
            self._json(200, api.upload(self._body(), q, self.server.uploads))
            return
        if self.headers.get("Content-Length", "0").strip() not in ("", "0") or self.headers.get("Transfer-Encoding"):
            raise HTTPError(413, f"{method} requests take no body")
        if parts.path in self.server.static:
            body, ctype = self.server.static[parts.path]
            self._send(200, body, ctype)
        elif parts.path == "/api/plot":
            self._send(200, api.chart(q, self.server.uploads).encode(), "image/svg+xml")
        elif parts.path == "/api/engines":
            self._json(200, api.engines(q, self.server.uploads, self.server.max_upload))
        elif parts.path in GET_ROUTES:
            self._json(200, GET_ROUTES[parts.path](q, self.server.uploads))
        elif parts.path == "/api/upload":
            raise HTTPError(405, "upload with POST")
        else:
            raise HTTPError(404, f"no such page: {parts.path[:80]}")

    def _body(self) -> bytes:
        if self.headers.get("X-Kvcap") != "1":
            raise HTTPError(403, "uploads come from the kvcap page (header X-Kvcap: 1)")
        if self.headers.get("Transfer-Encoding"):
            raise HTTPError(411, "send the upload with a Content-Length, not chunked")
        text = self.headers.get("Content-Length")
        if text is None or not text.strip().isdigit():
            raise HTTPError(411, "the upload needs a Content-Length")
        n = int(text)
        if n > self.server.max_upload:
            raise HTTPError(413, f"the upload is {n:,} bytes, above the limit of {self.server.max_upload:,} "
                                 f"({self.server.max_upload >> 20} MiB): send a config.json, or the start of a "
                                 f"GGUF / the header of a safetensors file")
        body = self.rfile.read(n)
        if len(body) != n:
            raise HTTPError(400, f"the upload ended after {len(body)} of {n} bytes")
        return body


def make_server(host: str = "127.0.0.1", port: int = 8000, *, max_upload: int = MAX_UPLOAD,
                quiet: bool = False) -> KvcapServer:
    """A server bound to (host, port) — port 0 picks a free one; call serve_forever() to run it."""
    try:
        return KvcapServer((host, port), max_upload=max_upload, quiet=quiet)
    except OSError as e:
        from ..errors import OptionsError
        raise OptionsError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
