"""Pure arithmetic of the benchmark report: per-round ratios, their median and spread, geometric
means, log-log slopes and goal verdicts. No timing happens here (tests/test_benchmarks_harness.py).

A *round* is one fresh process per engine, run one after the other (convscope, then the other
engine), so the two times of a round saw the same machine state. The ratio of round r is
``ours[r] / theirs[r]`` (below 1: convscope is faster); the reported figure is the median over
rounds, and the spread is the minimum and maximum of the per-round ratios.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple


@dataclass(frozen=True)
class Spread:
    """Median of per-round values with their range, over ``n`` rounds."""

    median: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 2) -> str:
        """``"1.23 (1.10–1.40)"``; a single round has no range."""
        if self.n == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"


def spread(values: Sequence[Optional[float]]) -> Optional[Spread]:
    """Median, min and max of the values that exist (None marks a failed round); None if none."""
    present = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not present:
        return None
    return Spread(statistics.median(present), min(present), max(present), len(present))


def round_ratios(ours: Sequence[Optional[float]], theirs: Sequence[Optional[float]]):
    """``ours[r] / theirs[r]`` per round; None where either time is missing or not positive."""
    if len(ours) != len(theirs):
        raise ValueError(f"rounds differ: {len(ours)} against {len(theirs)}")
    return [a / b if a is not None and b is not None and a > 0 and b > 0 else None
            for a, b in zip(ours, theirs)]


def ratio_spread(ours, theirs) -> Optional[Spread]:
    """The median of the per-round ratios and their range (the figure the README quotes)."""
    return spread(round_ratios(ours, theirs))


def geomean(values: Sequence[float]) -> float:
    """exp(mean(log v)) of positive values; NaN when there are none."""
    values = [v for v in values if v is not None and v > 0]
    if not values:
        return float("nan")
    return math.exp(sum(math.log(v) for v in values) / len(values))


def geomean_per_round(ratio_rows: Sequence[Sequence[Optional[float]]]):
    """Given one list of per-round ratios per case, the geometric mean over cases of each round
    (None for a round where some case failed), so that its spread is the spread of the summary."""
    if not ratio_rows:
        return []
    rounds = len(ratio_rows[0])
    result = []
    for r in range(rounds):
        column = [row[r] for row in ratio_rows]
        result.append(None if any(v is None for v in column) else geomean(column))
    return result


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> Tuple[float, float]:
    """Least-squares fit of log y = a·log x + c: (a, r²). Time ∝ batch^a: a = 1 is linear,
    a < 1 means a fixed cost per call that larger batches amortise."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pairs) < 2:
        raise ValueError("a slope needs at least two positive points")
    mx = sum(p[0] for p in pairs) / len(pairs)
    my = sum(p[1] for p in pairs) / len(pairs)
    sxx = sum((p[0] - mx) ** 2 for p in pairs)
    if sxx == 0:
        raise ValueError("a slope needs at least two different x values")
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pairs)
    syy = sum((p[1] - my) ** 2 for p in pairs)
    a = sxy / sxx
    r2 = 1.0 if syy == 0 else (sxy * sxy) / (sxx * syy)
    return a, r2


def verdict(s: Optional[Spread], goal: Optional[float]) -> str:
    """Whether a ratio meets a goal "at most ``goal``": ``met`` when every round does,
    ``median met, spread crosses`` when the median does but some round does not, ``not met``
    otherwise; ``—`` without a goal, ``no data`` without rounds."""
    if goal is None:
        return "—"
    if s is None:
        return "no data"
    if s.high <= goal:
        return "met"
    if s.median <= goal:
        return "median met, spread crosses"
    return "not met"
