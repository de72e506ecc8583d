"""The demo page in a real browser (Debian's chromium driven by Playwright), with the stack as the
demo runs it: `shopsearch serve` and `shopsearch web` as background processes (searchstack/stack.py),
a real Elasticsearch node, a tiny BERM-O artifact built here.

Search and see both columns and the grades; stop the reranker and see the BM25 order with the
fallback notice; start it again and see reranked results return. Each state is saved as a
screenshot under artifacts/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from searchstack.settings import PROJECT_ROOT
from searchstack.stack import RERANKER
from tests.shop_page import PageStack, drop_alias, start_page_stack

SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"


def chromium_path() -> str:
    path = os.environ.get("SHOPSEARCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium not found (scripts/test.sh installs Debian's `chromium` when run as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory, es, es_url) -> PageStack:
    alias = "test-demo-page"
    stack = start_page_stack(tmp_path_factory.mktemp("demo-page"), es, es_url, alias)
    yield stack
    stack.stop_all()
    drop_alias(es, alias)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


def column_ids(page, column: str) -> list[str]:
    return page.locator(f"#{column}-col tr[data-pid]").evaluate_all("rows => rows.map(r => r.dataset.pid)")


def search(page, text: str) -> None:
    page.fill("#q", text)
    page.press("#q", "Enter")
    page.wait_for_selector("#reranked-col")


def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_search_fallback_and_recovery_in_a_browser(stack, browser) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(stack.url)
    assert page.title() == "shopsearch"

    # 1. reranked: both columns filled, grades and NDCG@10 shown, explain opens
    search(page, "cordless drill")
    assert page.get_attribute("#reranked-col", "data-status") == "reranked"
    bm25, reranked = column_ids(page, "bm25"), column_ids(page, "reranked")
    assert len(bm25) == 5 and len(reranked) == 5
    assert page.locator("#bm25-col .grade").count() >= 1 and page.locator("#reranked-col .grade").count() >= 1
    assert page.inner_text("#ndcg-bm25").startswith("NDCG@10 ")
    assert page.inner_text("#ndcg-reranked").startswith("NDCG@10 ")
    assert "Reranked by BERM-O" in page.inner_text("#notice")
    assert page.get_attribute("#path", "data-path") == "service"
    assert page.inner_text("#path") == "Answered by: the reranker service, called by this page after the BM25 search"
    timings = page.inner_text("#timings")
    assert "Elasticsearch" in timings and "reranker" in timings
    page.locator("#reranked-col details").first.locator("summary").click()
    assert "0-order" in page.locator("#reranked-col details").first.inner_text()
    shot(page, "1-reranked")

    # paging: page 2 continues the reranked list (depth 8), then BM25 order
    page.click("#next")
    page.wait_for_selector("#reranked-col")
    assert "page 2 of" in page.inner_text("#pager")
    second = column_ids(page, "reranked")
    assert len(second) == 5 and not set(second) & set(reranked)
    shot(page, "2-page-two")

    # 2. the reranker stops: BM25 order, said plainly
    assert stack.stack.stop(RERANKER)
    search(page, "cordless drill")
    assert page.get_attribute("#reranked-col", "data-status") == "fallback"
    assert page.inner_text("#notice") == "The reranker is not answering, so this is the BM25 order."
    assert page.get_attribute("#path", "data-path") == "bm25"
    assert page.inner_text("#path") == "Answered by: BM25 alone (fallback: the reranker did not rerank)"
    assert column_ids(page, "reranked") == column_ids(page, "bm25") == bm25
    assert page.locator("#bm25-col .grade").count() >= 1
    shot(page, "3-reranker-down")

    # 3. it starts again: reranked results return without touching the page
    stack.start(RERANKER)
    deadline = time.monotonic() + 30
    while True:
        search(page, "cordless drill")
        if page.get_attribute("#reranked-col", "data-status") == "reranked" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert page.get_attribute("#reranked-col", "data-status") == "reranked"
    assert column_ids(page, "reranked") == reranked
    shot(page, "4-reranker-back")


def test_web_refuses_a_taken_port(stack) -> None:
    from tests.test_cli import assert_one_line_error, shopsearch

    port = stack.env["SHOPSEARCH_WEB_PORT"]
    done = shopsearch(*stack.web[3:], env=stack.env)
    assert_one_line_error(done, f"cannot listen on 127.0.0.1:{port} (Address already in use); "
                                "choose another port with --port or SHOPSEARCH_WEB_PORT")
