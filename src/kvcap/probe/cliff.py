"""The cliff detector: where does a step at fixed work get slower as the pool grows?

Pure arithmetic on measured step times (no torch), so it is tested on a simulated device.
A point is one pool size with the step times of one or more measurements (each measurement a
fresh allocation, fresh random pages). The baseline is the smallest pool. The noise is what the
baseline itself moves: half the spread between the 10th and 90th percentile of its step times,
or the difference between the medians of its repeated measurements, whichever is larger. A pool
is past the cliff when its step time exceeds baseline × (1 + tolerance) + noise; where a size
was measured again, the faster measurement counts, so one noisy run does not set a cap.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Sequence

DEFAULT_TOLERANCE = 0.10   # 10 % slower than the small-pool baseline


def quantile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of a non-empty sample."""
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass(frozen=True)
class Point:
    pool_bytes: int
    runs: tuple[tuple[float, ...], ...]   # seconds per step, one tuple per measurement

    @property
    def medians(self) -> tuple[float, ...]:
        return tuple(statistics.median(r) for r in self.runs)

    @property
    def step_s(self) -> float:
        """The point's step time: the fastest median among its measurements."""
        return min(self.medians)


@dataclass(frozen=True)
class Verdict:
    baseline_s: float
    noise_s: float
    tolerance: float
    threshold_s: float
    cliff_bytes: int | None            # first pool size past the threshold; None = none measured
    max_ok_bytes: int                   # largest pool measured before the cliff (or overall)
    measured_up_to_bytes: int
    slow: tuple[int, ...] = field(default=())  # every pool size past the threshold

    def to_json(self) -> dict:
        return {"baseline_s": self.baseline_s, "noise_s": self.noise_s, "tolerance": self.tolerance,
                "threshold_s": self.threshold_s, "cliff_bytes": self.cliff_bytes,
                "max_ok_bytes": self.max_ok_bytes, "measured_up_to_bytes": self.measured_up_to_bytes,
                "slow": list(self.slow)}


def baseline_noise(point: Point) -> float:
    """How much the baseline moves on its own, in seconds."""
    within = max((quantile(r, 0.9) - quantile(r, 0.1)) / 2 for r in point.runs)
    between = max(point.medians) - min(point.medians)
    return max(within, between)


def detect(points: Sequence[Point], tolerance: float = DEFAULT_TOLERANCE) -> Verdict:
    """Points in any order (sorted here by pool size); needs at least one with a step time."""
    pts = sorted((p for p in points if p.runs and all(p.runs)), key=lambda p: p.pool_bytes)
    if not pts:
        raise ValueError("no measured points")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    base = pts[0]
    baseline = base.step_s
    noise = baseline_noise(base)
    threshold = baseline * (1.0 + tolerance) + noise
    slow = tuple(p.pool_bytes for p in pts[1:] if p.step_s > threshold)
    cliff = slow[0] if slow else None
    ok = [p.pool_bytes for p in pts if cliff is None or p.pool_bytes < cliff]
    return Verdict(baseline_s=baseline, noise_s=noise, tolerance=tolerance, threshold_s=threshold,
                   cliff_bytes=cliff, max_ok_bytes=max(ok), measured_up_to_bytes=pts[-1].pool_bytes,
                   slow=slow)


def geometric_sizes(smallest: int, largest: int, factor: float = 2.0, align: int = 1) -> list[int]:
    """Pool sizes from `smallest` to `largest` growing by `factor`, each a multiple of `align`,
    the largest always included."""
    if smallest <= 0 or largest < smallest or factor <= 1.0:
        raise ValueError("need 0 < smallest <= largest and factor > 1")
    out: list[int] = []
    size = float(smallest)
    while size < largest:
        s = max(align, int(size) // align * align)
        if not out or s > out[-1]:
            out.append(s)
        size *= factor
    top = max(align, largest // align * align)
    if not out or top > out[-1]:
        out.append(top)
    return out
