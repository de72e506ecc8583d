"""Ranking metrics through ranx, plus the figures ranx does not have.

Conventions, printed with every table:
- NDCG@10 is ranx's `ndcg` (Järvelin & Kekäläinen, *linear* gain: DCG = sum gain_i / log2(i+1)).
- MRR@10 and Recall@100 are binary: an item counts as relevant when its gain is >= 1
  (Home Depot: mean rating >= 2, at least partly relevant; WANDS: Partial or Exact).
- Unjudged items have gain 0. Queries with no item of positive gain are left out of every
  metric (NDCG is undefined for them) and their number is reported.

ranx truncates relevance to integers, so gains are scaled by GAIN_SCALE first: Home Depot grades
are means of 3 or 4 ratings, multiples of 1/12, so the scaled gains are exact; NDCG is unchanged
by a common scale.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from ranx import Qrels, Run, evaluate

GAIN_SCALE = 12
RELEVANT_GAIN = 1.0
CLEAR_PAIR_GAP = 1.0
_BINARY_LEVEL = f"-l{int(RELEVANT_GAIN * GAIN_SCALE)}"

END_TO_END_METRICS = {"ndcg@10": "ndcg@10", "mrr@10": f"mrr@10{_BINARY_LEVEL}", "recall@100": f"recall@100{_BINARY_LEVEL}"}
RERANK_METRICS = {"ndcg@10": "ndcg@10", "mrr@10": f"mrr@10{_BINARY_LEVEL}"}

Grades = dict[str, dict[str, float]]  # query id -> product id -> gain
Scores = dict[str, dict[str, float]]  # query id -> product id -> model score


def evaluable_queries(grades: Grades) -> list[str]:
    """Queries with at least one item of positive gain (the others have no defined NDCG)."""
    return sorted(q for q, items in grades.items() if any(g > 0 for g in items.values()))


def to_qrels(grades: Grades, query_ids: list[str]) -> Qrels:
    return Qrels({q: {p: int(round(g * GAIN_SCALE)) for p, g in grades[q].items()} for q in query_ids})


def to_run(scores: Scores, query_ids: list[str], name: str) -> Run:
    # ranx needs every query present; an empty result list is a real (all-zero) outcome.
    run = Run({q: dict(scores.get(q, {})) or {"__none__": 0.0} for q in query_ids}, name=name)
    return run


def ranx_metrics(grades: Grades, scores: Scores, metrics: dict[str, str], name: str) -> dict[str, float]:
    queries = evaluable_queries(grades)
    values = evaluate(to_qrels(grades, queries), to_run(scores, queries, name), list(metrics.values()))
    if not isinstance(values, dict):  # ranx returns a bare number for a single metric
        values = {next(iter(metrics.values())): values}
    return {label: float(values[metric]) for label, metric in metrics.items()}


def condensed(grades: Grades, scores: Scores) -> Scores:
    """The run with unjudged items removed (condensed lists, Sakai 2007), before any cut-off."""
    return {q: {p: s for p, s in items.items() if p in grades.get(q, {})} for q, items in scores.items()}


def judged_at(grades: Grades, scores: Scores, k: int = 10) -> float:
    """Share of the top-k results that carry a human grade (coverage, not relevance)."""
    shares = []
    for q in evaluable_queries(grades):
        top = sorted(scores.get(q, {}).items(), key=lambda item: -item[1])[:k]
        shares.append(sum(p in grades[q] for p, _ in top) / k)
    return sum(shares) / len(shares) if shares else float("nan")


def clear_pair_accuracy(grades: Grades, scores: Scores, gap: float = CLEAR_PAIR_GAP) -> tuple[float, int]:
    """Share of clear pairs (same query, gains >= `gap` apart) the model orders right; ties count 1/2.

    Returns (accuracy, number of pairs). Items missing from `scores` score as the lowest.
    """
    right, pairs = 0.0, 0
    for q, items in grades.items():
        model = scores.get(q, {})
        for (a, ga), (b, gb) in itertools.combinations(items.items(), 2):
            if abs(ga - gb) < gap:
                continue
            better, worse = (a, b) if ga > gb else (b, a)
            sb, sw = model.get(better, float("-inf")), model.get(worse, float("-inf"))
            right += 1.0 if sb > sw else 0.5 if sb == sw else 0.0
            pairs += 1
    return (right / pairs if pairs else float("nan")), pairs


def per_query_spearman(pairs: Iterable[tuple[Sequence[float], Sequence[float]]]) -> list[float]:
    """Spearman correlation of each query's two score lists (a model's and a reference's, same
    candidates in the same order); queries where it is undefined (fewer than two candidates, a
    constant list) are left out rather than counted as 0."""
    from scipy.stats import spearmanr

    rhos = []
    for a, b in pairs:
        if len(a) < 2 or not (np.ptp(a) > 0 and np.ptp(b) > 0):
            continue
        rhos.append(float(spearmanr(a, b).statistic))
    return rhos
