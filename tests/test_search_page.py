"""The search page's logic and HTTP edge against a real Elasticsearch node and a real gRPC reranker
(a tiny BERM-O artifact built here): the reranked order, paging past the top-N, grades and NDCG,
explain, and every fallback (reranker down, reranker too slow, Elasticsearch down, bad input)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from es_config.query import bm25_query
from evaluation.metrics import END_TO_END_METRICS, ranx_metrics
from frontend.app import BackgroundServer, Examples, create_app
from frontend.search import (BadRequest, Grades, RerankerLink, SearchService, SearchUnavailable,
                             example_pool, make_es, ndcg_at, pick_examples)
from indexer.bulk_index import index_catalog
from reranker.client import Candidate, RerankClient
from common.settings import RerankSettings, WebSettings
from reranker.server.app import RerankServer
from reranker.server.models import load_berm_o
from reranker.serving.online import OnlineReranker
from tests.tiny_artifact import build_tiny_artifact
from tests.conftest import free_port
from tests.shop_page import ARTIFACT_QUERIES, GRADES, TITLES, SlowModel, page_catalog

CONFIG = dict(page_size=4, rerank_depth=6, budget_ms=3000, es_timeout_ms=2000, rerank_deadline_ms=1500)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return build_tiny_artifact(tmp_path_factory.mktemp("page") / "berm-o", TITLES, ARTIFACT_QUERIES, seed=0)


@pytest.fixture(scope="module")
def reranker(artifact) -> RerankServer:
    with RerankServer(RerankSettings(port=0, grace_s=1, metrics_port=None, reload_poll_s=0), loader=load_berm_o, artifact=artifact) as server:
        server.wait_ready(120)
        yield server


@pytest.fixture(scope="module")
def shop(es, es_url) -> str:
    """The page catalog indexed behind its own alias (module-wide: read-only tests)."""
    alias = "test-page-shop"
    index_catalog(es, page_catalog(), alias, force=True)
    yield alias
    for index in es.indices.get(index=f"{alias}-*", allow_no_indices=True):
        es.indices.delete(index=index)


def service_for(es_url: str, alias: str, target: str | None, **overrides) -> SearchService:
    config = WebSettings(**{**CONFIG, **overrides})
    return SearchService(make_es(es_url, config.es_timeout_ms), RerankerLink(target) if target else None, config,
                         Grades.from_catalog(page_catalog()), es_url=es_url, alias=alias)


@pytest.fixture
def service(es_url, shop, reranker) -> SearchService:
    return service_for(es_url, shop, reranker.target)


def bm25_ids(es, alias: str, query: str) -> list[str]:
    return [h["_id"] for h in es.search(index=alias, query=bm25_query(query), size=100)["hits"]["hits"]]


# -- the search ---------------------------------------------------------------------------------------

def test_reranked_page_matches_the_service_and_bm25(service, es, shop, reranker) -> None:
    result = service.search("cordless drill")
    assert result.status == "reranked" and result.notice == ""
    assert result.model.startswith("BERM-O ")
    bm25 = bm25_ids(es, shop, "cordless drill")
    assert [r.product_id for r in result.bm25] == bm25[:4]
    assert [r.rank for r in result.bm25] == [1, 2, 3, 4]
    # the reranked column is the service's order of the BM25 top 6, as a direct call gives it
    hits = es.search(index=shop, query=bm25_query("cordless drill"), size=6)["hits"]["hits"]
    with RerankClient(reranker.target, timeout_s=10) as client:
        direct = client.rerank("cordless drill", [Candidate(h["_id"], h["_score"], i + 1, TITLES[h["_id"]])
                                                  for i, h in enumerate(hits)])
    assert [r.product_id for r in result.reranked] == [i.product_id for i in direct.items[:4]]
    for row, item in zip(result.reranked, direct.items):
        assert row.score == pytest.approx(item.score, abs=1e-5)
        assert row.movement == item.bm25_rank - item.rank
        assert row.title == TITLES[row.product_id]
    assert result.es_ms > 0 and result.rerank_ms > 0 and result.server_ms["model"] > 0


def test_paging_follows_the_reranked_list_then_bm25(service, es, shop) -> None:
    bm25 = bm25_ids(es, shop, "cordless drill")
    assert len(bm25) > 8, "the catalog must give more hits than two pages"
    pages = [service.search("cordless drill", page) for page in (1, 2, 3)]
    assert {p.pages for p in pages} == {-(-len(bm25) // 4)}
    final = [r for p in pages for r in p.reranked]
    ids = [r.product_id for r in final]
    assert sorted(ids[:6]) == sorted(bm25[:6]), "the top 6 are the BM25 top 6, reordered"
    assert ids[6:] == bm25[6:12], "past the reranked top-N, BM25 order"
    assert [r.rank for r in final] == list(range(1, len(final) + 1))
    assert all(r.score is not None for r in final[:6]) and all(r.score is None for r in final[6:])
    assert [r.product_id for p in pages for r in p.bm25] == bm25[:12]
    assert pages[2].status == "reranked"  # the same reranked list, whichever page shows it


def test_grades_and_ndcg_at_10(service, es, shop) -> None:
    result = service.search("Cordless  DRILL")  # grades are found whatever the case and spacing
    assert result.graded == len(GRADES["q1"])
    for row in result.bm25 + result.reranked:
        assert row.grade == GRADES["q1"].get(row.product_id)
    # the same figure ranx gives for the whole lists (unjudged = gain 0, linear gain)
    bm25 = bm25_ids(es, shop, "cordless drill")
    scores = {"q1": {pid: float(100 - i) for i, pid in enumerate(bm25)}}
    expected = ranx_metrics({"q1": GRADES["q1"]}, scores, {"ndcg@10": END_TO_END_METRICS["ndcg@10"]}, "bm25")
    assert result.ndcg_bm25 == pytest.approx(expected["ndcg@10"], abs=1e-9)
    final = [r.product_id for p in (1, 2, 3) for r in service.search("cordless drill", p).reranked]
    assert result.ndcg_reranked == pytest.approx(ndcg_at(final, GRADES["q1"]), abs=1e-12)
    ungraded = service.search("claw hammer")
    assert ungraded.graded == 0 and ungraded.ndcg_bm25 is None and ungraded.ndcg_reranked is None
    assert all(r.grade is None for r in ungraded.bm25)


def test_ndcg_at_10_by_hand() -> None:
    grades = {"a": 2.0, "b": 1.0, "c": 0.0}
    assert ndcg_at(["a", "b", "c"], grades) == pytest.approx(1.0)
    # b first: (1 + 2/log2 3) / (2 + 1/log2 3)
    assert ndcg_at(["b", "a"], grades) == pytest.approx((1 + 2 / 1.5849625007) / (2 + 1 / 1.5849625007))
    assert ndcg_at(["x", "y"], grades) == 0.0
    assert ndcg_at(["a"], {"a": 0.0}) is None  # no positive grade: undefined, not 0


def test_explain_parts_and_neighbors(service) -> None:
    result = service.search("cordless drill")
    for row in result.reranked:
        e = row.explanation
        assert e is not None
        assert e.zero_order + e.k_order + e.bm25_part == pytest.approx(row.score, abs=1e-4)
        assert e.neighbors and len(e.neighbors) <= 6
        for n in e.neighbors:
            if n.path in ("Q-I", "I-Q-I"):
                assert n.label == TITLES[n.node_id]  # products by title
            else:
                assert n.label == n.node_id  # queries of the tiny graph are their text
    assert all(row.explanation is None and row.score is None for row in result.bm25)  # BM25's column: no reranker parts


def test_reranker_down_falls_back_to_bm25_and_says_so(es_url, shop, es) -> None:
    service = service_for(es_url, shop, f"127.0.0.1:{free_port()}")
    result = service.search("cordless drill")
    assert result.status == "fallback"
    assert result.notice == "The reranker is not answering, so this is the BM25 order."
    assert [r.product_id for r in result.reranked] == [r.product_id for r in result.bm25]
    assert all(r.score is None and r.explanation is None for r in result.reranked)
    assert result.ndcg_bm25 is not None and result.ndcg_reranked is None


def test_reranker_slower_than_its_deadline_falls_back(es_url, shop, artifact) -> None:
    slow = SlowModel(OnlineReranker.load(artifact), delay_s=20.0)
    with RerankServer(RerankSettings(port=0, grace_s=0, metrics_port=None, reload_poll_s=0), model=slow) as server:
        server.wait_ready(120)
        service = service_for(es_url, shop, server.target, rerank_deadline_ms=300)
        result = service.search("cordless drill")
        assert result.status == "fallback"
        assert result.notice == "The reranker did not answer within its 300 ms deadline, so this is the BM25 order."
        assert result.total_ms < 10_000  # the 20 s model was not waited for (generous: a noisy machine)
        server.stop(grace=0)


def test_elasticsearch_down_or_index_missing(reranker, es_url) -> None:
    port = free_port()
    service = service_for(f"http://127.0.0.1:{port}", "products", reranker.target)
    with pytest.raises(SearchUnavailable) as err:
        service.search("cordless drill")
    assert str(err.value) == f"Elasticsearch is not answering at http://127.0.0.1:{port} (ConnectionError)"
    missing = service_for(es_url, "test-no-such-alias", reranker.target)
    with pytest.raises(SearchUnavailable) as err:
        missing.search("cordless drill")
    assert str(err.value) == "Elasticsearch has no index 'test-no-such-alias'; run `shopsearch index` first"


def test_bad_queries_and_pages(service) -> None:
    for query, page, message in [
        ("", 1, "the query is empty; type what you are looking for"),
        ("   ", 1, "the query is empty; type what you are looking for"),
        ("x" * 201, 1, "the query has 201 characters; the most this page takes is 200"),
        ("drill", 0, "page must be a whole number from 1 to 50, not 0"),
        ("drill", 51, "page must be a whole number from 1 to 50, not 51"),
    ]:
        with pytest.raises(BadRequest) as err:
            service.search(query, page)
        assert str(err.value) == message


def test_no_hits_is_an_empty_answer(service) -> None:
    result = service.search("zzzqqq")
    assert result.bm25 == [] and result.reranked == [] and result.total_hits == 0 and result.pages == 1


def test_examples_come_from_the_pool_best_gain_first(service) -> None:
    grades = Grades.from_catalog(page_catalog())
    pool = example_pool(["paint brushes", "cordless drill", "drill bits", "claw hammer"], grades, 10)
    assert pool == ["cordless drill", "drill bits"]  # "paint brushes" has two grades, "claw hammer" none
    picked = pick_examples(service, pool, 1)
    assert len(picked) == 1 and picked[0] in pool
    gains = {q: service.search(q).ndcg_reranked - service.search(q).ndcg_bm25 for q in pool}
    assert gains[picked[0]] == max(gains.values())


# -- over HTTP ------------------------------------------------------------------------------------------

def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def page(service) -> BackgroundServer:
    with BackgroundServer(create_app(service, Examples(fixed=["cordless drill", "drill bits"]))) as server:
        yield server


def test_http_search_json_and_page(page) -> None:
    status, body = get(f"{page.url}/api/search?q=cordless+drill&page=2")
    assert status == 200
    answer = json.loads(body)
    assert answer["status"] == "reranked" and answer["page"] == 2 and len(answer["reranked"]) == 4
    assert {"product_id", "title", "rank", "bm25", "bm25_rank", "score", "grade", "explanation", "movement"} <= set(answer["reranked"][0])
    assert all(row["explanation"] is None and row["score"] is None for row in answer["bm25"])
    status, html = get(f"{page.url}/?q=cordless+drill")
    assert status == 200
    assert 'id="bm25-col"' in html and 'id="reranked-col" data-status="reranked"' in html
    assert "NDCG@10" in html and "explain" in html and "Elasticsearch" in html
    assert 'href="/?q=drill%20bits"' in html  # the example queries
    status, html = get(f"{page.url}/")
    assert status == 200 and 'id="q"' in html and "bm25-col" not in html


@pytest.mark.parametrize("query_string, status, message", [
    ("", 400, "the query is empty; type what you are looking for"),
    ("q=" + "x" * 500, 400, "the query has 500 characters; the most this page takes is 200"),
    ("q=drill&page=abc", 400, "page must be a whole number from 1 to 50, not 'abc'"),
    ("q=drill&page=-3", 400, "page must be a whole number from 1 to 50, not -3"),
    ("q=drill&page=99999999999999999999", 400, "page must be a whole number from 1 to 50, not 99999999999999999999"),
    ("q=%ff%fe", 200, None),  # not UTF-8: decoded with replacement characters, searched like any text
])
def test_http_bad_requests_get_one_line(page, query_string, status, message) -> None:
    code, body = get(f"{page.url}/api/search?{query_string}")
    assert code == status, body
    if message is not None:
        assert json.loads(body) == {"error": message}
    code, html = get(f"{page.url}/?{query_string or 'q='}&page={urllib.parse.parse_qs(query_string).get('page', ['1'])[0]}")
    assert "Traceback" not in html


def test_http_elasticsearch_down_is_a_503_with_one_line(reranker) -> None:
    port = free_port()
    service = service_for(f"http://127.0.0.1:{port}", "products", reranker.target)
    with BackgroundServer(create_app(service)) as server:
        code, body = get(f"{server.url}/api/search?q=drill")
        assert code == 503
        assert json.loads(body) == {"error": f"Elasticsearch is not answering at http://127.0.0.1:{port} "
                                             "(ConnectionError). No results until it is back."}
        code, html = get(f"{server.url}/?q=drill")
        assert code == 503 and "Elasticsearch is not answering" in html and "Traceback" not in html
        code, body = get(f"{server.url}/healthz")
        health = json.loads(body)
        assert code == 200 and health["elasticsearch"] == "down (ConnectionError)" and health["reranker"] == "SERVING"


def test_e2e_bench_interleaves_both_modes(page) -> None:
    from bench.e2e import bench_e2e

    report = bench_e2e(page.url, ["cordless drill", "drill bits", "claw hammer"], rate=20, seconds=2, warmup_s=0.5)
    assert report.sent == 40 and report.failures == 0
    assert report.statuses == {"bm25/bm25": 20, "rerank/reranked": 20}
    assert report.bm25_ms.n == report.rerank_ms.n == 20
    assert report.rerank_cold_ms.n == 0 and report.rerank_warm_ms.n == 20  # the warm-up saw every query once
    assert report.rerank_call_ms.n == 20 and report.target_met == (report.added_p95_ms <= 20.0)
