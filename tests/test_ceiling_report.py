"""The student ceiling report's arithmetic on small fixed inputs (reranker/training/ceiling_report.py)."""

from __future__ import annotations

import numpy as np
import pytest

from reranker.training.ceiling_report import (BLEND_FEATURES, Ceiling, GroupFigures, QueryGroup, best_blend,
                                              group_figures, mean_spearman)


def group(ids, bm25, zero_shot, tuned, teacher, grades) -> QueryGroup:
    columns = dict(zip(BLEND_FEATURES, (np.array(bm25, float), np.array(zero_shot, float), np.array(tuned, float))))
    return QueryGroup(list(ids), columns, np.array(teacher, float), grades)


# Query 1: only BM25 puts the relevant item first; query 2: only the tuned cosine does. A blend of
# both (and no zero-shot cosine) is the only way to get both right.
Q1 = group("abc", bm25=[3, 2, 1], zero_shot=[0, 1, 2], tuned=[0.5, 0.6, 0.4], teacher=[3, 2, 1], grades={"a": 3.0})
Q2 = group("xyz", bm25=[3, 2.9, 1], zero_shot=[0, 1, 2], tuned=[0.1, 0.9, 0.2], teacher=[1, 3, 2], grades={"y": 3.0})


def test_the_best_blend_needs_both_columns_and_gets_both_queries_right() -> None:
    value, weights = best_blend([Q1, Q2], grid=(0.0, 0.5, 1.0))
    assert value == pytest.approx(1.0)
    bm25, zero_shot, tuned = weights
    assert bm25 > 0 and tuned > 0 and zero_shot == 0
    # each column alone gets one query right: the first at rank 1, the second at rank 2 or 3
    alone, _ = best_blend([Q1, Q2], features=("BM25",), grid=(1.0,))
    assert alone == pytest.approx((1.0 + 1 / np.log2(3)) / 2)


def test_spearman_skips_queries_where_it_is_undefined() -> None:
    pairs = [(np.array([1.0, 2, 3]), np.array([1.0, 2, 3])), (np.array([1.0, 1, 1]), np.array([3.0, 2, 1])),
             (np.array([5.0]), np.array([5.0])), (np.array([3.0, 2, 1]), np.array([1.0, 2, 3]))]
    assert mean_spearman(pairs) == pytest.approx(0.0)  # +1 and -1; the constant and the single one left out


def test_group_figures_rank_by_each_column_and_by_the_teacher() -> None:
    figures = group_figures("dev", [Q1, Q2])
    assert figures.queries == 2
    assert figures.ndcg["teacher"] == pytest.approx(1.0)
    assert figures.spearman["BM25"] == pytest.approx((1.0 + -0.5) / 2)
    assert figures.ndcg["zero-shot cosine"] == pytest.approx((1 / np.log2(4) + 1 / np.log2(3)) / 2)


def test_the_lines_say_what_share_of_the_teachers_dev_gain_the_blend_keeps() -> None:
    dev = GroupFigures("dev", 10, {"tuned cosine": 0.8}, {"BM25": 0.30, "teacher": 0.40})
    lines = Ceiling([dev], 0.36, (1.0, 0.0, 0.5)).lines()
    assert lines[0] == "dev (10 queries): Spearman with the teacher: tuned cosine 0.800"
    assert lines[-1].endswith("0.3600 (BM25 1, zero-shot cosine 0, tuned cosine 0.5); keeps 60% of the teacher's dev gain over BM25")
