"""How many sessions interleaving needs to find the better ranker, as the gap between them shrinks.

    python -m bench interleaving [-f home-depot] [--repeats 20] [--cap 4000]

Offline, without the page (the page's own path is tested in tests/test_interleaving.py): ranker A
orders each graded query's judged products by their human grade; ranker B by the grade plus seeded
Gaussian noise of scale sigma (bigger sigma: a worse B). Shoppers follow evaluation/click_simulator.py's
position-based model on the team-drafted top 10. For each sigma: the mean NDCG@10 gap A - B (linear
gain, evaluation/ndcg.py) and the sessions until the sign test gives p < 0.05 for A, checked every 10
sessions (median over repeats, and how many repeats got there within `cap`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.click_simulator import ClickModel
from evaluation.interleaving import ARMS, Outcome, sign_test, team_draft
from evaluation.ndcg import ndcg_at

K = 10


@dataclass(frozen=True)
class GapRow:
    sigma: float
    ndcg_gap: float  # mean NDCG@10 of A minus B over the queries
    median_sessions: float  # NaN when fewer than half the repeats got there
    found: int  # repeats that reached p < 0.05 for A within the cap
    repeats: int


def noisy_order(grades: Mapping[str, float], sigma: float, rng: random.Random) -> list[str]:
    return sorted(grades, key=lambda p: (-(grades[p] + rng.gauss(0.0, sigma)), p))


def sessions_to_significance(queries: Sequence[tuple[Mapping[str, float], list[str], list[str]]],
                             model: ClickModel, seed: int, cap: int) -> int | None:
    rng = random.Random(seed)
    wins = losses = 0
    for n in range(1, cap + 1):
        grades, a, b = queries[rng.randrange(len(queries))]
        shown = team_draft(a, b, ARMS, rng, length=K)
        clicked = model.clicks([grades.get(pid) for pid, _ in shown], rng)
        arms = [shown[i][1] for i in clicked]
        sign = Outcome("", arms.count(ARMS[0]), arms.count(ARMS[1])).sign
        wins, losses = wins + (sign > 0), losses + (sign < 0)
        if n % 10 == 0 and wins > losses and sign_test(wins, losses) < 0.05:
            return n
    return None


def bench_interleaving(graded: Mapping[str, Mapping[str, float]], sigmas: Sequence[float], repeats: int = 20,
                       cap: int = 4000, seed: int = 0) -> list[GapRow]:
    pool = {q: g for q, g in sorted(graded.items()) if len(g) >= 4 and len(set(g.values())) > 1}
    model = ClickModel()
    rows = []
    for sigma in sigmas:
        rng = random.Random(seed)
        queries = [(g, sorted(g, key=lambda p: (-g[p], p)), noisy_order(g, sigma, rng)) for g in pool.values()]
        gap = float(np.mean([(ndcg_at(a, g, K) or 0.0) - (ndcg_at(b, g, K) or 0.0) for g, a, b in queries]))
        found = [n for r in range(repeats) if (n := sessions_to_significance(queries, model, seed + 1 + r, cap))]
        median = float(np.median(found)) if len(found) * 2 >= repeats else float("nan")
        rows.append(GapRow(sigma, gap, median, len(found), repeats))
    return rows
