"""The page reranking through the plugin (`rerank_path="plugin"`): one `_search` with the shopsearch
rescore clause against a real Elasticsearch with the plugin installed, the real gRPC service
behind it (a tiny BERM-O artifact), and the page saying which path answered.

The node and the service use the plugin tests' ports (tests/test_es_plugin.py), one module after
the other; nothing is mocked.
"""

from __future__ import annotations

import time
import urllib.request
from html.parser import HTMLParser

import pytest

from es_config.query import bm25_query
from frontend.app import BackgroundServer, create_app
from common.settings import WebSettings
from es_config import retrieval
from frontend.search import Grades, RerankerLink, SearchService, make_es, plugin_fallback_notice
from indexer.bulk_index import connect, index_catalog
from reranker.client import Candidate, RerankClient
from reranker.server.models import load_berm_o
from tests.shop_page import ARTIFACT_QUERIES, TITLES, page_catalog
from tests.test_demo_page import chromium_path
from tests.tiny_artifact import build_tiny_artifact
from tests.test_es_plugin import TARGET, fresh_plugin_node, start_reranker, stats

CONFIG = dict(page_size=4, rerank_depth=6, budget_ms=3000, es_timeout_ms=2000, rerank_deadline_ms=1500)
ALIAS = "page-plugin-shop"
QUERY = "cordless drill"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_berm_o(build_tiny_artifact(tmp_path_factory.mktemp("page-plugin") / "a", TITLES, ARTIFACT_QUERIES, seed=0))


@pytest.fixture(scope="module")
def reranker(model):
    holder = {"server": start_reranker(model)}  # a holder: tests stop and restart the service
    yield holder
    holder["server"].stop(grace=0)


@pytest.fixture(scope="module")
def node_url(reranker) -> str:
    node = fresh_plugin_node()
    index_catalog(connect(node.url), page_catalog(), ALIAS, force=True)
    yield node.url
    node.stop()


def page_service(es_url: str, path: str, alias: str = ALIAS) -> SearchService:
    config = WebSettings(rerank_path=path, **CONFIG)
    return SearchService(make_es(es_url, config.es_timeout_ms), RerankerLink(TARGET), config,
                         Grades.from_catalog(page_catalog()), es_url=es_url, alias=alias)


def bm25_ids(es_url: str) -> list[str]:
    return [c.product_id for c in retrieval.search(connect(es_url), ALIAS, QUERY, 100, titles=False).candidates]


def wait_reranked(service: SearchService, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while True:
        result = service.search(QUERY)
        if result.answered_by == "plugin" or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


class PathLabel(HTMLParser):
    """The page's `#path` element: its data-path and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.path, self.text, self._in = None, "", False

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if attrs.get("id") == "path":
            self.path, self._in = attrs.get("data-path"), True

    def handle_endtag(self, tag) -> None:
        self._in = False

    def handle_data(self, data) -> None:
        if self._in:
            self.text += data


def page_label(url: str) -> PathLabel:
    with urllib.request.urlopen(f"{url}/?q={QUERY.replace(' ', '+')}", timeout=30) as response:
        parser = PathLabel()
        parser.feed(response.read().decode())
    return parser


# -- the reranked column ----------------------------------------------------------------------------

def test_the_plugin_path_gives_the_services_order_in_one_search(node_url) -> None:
    before = stats(node_url)
    plugin = wait_reranked(page_service(node_url, "plugin"))
    assert (plugin.status, plugin.answered_by, plugin.notice) == ("reranked", "plugin", "")
    assert stats(node_url)["reranked"] > before["reranked"]
    bm25 = bm25_ids(node_url)
    assert [r.product_id for r in plugin.bm25] == bm25[:4]
    assert [r.bm25_rank for r in plugin.bm25] == [1, 2, 3, 4]
    # the service's own order for the BM25 top 6, as a direct call gives it
    hits = connect(node_url).search(index=ALIAS, query=bm25_query(QUERY), size=6)["hits"]["hits"]
    with RerankClient(TARGET, timeout_s=10) as client:
        direct = client.rerank(QUERY, [Candidate(h["_id"], h["_score"], i + 1) for i, h in enumerate(hits)])
    placed = [item for item in direct.items if item.reranked]
    assert placed, "the tiny model knows these products"
    assert [r.product_id for r in plugin.reranked] == [item.product_id for item in direct.items[:4]]
    for row, item in zip(plugin.reranked, direct.items):
        if item.reranked:
            assert row.score == pytest.approx(item.score, abs=1e-5)
        else:
            assert row.score is None
        assert row.bm25_rank == item.bm25_rank and row.title == TITLES[row.product_id]
    assert plugin.model == f"model {direct.model_version}"
    # the page's own path gives the same column, and says so
    service = page_service(node_url, "service").search(QUERY)
    assert service.answered_by == "service"
    assert [r.product_id for r in service.reranked] == [r.product_id for r in plugin.reranked]
    # paging: past the reranked top 6, BM25 order
    pages = [r.product_id for p in (1, 2, 3) for r in page_service(node_url, "plugin").search(QUERY, p).reranked]
    assert sorted(pages[:6]) == sorted(bm25[:6]) and pages[6:] == bm25[6:12]
    assert plugin.to_dict()["answered_by"] == "plugin"


def test_bm25_only_searches_do_not_call_the_plugin(node_url) -> None:
    calls = stats(node_url)["calls"]
    result = page_service(node_url, "plugin").search(QUERY, rerank=False)
    assert (result.status, result.answered_by) == ("bm25", "bm25")
    assert [r.product_id for r in result.reranked] == bm25_ids(node_url)[:4]
    assert stats(node_url)["calls"] == calls


# -- which path answered ------------------------------------------------------------------------------

def restart(reranker: dict, model) -> None:
    reranker["server"] = start_reranker(model)


def test_the_label_says_bm25_fallback_while_the_service_is_down(node_url, reranker, model) -> None:
    service = page_service(node_url, "plugin")
    with BackgroundServer(create_app(service)) as web:
        wait_reranked(service)
        label = page_label(web.url)
        assert label.path == "plugin" and "shopsearch plugin inside Elasticsearch" in label.text
        reranker["server"].stop(grace=0)
        try:
            before = stats(node_url)["fallback"].get("unavailable", 0)
            result = service.search(QUERY)
            assert (result.status, result.answered_by) == ("fallback", "bm25")
            assert result.notice == plugin_fallback_notice("unavailable")
            assert [r.product_id for r in result.reranked] == [r.product_id for r in result.bm25] == bm25_ids(node_url)[:4]
            assert all(r.score is None for r in result.reranked) and result.ndcg_reranked is None
            assert stats(node_url)["fallback"]["unavailable"] > before
            label = page_label(web.url)
            assert label.path == "bm25" and "BM25 alone (fallback: the plugin did not rerank)" in label.text
        finally:
            restart(reranker, model)
        assert wait_reranked(service).answered_by == "plugin"  # back without restarting anything
        assert page_label(web.url).path == "plugin"


def test_a_browser_sees_which_path_answered(node_url, reranker, model) -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    service = page_service(node_url, "plugin")
    wait_reranked(service)
    with BackgroundServer(create_app(service)) as web, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{web.url}/?q={QUERY.replace(' ', '+')}")
            assert page.get_attribute("#reranked-col", "data-status") == "reranked"
            assert page.get_attribute("#path", "data-path") == "plugin"
            assert page.inner_text("#path") == ("Answered by: the shopsearch plugin inside Elasticsearch "
                                                "(one search with its rescore clause)")
            assert "of each shard" in page.inner_text("#notice")
            assert "the plugin's call to the reranker included" in page.inner_text("#timings")
            reranked = page.locator("#reranked-col tr[data-pid]").evaluate_all("rows => rows.map(r => r.dataset.pid)")
            assert reranked == [r.product_id for r in service.search(QUERY).reranked]
            reranker["server"].stop(grace=0)
            try:
                page.reload()
                assert page.get_attribute("#path", "data-path") == "bm25"
                assert page.inner_text("#path") == "Answered by: BM25 alone (fallback: the plugin did not rerank)"
                assert page.inner_text("#notice") == plugin_fallback_notice("unavailable")
            finally:
                restart(reranker, model)
        finally:
            browser.close()


def test_a_rescore_elasticsearch_refuses_gives_bm25_order_and_its_reason(node_url) -> None:
    # (a node without the plugin refuses the same way; the test nodes share one distribution, which has it)
    config = WebSettings(rerank_path="plugin", **{**CONFIG, "rerank_depth": 101})
    service = SearchService(make_es(node_url, config.es_timeout_ms), None, config, es_url=node_url, alias=ALIAS)
    calls = stats(node_url)["calls"]
    result = service.search(QUERY)
    assert (result.status, result.answered_by) == ("fallback", "bm25")
    assert result.notice == ("Elasticsearch refused the shopsearch rescore ([shopsearch] window_size [101] is over the "
                             "limit of [100] (node setting shopsearch.rerank.max_window)), so this is the BM25 order.")
    assert [r.product_id for r in result.reranked] == [r.product_id for r in result.bm25] == bm25_ids(node_url)[:4]
    assert stats(node_url)["calls"] == calls
