"""The literals that became settings keep their values, and the settings reach the code."""

from __future__ import annotations

import inspect

from indexer.bulk_index import connect, index_catalog
from reranker.serving.online import OnlineReranker
from reranker.training.profiles import MEASUREMENT_ONLY, PROFILES
from searchstack.settings import Settings


def test_former_literals_keep_their_values() -> None:
    s = Settings()
    assert (s.rerank.depth, s.demo_reranker_start_timeout_s, s.demo_web_start_timeout_s) == (100, 300.0, 180.0)
    assert (s.es_request_timeout_s, s.es_request_retries, s.bulk_max_retries) == (60.0, 2, 3)
    assert s.rerank.query_cache_size == 10_000
    assert all(p.embed_batch_size == 256 for p in PROFILES.values()) and "embed_batch_size" in MEASUREMENT_ONLY
    # the library's own fallbacks agree with the settings
    assert inspect.signature(connect).parameters["request_timeout_s"].default == s.es_request_timeout_s
    assert inspect.signature(index_catalog).parameters["max_retries"].default == s.bulk_max_retries
    assert inspect.signature(OnlineReranker.load).parameters["query_cache_size"].default == s.rerank.query_cache_size


def test_they_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("SHOPSEARCH_RERANK_DEPTH", "50")
    monkeypatch.setenv("SHOPSEARCH_RERANK_QUERY_CACHE_SIZE", "7")
    s = Settings()
    assert (s.rerank.depth, s.web.rerank_depth, s.rerank.query_cache_size) == (50, 50, 7)
