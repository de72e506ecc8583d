"""Pseudo-queries cut from product titles (the students' extra unlabeled distillation queries)."""

from __future__ import annotations

from reranker.training.pseudo_queries import PREFIX, pseudo_queries
from tests.conftest import SMALL_PRODUCTS, make_catalog


def test_pseudo_queries_are_title_spans_seeded_and_unique() -> None:
    products = make_catalog(SMALL_PRODUCTS).products
    got = pseudo_queries(products, 5, seed=3)
    assert len(got) == 5
    assert got == pseudo_queries(products, 5, seed=3)  # deterministic
    assert len(set(got.values())) == len(got)
    for query_id, text in got.items():
        assert query_id.startswith(PREFIX)
        title = products[query_id.removeprefix(PREFIX)].title.lower()
        assert text in title.replace("  ", " ") or all(word in title for word in text.split())
        assert 2 <= len(text.split()) <= 4


def test_pseudo_queries_golden_for_a_fixed_seed() -> None:
    products = make_catalog(SMALL_PRODUCTS[:3]).products
    assert pseudo_queries(products, 3, seed=0) == {
        "pseudo:p1": "max cordless",
        "pseudo:p3": "corded hammer drill 1/2",
        "pseudo:p2": "18v cordless impact",
    }


def test_no_pseudo_queries_when_none_asked_or_titles_too_short() -> None:
    assert pseudo_queries(make_catalog(SMALL_PRODUCTS).products, 0, seed=1) == {}
    assert pseudo_queries(make_catalog([("a", "Drill"), ("b", "X")]).products, 5, seed=1) == {}
