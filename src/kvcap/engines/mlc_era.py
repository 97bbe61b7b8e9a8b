"""Which MLC-LLM estimator a log came from: defaults and formulas changed over time.

An era is `current`, `cpp-YYYY[-MM]` (the C++ config.cc, May 2024 on) or `python-YYYY-MM` (the
Python engine of early 2024). Months are the granularity; a year without a month means its
January. Each switch names the pull request that made it (research/mlc.md §9).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache

from ..errors import OptionsError

CURRENT = (2026, 7)  # mlc-ai/mlc-llm @ 79d603f0 (2026-07-23), the code kvcap follows
_ERA = re.compile(r"^(python|cpp)-(\d{4})(?:-(\d{1,2}))?$")


@dataclass(frozen=True)
class Era:
    name: str
    python: bool
    date: tuple[int, int]

    @cached_property  # an era is asked the same questions for every mode of every plan
    def modes(self) -> bool:
        """local / interactive / server exist from #2126 (2024-04-12)."""
        return self.date >= (2024, 4)

    @cached_property
    def default_utilization(self) -> float:
        # #1840 (2024-02-26) 0.85; #1899 (2024-03-07) 0.90; #2268 (2024-05-03, C++) 0.85.
        if self.python:
            return 0.90 if self.date >= (2024, 3) else 0.85
        return 0.85

    @cached_property
    def temp_doubled(self) -> bool:
        """`temp_buffer_bytes *= 2` "for safety" exists only in the C++ engine (#2268)."""
        return not self.python

    @cached_property
    def opencl_floor(self) -> bool:
        return not self.python and self.date >= (2024, 6)      # #2410, 2024-05-27

    @cached_property
    def pp_division(self) -> bool:
        return not self.python and self.date >= (2024, 8)      # #2823, 2024-08-19

    @cached_property
    def metal_cap(self) -> bool:
        return self.date >= (2024, 3)                          # #1943, 2024-03-13

    @cached_property
    def default_max_batch_size(self) -> int:
        return 128 if self.date >= (2024, 10) else 80          # #2917, 2024-09-18

    @cached_property
    def interactive_sliding_cap(self) -> bool:
        # #2364 (2024-05-20) capped interactive mode by the sliding window; #3248 (2025-06-23) removed it.
        return not self.python and (2024, 6) <= self.date < (2025, 7)

    @cached_property
    def server_product_wraps(self) -> bool:
        # Before #2500 (2024-06-03) `max_num_sequence * max_single_sequence_length` overflowed int64.
        return not self.python and self.date < (2024, 6)

    @cached_property
    def mib_decimals(self) -> int:
        return 2 if self.python else 3


@lru_cache(maxsize=64)
def parse_era(name: str | None) -> Era:
    # One Era object per name: its cached properties are then computed once, not per plan.
    if name is None or name == "current":
        return Era("current", False, CURRENT)
    m = _ERA.match(str(name).strip().lower())
    if not m:
        raise OptionsError(f"engine_era {name!r} is not an era: write current, cpp-YYYY[-MM] or python-YYYY-MM")
    kind, year, month = m.group(1), int(m.group(2)), int(m.group(3) or 1)
    date = (year, month)
    if not 1 <= month <= 12 or date > CURRENT:
        raise OptionsError(f"engine_era {name!r}: month or date out of range (up to {CURRENT[0]}-{CURRENT[1]:02d})")
    if kind == "python":
        if date < (2024, 2):
            raise OptionsError(
                f"engine_era {name!r}: the January 2024 pre-release estimator (#1603) is not supported: its "
                "logged run used a draft (KV x1.05, no weight margin in the total) unlike the merged code "
                "(x1.10, 0.98*total - 1.04*params); supported eras start at python-2024-02")
        if date >= (2024, 6):
            raise OptionsError(f"engine_era {name!r}: the Python estimator ended in May 2024 (#2268); use cpp-{year}-{month:02d}")
    elif date < (2024, 5):
        raise OptionsError(f"engine_era {name!r}: the C++ estimator starts in May 2024 (#2268); use python-{year}-{month:02d}")
    return Era(str(name), kind == "python", date)
