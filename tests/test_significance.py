"""Paired tests between evaluation rows: which comparisons are made, and that they can tell."""

from __future__ import annotations

from evaluation.runner import EvalResult, RankerResult
from evaluation.significance import paired_tests

QUERIES = [f"q{n}" for n in range(30)]
GRADES = {q: {"good": 3.0, "fair": 0.5 + n % 4 * 0.5, "bad": 0.0} for n, q in enumerate(QUERIES)}
BEST = {q: {"good": 3.0, "fair": 2.0, "bad": 1.0} for q in QUERIES}
WORST = {q: {"good": 1.0, "fair": 2.0, "bad": 3.0} for q in QUERIES}
# agrees with BEST on all but two queries: too close to call
NEAR = {q: (WORST[q] if n < 2 else BEST[q]) for n, q in enumerate(QUERIES)}


def result(rows: dict[str, dict]) -> EvalResult:
    ranked = [RankerResult(name, {}, {}, 0.0, e2e_scores=scores, judged_scores=scores) for name, scores in rows.items()]
    return EvalResult("shop", "test", "s1", len(QUERIES), len(QUERIES), 100, 1.0, ranked, GRADES)


def test_rows_are_tested_against_each_baseline_and_the_named_pairs_only() -> None:
    tests = paired_tests(result({"base": WORST, "model": BEST, "ablation": NEAR}), ["base"],
                         pairs=[("model", "ablation")])
    assert set(tests["base"]) == set()
    assert set(tests["model"]) == {"vs base", "vs ablation"}
    assert set(tests["ablation"]) == {"vs base"}
    assert set(tests["model"]["vs base"]) == {"e2e ndcg@10", "e2e mrr@10", "judged ndcg@10"}


def test_a_consistent_gain_is_significant_and_a_near_tie_is_not() -> None:
    tests = paired_tests(result({"base": WORST, "model": BEST, "ablation": NEAR}), ["base"],
                         pairs=[("model", "ablation")])
    assert tests["model"]["vs base"]["e2e ndcg@10"] < 0.05
    assert tests["model"]["vs ablation"]["e2e ndcg@10"] > 0.05
