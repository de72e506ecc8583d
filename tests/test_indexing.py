"""Bulk indexing against the real node: alias, idempotency, rebuild, count check, BM25 order."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch

from es_config import MAPPING_VERSION, bm25_query
from indexer.bulk_index import ClusterUnavailable, IndexingError, alias_target, connect, index_catalog, index_meta
from tests.conftest import SMALL_PRODUCTS, free_port, make_catalog


def search_ids(es: Elasticsearch, alias: str, text: str) -> list[str]:
    hits = es.search(index=alias, query=bm25_query(text), size=10)["hits"]["hits"]
    return [hit["_id"] for hit in hits]


def test_indexing_puts_every_product_behind_a_versioned_alias(es, alias, small_catalog) -> None:
    report = index_catalog(es, small_catalog, alias, progress=False)
    assert (report.source_count, report.doc_count, report.failed, report.rebuilt) == (8, 8, 0, True)
    assert alias_target(es, alias) == report.index
    assert report.index.startswith(f"{alias}-") and report.index.endswith(MAPPING_VERSION)
    meta = index_meta(es, report.index)
    assert meta["fingerprint"] == small_catalog.fingerprint()
    doc = es.get(index=alias, id="p4")["_source"]
    assert doc == {"product_id": "p4", "title": "Estwing 16 oz. Claw Hammer"}


def test_reindexing_the_same_catalog_leaves_the_same_count(es, alias, small_catalog) -> None:
    first = index_catalog(es, small_catalog, alias, progress=False)
    again = index_catalog(es, small_catalog, alias, progress=False)
    assert again.skipped is True and again.index == first.index
    forced = index_catalog(es, small_catalog, alias, force=True, progress=False)
    assert (forced.index, forced.doc_count, forced.rebuilt) == (first.index, 8, False)
    assert es.count(index=alias)["count"] == 8


def test_rebuild_swaps_the_alias_and_drops_the_old_index(es, alias, small_catalog) -> None:
    first = index_catalog(es, small_catalog, alias, progress=False)
    rebuilt = index_catalog(es, small_catalog, alias, rebuild=True, progress=False)
    assert rebuilt.index != first.index
    assert alias_target(es, alias) == rebuilt.index
    assert not es.indices.exists(index=first.index)
    assert es.count(index=alias)["count"] == 8


def test_count_check_catches_documents_the_source_no_longer_has(es, alias, small_catalog) -> None:
    index_catalog(es, small_catalog, alias, progress=False)
    smaller = make_catalog(SMALL_PRODUCTS[:-1], name="small-shop")
    with pytest.raises(IndexingError) as err:
        index_catalog(es, smaller, alias, progress=False)
    assert str(err.value).startswith("count check failed for ")
    assert "8 documents for 7 products in the source (0 failed)" in str(err.value)
    assert "run with --rebuild" in str(err.value)
    assert index_catalog(es, smaller, alias, rebuild=True, progress=False).doc_count == 7


def test_bm25_ranks_the_cordless_drill_first(es, alias, small_catalog) -> None:
    index_catalog(es, small_catalog, alias, progress=False)
    assert search_ids(es, alias, "cordless drill")[:3] == ["p1", "p2", "p3"]


def test_stemming_matches_plural_queries_to_singular_titles(es, alias, small_catalog) -> None:
    index_catalog(es, small_catalog, alias, progress=False)
    assert search_ids(es, alias, "hammers") == ["p4", "p3"]  # claw hammer, then hammer drill
    assert search_ids(es, alias, "paint brushes")[0] == "p7"


def test_bm25_query_with_ids_scores_only_those_products(es, alias, small_catalog) -> None:
    index_catalog(es, small_catalog, alias, progress=False)
    full = {h["_id"]: h["_score"] for h in es.search(index=alias, query=bm25_query("drill"), size=10)["hits"]["hits"]}
    some = es.search(index=alias, query=bm25_query("drill", ["p3", "p6", "p8"]), size=10)["hits"]["hits"]
    assert {h["_id"] for h in some} == {"p3", "p6"}
    assert all(h["_score"] == pytest.approx(full[h["_id"]]) for h in some)


def test_connect_to_a_cluster_that_is_down_is_one_clear_line() -> None:
    port = free_port()
    with pytest.raises(ClusterUnavailable) as err:
        connect(f"http://127.0.0.1:{port}", timeout_s=2)
    assert str(err.value) == (
        f"cannot reach Elasticsearch at http://127.0.0.1:{port} (ConnectionError); "
        "start it with `shopsearch es start` or set SHOPSEARCH_ES_URL"
    )
