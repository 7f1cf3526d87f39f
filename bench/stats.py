"""Percentiles and summaries, with no numpy needed (the smoke test runs without the extra)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summary(values: Iterable[float]) -> dict[str, Any]:
    """Count, min, p50, p90, p95, p99, max and mean of ``values`` (NaN when empty)."""
    data = [float(v) for v in values]
    return {
        "n": len(data),
        "min": min(data) if data else math.nan,
        "p50": percentile(data, 50),
        "p90": percentile(data, 90),
        "p95": percentile(data, 95),
        "p99": percentile(data, 99),
        "max": max(data) if data else math.nan,
        "mean": sum(data) / len(data) if data else math.nan,
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
