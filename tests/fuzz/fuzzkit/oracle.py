"""Run one fuzz input under a time bound and sort what happened.

Outcomes: "result" (a value, or exit 0/1 from the CLI: 1 is "does not fit"), "error" (a kvcap
error whose message is one line; exit 2 from the CLI with `kvcap: error: …` as the last line of
stderr), "traceback" (any other exception, an unexpected exit code, stderr that is not kvcap's
own lines, or an error message that is not one line) and "hang" (the time bound hit).
"""

from __future__ import annotations

import contextlib
import io
import signal
import traceback
from dataclasses import dataclass
from typing import Any, Callable

RESULT, ERROR, TRACEBACK, HANG = "result", "error", "traceback", "hang"


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no `except Exception` in kvcap swallows it."""


@dataclass(frozen=True)
class Outcome:
    kind: str
    detail: str = ""      # the error line, or the traceback's last lines

    @property
    def bad(self) -> bool:
        return self.kind in (TRACEBACK, HANG)


@contextlib.contextmanager
def time_bound(seconds: float):
    """SIGALRM after `seconds` raises Hang in the main thread (where pytest and the script run)."""
    def fire(signum, frame):
        raise Hang(f"no answer within {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _tail(e: BaseException) -> str:
    lines = traceback.format_exception(type(e), e, e.__traceback__)
    return "".join(lines[-4:]).strip()


def call(fn: Callable[..., Any], *args: Any, timeout_s: float = 10.0, **kwargs: Any) -> Outcome:
    """fn(*args, **kwargs) -> its outcome. A KvcapError must carry a non-empty one-line message."""
    from kvcap.errors import KvcapError
    try:
        with time_bound(timeout_s):
            fn(*args, **kwargs)
    except Hang as e:
        return Outcome(HANG, str(e))
    except KvcapError as e:
        msg = str(e)
        if not msg.strip() or "\n" in msg.strip():
            return Outcome(TRACEBACK, f"{type(e).__name__} message is not one line: {msg!r}")
        return Outcome(ERROR, f"{type(e).__name__}: {msg}")
    except Exception as e:  # noqa: BLE001 - anything else is what the fuzzer hunts
        return Outcome(TRACEBACK, _tail(e))
    return Outcome(RESULT)


def cli(argv: list[str], timeout_s: float = 10.0) -> Outcome:
    """kvcap.cli.main(argv) in-process, its output captured. Exit 0/1 is a result; exit 2 an
    error whose stderr is one line; anything else (another code, an exception) a traceback."""
    from kvcap.cli import main
    out, err = io.StringIO(), io.StringIO()
    try:
        with time_bound(timeout_s), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:          # argparse: --help/--version exit 0, bad flags exit 2
                rc = e.code if isinstance(e.code, int) else 2
    except Hang as e:
        return Outcome(HANG, f"{argv}: {e}")
    except Exception as e:  # noqa: BLE001
        return Outcome(TRACEBACK, f"{argv}: {_tail(e)}")
    return judge_exit(argv, rc, err.getvalue())


def judge_exit(argv: list[str], rc: object, text: str) -> Outcome:
    """The outcome of a finished command from its exit code and stderr (in-process or not)."""
    if "Traceback (most recent call last)" in text:
        return Outcome(TRACEBACK, f"{argv}: {text[-600:]}")
    if rc in (0, 1):
        return Outcome(RESULT, str(rc))
    if rc == 2:
        # The error is the last line; notes before it (`kvcap plot: … not drawn`) are kvcap's own.
        lines = [l for l in text.splitlines() if l.strip()]
        if not lines or not lines[-1].startswith("kvcap: error: ") or not all(l.startswith("kvcap") for l in lines):
            return Outcome(TRACEBACK, f"{argv}: exit 2 without a one-line error: {text[-600:]!r}")
        return Outcome(ERROR, lines[-1])
    return Outcome(TRACEBACK, f"{argv}: exit code {rc!r}; stderr {text[-400:]!r}")


def assert_clean(outcome: Outcome, what: object) -> None:
    """A test's verdict: fail, printing the input, on a traceback or a hang."""
    assert not outcome.bad, f"{outcome.kind} on {what!r:.2000}:\n{outcome.detail}"
