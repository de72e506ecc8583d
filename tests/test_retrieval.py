"""The first stage (es_config/retrieval.py) on a real node: typed candidates in BM25 order."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch

from common.results import Candidate, Ranked
from es_config import retrieval
from evaluation.retrieval import bm25_for_products, bm25_top
from indexer.bulk_index import index_catalog


@pytest.fixture
def shop(es: Elasticsearch, alias: str, small_catalog) -> str:
    index_catalog(es, small_catalog, alias)
    return alias


def test_one_search_gives_candidates_in_bm25_order(es: Elasticsearch, shop: str) -> None:
    found = retrieval.search(es, shop, "cordless drill", 5)
    ids = [c.product_id for c in found.candidates]
    assert ids[:2] == ["p1", "p2"] or ids[:2] == ["p2", "p1"]  # the two cordless ones lead
    assert [c.bm25_rank for c in found.candidates] == list(range(1, len(ids) + 1))
    assert all(a.bm25 >= b.bm25 for a, b in zip(found.candidates, found.candidates[1:]))
    assert all(isinstance(c, Candidate) and c.text is None for c in found.candidates)
    assert found.candidates[ids.index("p1")].title == "DeWalt 20V MAX Cordless Drill Driver Kit"
    assert found.total == len(ids) and not found.total_is_lower_bound


def test_a_batch_answers_what_single_searches_answer(es: Elasticsearch, shop: str) -> None:
    queries = {"q1": "cordless drill", "q2": "paint brushes"}
    batched = retrieval.msearch(es, shop, queries, 5, titles=True, batch=1)
    for q, text in queries.items():
        assert batched[q] == retrieval.search(es, shop, text, 5).candidates
    assert bm25_top(es, shop, queries, size=5) == {q: {c.product_id: c.bm25 for c in batched[q]} for q in queries}


def test_judged_products_keep_their_search_score_and_unmatched_ones_score_zero(es: Elasticsearch, shop: str) -> None:
    top = {c.product_id: c.bm25 for c in retrieval.search(es, shop, "cordless drill", 8).candidates}
    scores = bm25_for_products(es, shop, {"q1": "cordless drill"}, {"q1": ["p1", "p8"]})
    assert scores == {"q1": {"p1": pytest.approx(top["p1"]), "p8": 0.0}}


def test_a_failed_search_in_a_batch_names_its_query(es: Elasticsearch) -> None:
    with pytest.raises(retrieval.RetrievalError, match=r"^search failed for query 'q1': "):
        retrieval.msearch(es, "no-such-alias-here", {"q1": "drill"}, 5)


def test_movement_is_places_gained_against_bm25() -> None:
    assert Ranked("p", 1.0, rank=2, bm25=3.0, bm25_rank=5, reranked=True).movement == 3
    assert Ranked("p", 1.0, rank=5, bm25=3.0, bm25_rank=2, reranked=True).movement == -3
