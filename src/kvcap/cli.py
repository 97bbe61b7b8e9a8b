"""Command line: argument parsing only. Each command lives in `commands/<name>.py` with
`HELP`, `add_arguments(parser)` and `run(args) -> int`; this file wires them and turns
kvcap's errors into one-line messages and exit codes (2 bad input, 1 does not fit).
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from importlib.util import find_spec

from . import __version__
from .errors import KvcapError

# Order is the order of `kvcap --help`. A command whose module is absent is not offered.
COMMANDS = ("plan", "compare", "fit", "launch", "models", "inspect", "devices", "validate",
            "probe", "verify", "plot", "web")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other bad input
        self.exit(2, f"kvcap: error: {message} (see `{self.prog} --help`)\n")

    def _get_values(self, action, arg_strings):
        # `--device=--`: argparse (3.11) drops the '--' and hands the command [] instead of a
        # string (unconverted, even for type=int). Refuse it as `--device --` is refused.
        if action.option_strings and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument")
        return super()._get_values(action, arg_strings)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that command's subparser, so a cold `kvcap plan` does not
    import the other commands (their imports are most of a cold start)."""
    parser = _Parser(prog="kvcap", description="How much KV cache a model gets on a device under an engine.")
    parser.add_argument("--version", action="version", version=f"kvcap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        if (only is not None and name != only) or find_spec(f"kvcap.commands.{name}") is None:
            continue
        mod = import_module(f"kvcap.commands.{name}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    first = argv[0] if argv else None
    parser = build_parser(first if first in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KvcapError as e:
        print(f"kvcap: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("kvcap: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
