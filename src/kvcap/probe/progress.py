"""A progress bar on stderr: redrawn in place on a terminal, one line per step elsewhere."""

from __future__ import annotations

import sys
from typing import TextIO


class Bar:
    def __init__(self, stream: TextIO | None = None, width: int = 30, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled or total <= 0:
            return
        filled = min(self.width, self.width * done // total)
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {label}"
        if self.tty:
            end = "\n" if done >= total else ""
            self.stream.write(f"\r{line:<{self.width + 40}}{end}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
