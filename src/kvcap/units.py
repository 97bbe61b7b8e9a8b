"""Parsing and printing sizes and counts: "24GiB", "21845MiB", "128k", "0.9".

Bytes and tokens are ints everywhere in kvcap. Decimal prefixes (GB, MB) mean powers of 1000,
binary ones (GiB, MiB) powers of 1024, as the units say; engines that print "MB" for MiB are
handled where their log lines are read, not here.
"""

from __future__ import annotations

import math
import re

from .errors import OptionsError

MiB = 1 << 20
GiB = 1 << 30

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "kib": 1 << 10,
    "m": 10**6, "mb": 10**6, "mib": 1 << 20,
    "g": 10**9, "gb": 10**9, "gib": 1 << 30,
    "t": 10**12, "tb": 10**12, "tib": 1 << 40,
}
_COUNT_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}
_NUM = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int, what: str = "size") -> int:
    """'24GiB' -> 25769803776. A bare number is bytes. Must be positive."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = _NUM.match(str(text))
        unit = m.group(2).lower() if m else None
        if not m or unit not in _SIZE_UNITS:
            raise OptionsError(f"{what} {text!r} is not a size: write e.g. 24GiB, 21845MiB, 80GB or a byte count")
        value = int(float(m.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise OptionsError(f"{what} must be positive, got {text!r}")
    return value


def parse_count(text: str | int, what: str = "count") -> int:
    """'128k' -> 131072 (k = 1024 tokens, as context lengths are written), '4096' -> 4096."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = _NUM.match(str(text))
        unit = m.group(2).lower() if m else None
        if not m or unit not in _COUNT_UNITS:
            raise OptionsError(f"{what} {text!r} is not a count: write e.g. 4096 or 128k")
        number = float(m.group(1)) * _COUNT_UNITS[unit]
        if number != int(number):
            raise OptionsError(f"{what} {text!r} is not a whole number")
        value = int(number)
    if value <= 0:
        raise OptionsError(f"{what} must be positive, got {text!r}")
    return value


def parse_fraction(text: str | float, what: str = "fraction") -> float:
    """A number in (0, 1]."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise OptionsError(f"{what} {text!r} is not a number: write a fraction such as 0.9") from None
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise OptionsError(f"{what} must be in (0, 1], got {text!r}")
    return value


def fmt_bytes(n: float) -> str:
    """Human form with binary units: 4517404672 -> '4.21 GiB'."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit, size in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            return f"{sign}{n / size:.2f} {unit}"
    return f"{sign}{n:g} B"


def fmt_tokens(n: int) -> str:
    return f"{n:,}"
