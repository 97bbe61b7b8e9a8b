"""Replay real engine logs (../shared/validation/*.jsonl) and compare kvcap's predictions.

Protocol for an engine `X`: a module `kvcap.validate.X` with `replay(case) -> dict`:
    {"end_to_end":  {observed_field: predicted, …, "mode_lines": {mode: {field: predicted}}},
     "from_given":  {…same shape, predicted from the case's `given` intermediates…}}   (optional)
or raising `Skip(reason)` when the case cannot be replayed. An engine without a module is
skipped with "no policy for engine X yet".

Each observed field is compared with its tolerance: the case's own, else half a unit of the last
decimal the log printed (ints exact, strings equal). A field is judged on its from-given
prediction when the replay made one, else on the end-to-end one; the summary's relative errors
are end to end. A replay may add "from_given_spread": {field: amount}: how far a from-given
prediction moves across the uncertainty of the given values themselves (a given backed out of a
rounded log line); that amount is added to the field's tolerance for the from-given judgement.
A replay may also add "end_to_end_tolerance": {field: amount}: the error bar the engine's own
ledger states for an estimated prediction (the same rule for every case, never fitted to one);
a field judged end to end (no from-given prediction) passes within log rounding + that amount.
A replay may add "from_given_bound": {field: "upper"} when the given is one of several workers'
values and the engine takes the minimum over workers: the from-given prediction then bounds the
observed value from above, and the field passes when observed <= predicted + tolerance.
"""

from __future__ import annotations

import json
import statistics
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Iterable

from ..errors import KvcapError
from .schema import problem

MAX_FILE_BYTES = 64 << 20


class CaseFileError(KvcapError):
    """A validation file that cannot be read or is not JSON Lines of cases."""


class Skip(Exception):
    """A case this replay cannot judge; the reason is reported."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Observed(float):
    """A float from a case file that remembers how it was printed (for its rounding)."""

    text: str

    def __new__(cls, text: str):
        obj = super().__new__(cls, text)
        obj.text = text
        return obj


def load_cases(paths: Iterable[str | Path]) -> list[dict]:
    cases: list[dict] = []
    for path in paths:
        p = Path(path)
        try:
            if not p.is_file():      # /dev/zero or a FIFO would never end (or never start)
                raise CaseFileError(f"cannot read {p}: " + ("not a regular file" if p.exists() else "no such file"))
            size = p.stat().st_size
            if size > MAX_FILE_BYTES:
                raise CaseFileError(f"{p}: larger than {MAX_FILE_BYTES >> 20} MiB, not a case file")
            with open(p, "rb") as f:     # read(n) allocates n: ask for the file's size, bounded above
                raw = f.read(size + 1)
            if len(raw) > size:
                raise CaseFileError(f"{p}: the file grew while being read")
            text = raw.decode("utf-8")
        except OSError as e:
            raise CaseFileError(f"cannot read {p}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise CaseFileError(f"{p} is not UTF-8 text") from None
        except ValueError as e:     # a path with a NUL byte
            raise CaseFileError(f"cannot read {str(p)!r}: {e}") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                case = json.loads(line, parse_float=Observed)
            except (json.JSONDecodeError, RecursionError) as e:
                raise CaseFileError(f"{p}:{n}: not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
            if not isinstance(case, dict) or not isinstance(case.get("id"), str) \
                    or not isinstance(case.get("engine"), str) or not isinstance(case.get("observed"), dict):
                raise CaseFileError(f"{p}:{n}: a case needs a string 'id', a string 'engine' and an 'observed' object")
            wrong = problem(case)
            if wrong:
                raise CaseFileError(f"{p}:{n}: case {case['id']!r}: {wrong} (see validation/README.md)")
            cases.append(case)
    return cases


def tolerance(case: dict, name: str, observed: Any) -> float:
    tol = (case.get("tolerance") or {}).get(name.split(".")[-1])
    if isinstance(tol, dict) and isinstance(tol.get("abs"), (int, float)):
        return float(tol["abs"])
    if isinstance(observed, Observed) and "." in observed.text and "e" not in observed.text.lower():
        return 0.5 * 10 ** -len(observed.text.split(".", 1)[1])
    return 0.0


def _close(observed: Any, predicted: Any, tol: float) -> bool:
    if predicted is None:
        return False
    if isinstance(observed, str) or isinstance(predicted, str):
        return observed == predicted
    if isinstance(observed, bool) or isinstance(predicted, bool):
        return observed == predicted
    return abs(float(predicted) - float(observed)) <= tol * (1 + 1e-9) + 1e-12


def _rel(observed: Any, predicted: Any) -> float | None:
    if isinstance(observed, (str, bool)) or predicted is None or isinstance(predicted, str) or not observed:
        return None
    return abs(float(predicted) - float(observed)) / abs(float(observed))


def replay(case: dict) -> dict:
    """One case -> {"id", "engine", "status", "reason", "fields"} (+ internal relative errors)."""
    engine = case["engine"]
    out: dict[str, Any] = {"id": case["id"], "engine": engine, "status": "skipped", "reason": "", "fields": []}
    if not engine.isidentifier() or find_spec(f"{__name__}.{engine}") is None:
        out["reason"] = f"no policy for engine {engine} yet"
        return out
    try:
        result = import_module(f"{__name__}.{engine}").replay(case)
    except Skip as s:
        out["reason"] = s.reason
        return out
    e2e, given = result.get("end_to_end") or {}, result.get("from_given")
    spread = result.get("from_given_spread") or {}
    bars = result.get("end_to_end_tolerance") or {}
    bounds = result.get("from_given_bound") or {}
    rels: list[float] = []
    fields = []
    observed = [(k, v) for k, v in case["observed"].items()]
    for mode, values in (case.get("mode_lines") or {}).items():
        observed += [(f"{mode}.{k}", v) for k, v in values.items()]
    for name, obs in observed:
        p1 = _lookup(e2e, name)
        p2 = _lookup(given, name) if given else None
        tol = tolerance(case, name, obs)
        exact_e2e = _close(obs, p1, tol)
        judged = p1
        if given and p2 is not None:
            judged, tol = p2, tol + float(spread.get(name, 0.0))
        else:
            tol += float(bars.get(name, 0.0))
        # A field neither prediction covers (e.g. memory when the device total is unknown) is
        # not judged: it is listed in the reason, never counted as a pass.
        if p1 is None and p2 is None:
            ok, how = None, None
        elif given and p2 is not None and bounds.get(name) == "upper" and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in (obs, p2)):   # a string obs: equal or not
            ok, how = float(obs) <= float(p2) + tol, "from_given_upper_bound"
        else:
            ok = _close(obs, judged, tol)
            how = "from_given" if given and p2 is not None else "end_to_end"
        rel = _rel(obs, p1)
        if rel is not None:
            rels.append(rel)
        fields.append({"name": name, "observed": obs, "predicted": p1, "predicted_from_given": p2,
                       "tolerance": tol, "ok": ok, "judged": how, "exact_end_to_end": exact_e2e})
    out["fields"] = fields
    judged_fields = [f for f in fields if f["ok"] is not None]
    unjudged = [f["name"] for f in fields if f["ok"] is None]
    if not judged_fields:
        out["status"] = "skipped"
        out["reason"] = "nothing predicted to compare" + (f" ({', '.join(unjudged)} not predicted)" if unjudged else "")
    else:
        out["status"] = "pass" if all(f["ok"] for f in judged_fields) else "fail"
        parts = []
        if out["status"] == "fail":
            parts.append(f"off: {', '.join(f['name'] for f in judged_fields if not f['ok'])}")
        if unjudged:
            parts.append(f"not predicted: {', '.join(unjudged)}")
        out["reason"] = "; ".join(parts)
    note = result.get("note")
    if note:
        out["reason"] = f"{out['reason']}; {note}" if out["reason"] else note
    out["_rel"] = rels
    return out


def _lookup(pred: dict | None, name: str) -> Any:
    if not pred:
        return None
    if "." in name:
        mode, field = name.split(".", 1)
        return ((pred.get("mode_lines") or {}).get(mode) or {}).get(field)
    return pred.get(name)


def validate(paths: Iterable[str | Path]) -> dict:
    results = [replay(c) for c in load_cases(paths)]
    summary: dict[str, dict] = {}
    rels: dict[str, list[float]] = {}
    for r in results:
        s = summary.setdefault(r["engine"], {"pass": 0, "fail": 0, "skipped": 0, "exact": 0,
                                             "median_rel_err": None, "max_rel_err": None})
        s[r["status"]] += 1
        if r["status"] != "skipped":
            rels.setdefault(r["engine"], []).extend(r["_rel"])
            if all(f["exact_end_to_end"] for f in r["fields"] if f["ok"] is not None):
                s["exact"] += 1
    for engine, values in rels.items():
        if values:
            summary[engine]["median_rel_err"] = statistics.median(values)
            summary[engine]["max_rel_err"] = max(values)
    for r in results:
        r.pop("_rel", None)
        for f in r["fields"]:
            f.pop("exact_end_to_end", None)
    return {"cases": results, "summary": summary}
