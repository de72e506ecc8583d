"""Comparing two rankers query by query: bootstrap intervals, win / tie / loss, paired-test verdicts.

Inputs are per-query metric values ({query id: value}, as `eval.json`'s `per_query` holds them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from common.errors import ShopsearchError

TIE_EPS = 1e-9  # per-query values within this are a tie (the same ranking gives the same value)
SIGNIFICANCE = 0.05


class ComparisonError(ShopsearchError, ValueError):
    """Per-query values that cannot be compared (no queries, or different query sets)."""


def bootstrap_ci(values: Sequence[float], resamples: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over queries: `resamples` draws of as many queries
    with replacement (seeded, so a report is reproducible)."""
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        raise ComparisonError("no per-query values to bootstrap")
    if not 0 < level < 1:
        raise ComparisonError(f"confidence level must be between 0 and 1, not {level}")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def differences(model: Mapping[str, float], base: Mapping[str, float]) -> dict[str, float]:
    """model - base per query, over the same queries."""
    if set(model) != set(base):
        missing = sorted(set(model) ^ set(base))
        raise ComparisonError(f"the two rankers were scored on different queries (e.g. {missing[0]!r})")
    return {q: float(model[q]) - float(base[q]) for q in sorted(model)}


@dataclass(frozen=True)
class WinTieLoss:
    wins: int
    ties: int
    losses: int

    @property
    def queries(self) -> int:
        return self.wins + self.ties + self.losses


def win_tie_loss(model: Mapping[str, float], base: Mapping[str, float], eps: float = TIE_EPS) -> WinTieLoss:
    """Queries where the model is above the base, equal (within `eps`), below."""
    diffs = differences(model, base).values()
    return WinTieLoss(sum(d > eps for d in diffs), sum(abs(d) <= eps for d in diffs), sum(d < -eps for d in diffs))


def verdict(p: float | None, mean_difference: float, alpha: float = SIGNIFICANCE) -> str:
    """The paired test's answer in words: better / worse (p < alpha), or no significant difference."""
    if p is None:
        return "not tested"
    if p < alpha:
        return f"{'better' if mean_difference > 0 else 'worse'} (p = {p:.2g})"
    return f"no significant difference (p = {p:.2g})"
