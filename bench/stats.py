"""Latency summaries shared by the benches."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Stats:
    n: int
    p50: float
    p95: float
    p99: float
    mean: float
    max: float


def stats(values: list[float]) -> Stats:
    """Percentiles, mean and max of some milliseconds; NaN figures when there are none."""
    if not values:
        return Stats(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    a = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return Stats(len(a), float(p50), float(p95), float(p99), float(a.mean()), float(a.max()))
