"""The evaluation runner over a real index: both settings, on a catalog small enough to check."""

from __future__ import annotations

import pytest

from evaluation.rankers import BM25Ranker, RandomRanker
from evaluation.runner import evaluate_rankers
from indexer.bulk_index import index_catalog


def test_bm25_is_perfect_on_the_small_catalog_and_random_is_not(es, alias, small_catalog) -> None:
    index_catalog(es, small_catalog, alias, progress=False)
    result = evaluate_rankers(es, alias, small_catalog, ["q1", "q2"], [BM25Ranker(), RandomRanker(seed=3)], depth=10)
    bm25, rand = result.rows
    assert (result.queries, result.evaluable) == (2, 2)
    assert bm25.end_to_end["ndcg@10"] == pytest.approx(1.0)
    assert bm25.end_to_end["recall@10"] == pytest.approx(1.0)
    assert bm25.end_to_end["judged@10"] == pytest.approx((4 / 10 + 2 / 10) / 2)
    assert bm25.rerank_judged["clear-pair acc"] == pytest.approx(1.0)
    assert bm25.rerank_judged["clear pairs"] == 6  # q1: p1>p2, p1>p3, p1>p6, p2>p6, p3>p6; q2: p7>p5
    assert rand.end_to_end["ndcg@10"] < 1.0
    assert rand.end_to_end["recall@10"] == bm25.end_to_end["recall@10"]  # same candidates, other order
    assert result.ceiling_ndcg10 == pytest.approx(1.0)
