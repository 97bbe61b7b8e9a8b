"""What every engine policy shares: option checking and the table of device/backend rules.

Device- and backend-specific limits are data (`data/rules.json`), each with its reason and
source, so that they can be listed, overridden (`--cap N`, `--no-cap`) or replaced by a
measured calibration without touching an engine's formula.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from ..errors import OptionsError

RULES_FILE = Path(__file__).parent / "data" / "rules.json"


@dataclass(frozen=True)
class Rule:
    engine: str
    backend: str
    kind: str          # "kv_token_cap", "memory_floor", …
    value: int
    reason: str
    source: str


@lru_cache(maxsize=1)
def rules() -> tuple[Rule, ...]:
    if not RULES_FILE.exists():
        return ()
    return tuple(Rule(**r) for r in json.loads(RULES_FILE.read_text()))


def rule(engine: str, backend: str, kind: str) -> Rule | None:
    for r in rules():
        if r.engine == engine and r.backend == backend and r.kind == kind:
            return r
    return None


def check_options(engine: str, options: Mapping[str, Any], known: Mapping[str, str]) -> None:
    """Refuse option names the engine does not have, listing the ones it does."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise OptionsError(
            f"{engine} has no option {', '.join(map(repr, unknown))}; its options: {', '.join(sorted(known))}"
        )


def whole(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """An engine option that counts something: an int, an integral float, or text such as
    '8192' or '128k' (k = 1024, as context lengths are written). One-line OptionsError otherwise."""
    from ..units import parse_count
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise OptionsError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            value = int(text)
        else:
            value = parse_count(text, name)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or value != int(value):
            raise OptionsError(f"{name} must be a whole number, got {value!r}")
        value = int(value)
    if value < minimum:
        raise OptionsError(f"{name} must be at least {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise OptionsError(f"{name} must be at most {maximum}, got {value!r}")
    return value


def truth(name: str, value: Any) -> bool:
    """An on/off engine option: a bool, or 1/0, true/false, on/off, yes/no."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise OptionsError(f"{name} must be true or false (on/off), got {value!r}")
