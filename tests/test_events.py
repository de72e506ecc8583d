"""Behaviour logging against a real Elasticsearch and the real page over HTTP: impressions and clicks
land in the dated events index, a resent batch is not counted twice, the event API refuses a bad
batch whole with one reason, and logging never slows or fails a search when the events index is
read-only or Elasticsearch cannot be reached (the events are dropped and counted)."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from html import unescape
from http.cookiejar import CookieJar

import pytest

from common.settings import EventSettings, WebSettings
from es_config.events import read_events
from frontend.app import BackgroundServer, create_app
from frontend.events import EventLog, new_id
from frontend.search import Grades, SearchService, make_es
from tests.conftest import free_port
from tests.shop_page import page_catalog

CONFIG = dict(page_size=4, rerank_depth=6, budget_ms=3000, es_timeout_ms=2000)


class Browser:
    """A client with a cookie jar that does not follow redirects (a click's 303 is checked)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), self._NoRedirect)

    def call(self, path: str, body: bytes | None = None) -> tuple[int, str, dict]:
        request = urllib.request.Request(self.base + path, data=body, method="POST" if body is not None else "GET",
                                         headers={"Content-Type": "application/json"})
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode(), dict(response.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), dict(err.headers)

    def session(self) -> str | None:
        return next((c.value for c in self.cookies if c.name == "shopsearch_session"), None)


def page_for(es_url: str, alias: str, events_es_url: str | None = None, start: bool = True, **event_settings):
    events_config = EventSettings(enabled=True, **{"flush_ms": 20.0, **event_settings})
    config = WebSettings(**CONFIG, events=events_config)
    service = SearchService(make_es(es_url, config.es_timeout_ms), None, config, Grades.from_catalog(page_catalog()),
                            es_url=es_url, alias=alias)
    log = EventLog(make_es(events_es_url or es_url, events_config.write_timeout_ms), events_config)
    if start:
        log.start()
    return BackgroundServer(create_app(service, events=log)), log


def stored_events(es, events_prefix: str) -> list[dict]:
    return sorted(read_events(es, events_prefix), key=lambda e: (e["type"] != "impression", e["ts"]))


def test_a_search_logs_its_impression_and_a_result_link_its_click(es, es_url, page_shop, events_prefix) -> None:
    server, log = page_for(es_url, page_shop, index_prefix=events_prefix)
    with server:
        browser = Browser(server.url)
        status, html, _ = browser.call("/?q=cordless+drill")
        assert status == 200
        session = browser.session()
        assert session and len(session) >= 16
        links = [unescape(href) for href in re.findall(r'class="result" href="([^"]+)"', html)]
        assert len(links) == 4
        status, _, headers = browser.call(links[1])  # the second result
        assert status == 303 and headers["location"].startswith("/product/")
        status, product_page, _ = browser.call(headers["location"])
        assert status == 200 and "product" in product_page
        assert log.flush(10)
    impression, click = stored_events(es, events_prefix)
    assert impression["type"] == "impression" and impression["query"] == "cordless drill"
    assert impression["session_id"] == session and impression["source"] == "page"
    assert [s["position"] for s in impression["items"]] == [1, 2, 3, 4]
    assert {s["arm"] for s in impression["items"]} == {"bm25"}  # no reranker: BM25 placed them all
    assert set(impression) == {"type", "event_id", "impression_id", "session_id", "query", "items", "model",
                               "interleaved", "ts", "source"}  # what is stored: no address, no user agent
    assert click["type"] == "click" and click["impression_id"] == impression["event_id"]
    assert (click["product_id"], click["position"], click["session_id"]) == (impression["items"][1]["product_id"], 2, session)
    assert log.stats()["written"] == 2 and log.stats()["dropped_failed"] == 0


def event_batch(n: int = 2, **override) -> dict:
    impression_id = new_id()
    events = [{"type": "impression", "event_id": impression_id, "session_id": "session-0001", "query": "drill",
               "items": [{"product_id": "p1", "position": 1, "arm": "model"}, {"product_id": "p2", "position": 2, "arm": "bm25"}],
               "model": "BERM-O test"}]
    events += [{"type": "click", "event_id": new_id(), "session_id": "session-0001", "impression_id": impression_id,
                "query": "drill", "product_id": "p2", "position": 2, "arm": "bm25"} for _ in range(n - 1)]
    return {"events": events, **override}


def test_the_event_api_writes_a_batch_once_however_often_it_is_sent(es, es_url, page_shop, events_prefix) -> None:
    server, log = page_for(es_url, page_shop, index_prefix=events_prefix)
    batch = json.dumps(event_batch(3)).encode()
    with server:
        browser = Browser(server.url)
        assert browser.call("/api/events", batch)[:2] == (202, '{"accepted":3}')
        assert log.flush(10)
        assert browser.call("/api/events", batch)[0] == 202  # a front end that retried
        assert log.flush(10)
        _, health, _ = browser.call("/healthz")
        _, metrics, _ = browser.call("/metrics")
    events = stored_events(es, events_prefix)
    assert len(events) == 3 and {e["source"] for e in events} == {"api"}
    assert log.stats() | {"queued": 0} == {"accepted": 6, "written": 3, "duplicates": 3, "dropped_full": 0,
                                             "dropped_failed": 0, "queued": 0}
    assert json.loads(health)["events"]["duplicates"] == 3
    assert 'shopsearch_page_events_total{outcome="duplicates"} 3' in metrics


def bad(field_path: list, value) -> bytes:
    body = event_batch(2)
    target = body
    for key in field_path[:-1]:
        target = target[key]
    if value is KeyError:
        target.pop(field_path[-1])
    else:
        target[field_path[-1]] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize("body, reason", [
    (bad(["events", 0, "ip"], "10.0.0.1"), "events.0.ip: Extra inputs are not permitted"),
    (bad(["events", 1, "position"], "2"), "events.1.position: Input should be a valid integer"),
    (bad(["events", 0, "items", 1, "arm"], KeyError), "events.0.items.1.arm: Field required"),
    (bad(["events", 1, "type"], "purchase"), "events.1: Input tag 'purchase' found using 'type' does not match any of the expected tags: 'impression', 'click'"),
    (bad(["events", 1, "product_id"], "no-such-product"), "unknown product 'no-such-product'"),
    (json.dumps({"events": event_batch(5)["events"]}).encode(), "events: the batch has 5 events; the most a request takes is 4"),
    (b'{"events": [', "body: Invalid JSON: EOF while parsing a list at line 1 column 12"),
    (json.dumps({"events": [{**event_batch(1)["events"][0], "query": "x" * 300_000}]}).encode(),
     "the body has 300,257 bytes; the most a request takes is 262,144"),
])
def test_a_bad_batch_is_a_400_with_one_reason_and_nothing_is_written(es, es_url, page_shop, events_prefix, body, reason) -> None:
    server, log = page_for(es_url, page_shop, index_prefix=events_prefix, max_batch=4)
    with server:
        status, answer, _ = Browser(server.url).call("/api/events", body)
        assert (status, json.loads(answer)) == (400, {"error": reason})
        assert log.flush(10)
    assert log.stats()["accepted"] == 0 and stored_events(es, events_prefix) == []


def test_the_event_api_has_a_rate_limit(es_url, page_shop, events_prefix) -> None:
    server, log = page_for(es_url, page_shop, index_prefix=events_prefix, rate_per_s=0.01, burst=2)
    with server:
        browser = Browser(server.url)
        statuses = [browser.call("/api/events", json.dumps(event_batch(1)).encode())[0] for _ in range(3)]
        assert log.flush(10)  # written before the events_prefix's indices are removed
    assert statuses == [202, 202, 429]


def timed_searches(browser: Browser, n: int) -> list[float]:
    took = []
    for i in range(n):
        began = time.monotonic()
        status, _, _ = browser.call(f"/api/search?q=cordless+drill&page={1 + i % 3}")
        took.append(time.monotonic() - began)
        assert status == 200
    return took


def test_a_read_only_events_index_drops_and_counts_without_failing_a_search(es, es_url, page_shop, events_prefix) -> None:
    server, log = page_for(es_url, page_shop, index_prefix=events_prefix, write_retries=0)
    with server:
        browser = Browser(server.url)
        timed_searches(browser, 1)
        assert log.flush(10) and log.stats()["written"] == 1  # today's index exists now
        for index in es.indices.get(index=f"{events_prefix}-*"):
            es.indices.put_settings(index=index, settings={"index.blocks.read_only": True})
        timed_searches(browser, 5)  # each answered 200
        assert log.flush(10)
        _, health, _ = browser.call("/healthz")
    assert log.stats()["dropped_failed"] == 5 and log.stats()["written"] == 1, log.stats()
    assert json.loads(health)["events"]["dropped_failed"] == 5


def test_elasticsearch_unreachable_for_events_drops_and_counts_without_failing_a_search(es_url, page_shop, events_prefix) -> None:
    server, log = page_for(es_url, page_shop, events_es_url=f"http://127.0.0.1:{free_port()}", index_prefix=events_prefix,
                           write_retries=1, write_timeout_ms=200.0)
    with server:
        timed_searches(Browser(server.url), 4)
        assert log.flush(10)
    assert log.stats()["dropped_failed"] == 4 and log.stats()["written"] == 0


def test_an_events_node_that_never_answers_does_not_slow_a_search(es_url, page_shop, events_prefix) -> None:
    """A node that takes connections and never answers: each bulk waits its whole 5 s timeout, three
    times; the searches meanwhile take what they always take."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        server, log = page_for(es_url, page_shop, events_es_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
                               index_prefix=events_prefix, write_retries=2, write_timeout_ms=5000.0)
        with server:
            took = timed_searches(Browser(server.url), 4)
            assert sum(took) < 5.0, took  # less than one bulk's timeout for all four searches
            assert log.stats()["written"] == 0


def test_a_full_queue_drops_and_counts_without_failing_a_search(es_url, page_shop, events_prefix) -> None:
    server, log = page_for(es_url, page_shop, index_prefix=events_prefix, queue_events=2, start=False)  # nobody writes
    with server:
        browser = Browser(server.url)
        timed_searches(browser, 3)
        _, metrics, _ = browser.call("/metrics")
    assert log.stats()["dropped_full"] == 1 and log.stats()["queued"] == 2
    assert 'shopsearch_page_events_total{outcome="dropped_full"} 1' in metrics
