"""/report and /compare in a real browser (Debian's chromium through Playwright), served by the page's
app from a real evaluation: the page-test shop indexed in a real node, BM25 and a seeded random order
evaluated by evaluation/runner.py, written as the pipeline's evaluate stage writes eval.json.
Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from evaluation.per_query import per_query_scores
from evaluation.rankers import BM25Ranker, RandomRanker
from evaluation.report import write_json
from evaluation.runner import evaluate_rankers
from evaluation.significance import paired_tests
from frontend.app import BackgroundServer, Examples, create_app
from common.settings import WebSettings
from frontend.search import Grades, SearchService, make_es
from indexer.bulk_index import index_catalog
from tests.shop_page import drop_alias, page_catalog
from tests.test_demo_page import chromium_path, shot

RANDOM = RandomRanker.name


@pytest.fixture(scope="module")
def evaluated(es, tmp_path_factory):
    """A pipeline folder with one evaluated run of the page shop, and the evaluation itself."""
    alias = "test-report-page"
    catalog = page_catalog()
    index_catalog(es, catalog, alias, force=True)
    queries = sorted(catalog.queries)
    result = evaluate_rankers(es, alias, catalog, queries, [BM25Ranker(), RandomRanker(seed=1)], split_id="s1", depth=10)
    speed = {row.name: {"ms_per_100_first": row.ms_per_100, "ms_per_100_repeat": row.ms_per_100,
                        "teacher_over_model_first": 1.0, "teacher_over_model_repeat": 1.0} for row in result.rows}
    pipeline = tmp_path_factory.mktemp("pipeline")
    run = pipeline / "page-shop-quick"
    write_json(result, run / "eval.json", {
        "profile": "quick", "significance_p_values": paired_tests(result, [BM25Ranker.name]), "speed": speed,
        "per_query": per_query_scores(result, {q: catalog.queries[q].text for q in queries})})
    (run / "stages.json").write_text(json.dumps({"bm25": {"seconds": 1.5}, "evaluate": {"seconds": 3.0}}))
    yield pipeline, result
    drop_alias(es, alias)


@pytest.fixture(scope="module")
def server(es_url, evaluated):
    config = WebSettings()
    service = SearchService(make_es(es_url, config.es_timeout_ms), None, config, Grades.from_catalog(page_catalog()),
                            es_url=es_url, alias="test-report-page")
    with BackgroundServer(create_app(service, Examples(fixed=[]), pipeline_dir=evaluated[0])) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


def open_page(browser, errors: list[str]):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def test_per_query_values_average_to_the_table_figures(evaluated) -> None:
    _, result = evaluated
    per_query = per_query_scores(result)
    for row in result.rows:
        for setting in ("end_to_end", "rerank_judged"):
            for metric in ("ndcg@10", "mrr@10"):
                values = per_query[setting][row.name][metric]
                assert len(values) == result.evaluable
                assert sum(values.values()) / len(values) == pytest.approx(getattr(row, setting)[metric], abs=1e-6)


def test_report_charts_render_in_a_browser(server, browser) -> None:
    errors: list[str] = []
    page = open_page(browser, errors)
    assert page.goto(f"{server.url}/report").status == 200
    sections = page.locator("section.report-section")
    assert sections.count() == 4
    for i in range(4):
        svg = sections.nth(i).locator("figure.chart svg")
        assert svg.count() == 1
        box = svg.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100
        assert svg.locator("path").count() > 5  # axes, bars, markers drawn
    assert "linear gain, unjudged = 0" in page.inner_text("#quality")
    assert errors == []
    shot(page, "report-charts")


def test_compare_lists_queries_by_change_and_filters_losses(server, browser, evaluated) -> None:
    _, result = evaluated
    errors: list[str] = []
    page = open_page(browser, errors)
    assert page.goto(f"{server.url}/compare").status == 200
    changes = page.locator("#changes tr[data-qid]").evaluate_all("rows => rows.map(r => Number(r.dataset.change))")
    assert len(changes) == result.evaluable and changes == sorted(changes, reverse=True)
    summary = page.inner_text("#summary")
    losses = sum(c < 0 for c in changes)
    assert f"{losses} losses" in summary and RANDOM in summary
    shot(page, "compare-best-first")

    page.click("#losses-only")
    page.wait_for_url("**/compare?only=losses")
    shown = page.locator("#changes tr[data-qid]").evaluate_all("rows => rows.map(r => Number(r.dataset.change))")
    assert len(shown) == losses and all(c < 0 for c in shown) and shown == sorted(shown)
    shot(page, "compare-losses")

    page.goto(f"{server.url}/compare?order=worst")
    first = page.locator("#changes tr[data-qid] a").first
    text = first.inner_text()
    first.click()
    page.wait_for_selector("#bm25-col")  # the side-by-side search of that query
    assert page.input_value("#q") == text
    assert errors == []


def test_no_run_yet_is_a_clear_message(es_url, tmp_path) -> None:
    config = WebSettings()
    service = SearchService(make_es(es_url, config.es_timeout_ms), None, config, alias="test-report-page")
    with BackgroundServer(create_app(service, Examples(fixed=[]), pipeline_dir=tmp_path)) as server:
        for path in ("/report", "/compare"):
            try:
                urllib.request.urlopen(f"{server.url}{path}", timeout=30)
                raise AssertionError(f"{path} answered 200 without a run")
            except urllib.error.HTTPError as err:
                body = err.read().decode()
                assert err.code == 404
                assert (f"no evaluated pipeline run under {tmp_path}; run `shopsearch pipeline --profile quick` first"
                        in body) and "Traceback" not in body
