"""Percentiles and summaries, with no numpy needed (the smoke test runs without the extra)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(values: Iterable[float], q: int) -> float:
    """The ``q``-th percentile (1-99) by linear interpolation; NaN for no values."""
    return summary(values, (q,))[f"p{q}"]


def summary(values: Iterable[float], percentiles: Sequence[int] = (50, 90, 95, 99)) -> dict[str, Any]:
    """Count, min, percentiles (linear interpolation, as numpy's default), max and mean (NaN
    when empty)."""
    data = [float(v) for v in values]
    if len(data) < 2:
        cuts = data * 99 or [math.nan] * 99
    else:
        cuts = statistics.quantiles(data, n=100, method="inclusive")
    return {
        "n": len(data),
        "min": min(data, default=math.nan),
        **{f"p{q}": cuts[q - 1] for q in percentiles},
        "max": max(data, default=math.nan),
        "mean": statistics.fmean(data) if data else math.nan,
    }


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is zero or missing."""
    if not denominator or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return numerator / denominator


def cdf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """Sorted values and their cumulative fractions (for plotting)."""
    ordered = sorted(values)
    n = len(ordered)
    return ordered, [(i + 1) / n for i in range(n)]


def fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    """A number for the report: rounded, with thousands separators, '-' for NaN/None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".rstrip() if unit else text


def fmt_ms(seconds: float | None, digits: int = 0) -> str:
    """Seconds shown as milliseconds."""
    if seconds is None or math.isnan(seconds):
        return "-"
    return fmt(seconds * 1000.0, digits, "ms")
