"""Metric conventions on cases small enough to compute by hand."""

from __future__ import annotations

import math

import pytest

from evaluation import metrics

GRADES = {"q": {"a": 2.0, "b": 1.0, "c": 0.0}}
SCORES = {"q": {"z": 3.0, "b": 2.0, "a": 1.0}}  # z is unjudged: gain 0
IDCG = 2 + 1 / math.log2(3)


def test_ndcg_is_linear_gain_with_unjudged_as_zero() -> None:
    value = metrics.ranx_metrics(GRADES, SCORES, {"ndcg@10": "ndcg@10"}, "m")["ndcg@10"]
    assert value == pytest.approx((1 / math.log2(3) + 2 / math.log2(4)) / IDCG)


def test_condensed_ndcg_drops_unjudged_items_before_the_cut() -> None:
    condensed = metrics.condensed(GRADES, SCORES)
    assert condensed == {"q": {"b": 2.0, "a": 1.0}}
    value = metrics.ranx_metrics(GRADES, condensed, {"ndcg@10": "ndcg@10"}, "m")["ndcg@10"]
    assert value == pytest.approx((1 + 2 / math.log2(3)) / IDCG)


def test_fractional_grades_survive_ranx_integer_relevance() -> None:
    grades = {"q": {"a": 2 / 3, "b": 1 / 3}}
    value = metrics.ranx_metrics(grades, {"q": {"b": 2.0, "a": 1.0}}, {"ndcg@10": "ndcg@10"}, "m")["ndcg@10"]
    assert value == pytest.approx((1 / 3 + (2 / 3) / math.log2(3)) / (2 / 3 + (1 / 3) / math.log2(3)))


def test_mrr_counts_gain_of_at_least_one_as_relevant() -> None:
    value = metrics.ranx_metrics(GRADES, SCORES, metrics.RERANK_METRICS, "m")["mrr@10"]
    assert value == pytest.approx(0.5)  # b (gain 1) at rank 2
    low = {"q": {"a": 2 / 3, "b": 2.0}}
    assert metrics.ranx_metrics(low, {"q": {"a": 2.0, "b": 1.0}}, metrics.RERANK_METRICS, "m")["mrr@10"] == pytest.approx(0.5)


def test_queries_without_positive_gain_are_left_out() -> None:
    grades = {**GRADES, "empty": {"x": 0.0}}
    assert metrics.evaluable_queries(grades) == ["q"]
    with_empty = metrics.ranx_metrics(grades, SCORES, {"ndcg@10": "ndcg@10"}, "m")["ndcg@10"]
    assert with_empty == metrics.ranx_metrics(GRADES, SCORES, {"ndcg@10": "ndcg@10"}, "m")["ndcg@10"]


def test_clear_pair_accuracy_uses_only_pairs_a_full_grade_apart() -> None:
    # Pairs: (a,b) gap 1 -> b above a: wrong; (a,c) gap 2 -> c unscored: right; (b,c) gap 1: right.
    accuracy, pairs = metrics.clear_pair_accuracy(GRADES, {"q": {"b": 2.0, "a": 1.0}})
    assert (accuracy, pairs) == (pytest.approx(2 / 3), 3)
    tie, _ = metrics.clear_pair_accuracy({"q": {"a": 2.0, "b": 0.0}}, {"q": {"a": 1.0, "b": 1.0}})
    assert tie == 0.5


def test_judged_at_10_is_the_share_of_graded_items_in_the_top_10() -> None:
    assert metrics.judged_at(GRADES, SCORES, 10) == pytest.approx(0.2)


def test_the_pages_one_list_ndcg_is_ranx_ndcg() -> None:
    from evaluation.ndcg import ndcg_at

    grades = {"q": {"a": 2.0, "b": 1.0, "c": 0.0, "d": 7 / 12, "e": 1.5}}
    lists = [["z", "b", "a"], ["e", "d", "c", "b", "a"], ["a", "b", "c", "d", "e"], list("abcdefghijklmnop")[::-1]]
    for ranked in lists:
        scores = {"q": {pid: float(len(ranked) - i) for i, pid in enumerate(ranked)}}
        expected = metrics.ranx_metrics(grades, scores, {"ndcg@10": "ndcg@10"}, "m")["ndcg@10"]
        assert ndcg_at(ranked, grades["q"], 10) == pytest.approx(expected, abs=1e-9), ranked
