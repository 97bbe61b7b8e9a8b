"""kvcap web [--port P] [--host H]: serve the local page (127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import argparse
import sys

HELP = "serve a local web page: pick a model, device and engine; see the plan, engines side by side, the chart"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", "-p", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only); anything else is reachable "
                        "from the network and is warned about")
    p.add_argument("--max-upload-mib", type=int, default=16, help="largest upload in MiB (default 16)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not log requests")


def run(args: argparse.Namespace) -> int:
    from ..errors import OptionsError
    from ..web import make_server
    from ..web.server import is_loopback

    if not 0 <= args.port <= 65535:
        raise OptionsError(f"--port must be 0 to 65535, got {args.port}")
    if not 1 <= args.max_upload_mib <= 256:
        raise OptionsError(f"--max-upload-mib must be 1 to 256, got {args.max_upload_mib}")
    if not is_loopback(args.host):
        print(f"kvcap web: warning: listening on {args.host}, not loopback: anyone who can reach this machine "
              f"can use the page and upload files to it", file=sys.stderr)
    server = make_server(args.host, args.port, max_upload=args.max_upload_mib << 20, quiet=args.quiet)
    print(f"kvcap web: serving on {server.url} (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("kvcap web: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
