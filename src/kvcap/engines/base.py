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
