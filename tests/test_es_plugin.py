"""The `shopsearch` rescorer plugin inside a real Elasticsearch, calling the real reranker service.

The plugin zip is built with Maven from es_plugin/ (or reused) and installed into the test
distribution; the service runs in process on a fixed port (the node's `shopsearch.rerank.target`)
with a tiny real BERM-O artifact. The only stand-in is a wrapper around the real model that can be
told to be slow or to fail, for the fallback tests.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from common.settings import RerankSettings
from es_config import retrieval
from es_config.local_node import PLUGIN_PROJECT, plugin_node_settings
from es_config.query import bm25_query
from reranker.client import RerankClient
from reranker.server.app import RerankServer
from reranker.server.models import load_berm_o
from searchstack.settings import Settings
from tests.conftest import SMALL_PRODUCTS, test_node
from tests.tiny_artifact import build_tiny_artifact

ES_PORT = int(os.environ.get("SHOPSEARCH_TEST_PLUGIN_ES_PORT", "9231"))
ES_PORT_2 = int(os.environ.get("SHOPSEARCH_TEST_PLUGIN_ES_PORT_2", str(ES_PORT + 1)))
RERANK_PORT = int(os.environ.get("SHOPSEARCH_TEST_PLUGIN_RERANK_PORT", "50071"))
TARGET = f"127.0.0.1:{RERANK_PORT}"
DEADLINE_MS = 250

# Eight known products, and more drills so every shard has a window and hits past it.
TITLES = {**dict(SMALL_PRODUCTS), **{f"d{i}": f"{brand} {volts}V Cordless Drill {extra}" for i, (brand, volts, extra) in
                                     enumerate([("Bosch", 12, "Kit"), ("Milwaukee", 18, "Brushless"), ("Makita", 18, "Combo"),
                                                ("Ryobi", 40, "Hammer Drill"), ("Black+Decker", 20, "with Bits"),
                                                ("Craftsman", 20, "Driver"), ("Hart", 12, "Compact"),
                                                ("Porter-Cable", 20, "Set"), ("Skil", 12, "Kit with Case"),
                                                ("Metabo", 18, "Hammer"), ("Ridgid", 18, "Octane"), ("Kobalt", 24, "XTR")])}}
QUERIES = ["cordless drill", "paint brush", "claw hammer", "tool box"]
QUERY = "cordless drill"
SEARCHED = "cordless drill hammer"  # the first stage's text: more of the small catalog matches it


class Switchable:
    """The real model, or the same model made slow or failing on demand (for the fallback tests)."""

    def __init__(self, model) -> None:
        self.model, self.name, self.version = model, model.name, model.version
        self.mode = "ok"

    def warm_up(self) -> None:
        self.model.warm_up()

    def rerank(self, query, candidates, explain=False):
        if self.mode == "slow":
            time.sleep(4 * DEADLINE_MS / 1000)
        elif self.mode == "error":
            raise RuntimeError("the model broke")
        return self.model.rerank(query, candidates, explain)


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def plugin_node(port: int, **settings):
    """A node with the plugin, handed every plugin setting as the project's node is (the settings'
    defaults, with this module's target and deadline), plus `settings`."""
    handed = plugin_node_settings(Settings(rerank_target=TARGET, rerank_plugin_deadline_ms=DEADLINE_MS))
    node_settings = {**handed, "cluster.name": f"shopsearch-plugin-{ES_PORT}", **settings}
    return test_node(port, heap="384m", plugin_project=PLUGIN_PROJECT, node_settings=node_settings, start_timeout_s=240.0)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Switchable:
    artifact = build_tiny_artifact(tmp_path_factory.mktemp("plugin-artifact") / "a", TITLES, QUERIES, seed=0)
    return Switchable(load_berm_o(artifact))


def start_reranker(model, port: int = RERANK_PORT) -> RerankServer:
    """The real gRPC service on `port` (default RERANK_PORT, the one the plugin node's settings name), ready."""
    server = RerankServer(RerankSettings(port=port, grace_s=1, metrics_port=None, reload_poll_s=0), model=model)
    server.start()
    server.wait_ready(60)
    return server


def fresh_plugin_node():
    """The plugin node on ES_PORT, started with empty data and its channel warmed."""
    node = plugin_node(ES_PORT)
    if node.status().running:
        node.stop()
    shutil.rmtree(node.node_dir / "data", ignore_errors=True)
    node.start()
    wait_warmed(node.url)
    return node


@pytest.fixture(scope="module")
def service(model):
    holder = {"server": start_reranker(model)}  # a holder: tests stop and restart the service
    yield holder
    holder["server"].stop(grace=0)


@pytest.fixture(scope="module")
def node_url(service) -> str:
    node = fresh_plugin_node()
    yield node.url
    node.stop()


def wait_warmed(url: str, timeout_s: float = 30.0) -> None:
    """The node warms its channel in the background after start; searches before that may fall back."""
    deadline = time.monotonic() + timeout_s
    while not stats(url).get("warmed"):
        assert time.monotonic() < deadline, f"the channel was not warmed within {timeout_s} s: {stats(url)}"
        time.sleep(0.2)


def make_index(url: str, name: str, shards: int, replicas: int = 0) -> str:
    http("DELETE", f"{url}/{name}")
    status, body = http("PUT", f"{url}/{name}", {"settings": {"number_of_shards": shards, "number_of_replicas": replicas},
                                                 "mappings": {"properties": {"title": {"type": "text"}}}})
    assert status == 200, body
    lines = "".join(json.dumps({"index": {"_id": pid}}) + "\n" + json.dumps({"title": title}) + "\n"
                    for pid, title in TITLES.items())
    request = urllib.request.Request(f"{url}/{name}/_bulk?refresh=true", data=lines.encode(), method="POST",
                                     headers={"Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(request) as response:
        assert not json.loads(response.read())["errors"]
    status, body = http("GET", f"{url}/_cluster/health/{name}?wait_for_status=green&timeout=60s")
    assert status == 200 and body["status"] == "green", body
    return name


@lru_cache(maxsize=None)
def es_at(url: str) -> Elasticsearch:
    return Elasticsearch(url)


def bm25(url: str, index: str, shard: int | None = None) -> list:
    """The first stage (es_config.retrieval, the project's BM25 query): every match, in BM25 order."""
    preference = None if shard is None else f"_shards:{shard}"
    return retrieval.search(es_at(url), index, SEARCHED, len(TITLES), titles=False, preference=preference).candidates


def search_body(window: int, **params) -> dict:
    """The same BM25 query, with the plugin's rescore (its responses are what these tests read)."""
    return {"query": bm25_query(SEARCHED), "size": len(TITLES),
            "rescore": {"window_size": window, "shopsearch": {"query_text": QUERY, **params}}}


def stats(url: str) -> dict:
    status, body = http("GET", f"{url}/_shopsearch/stats")
    assert status == 200
    return body


def reranked_score(s: float) -> float:
    return 1 + s if s >= 0 else 1 / (1 - s)


def tail_score(bm25: float) -> float:
    return -1 / (1 + bm25)


def expected_scores(url: str, index: str, shards: int, window: int) -> tuple[dict[str, float], set[str], list[list[str]]]:
    """Each shard's BM25 list from Elasticsearch, its window reranked by the service directly: the
    final score every hit should get, the ids the model placed, and each shard's reranked order."""
    scores, placed, orders = {}, set(), []
    with RerankClient(TARGET, timeout_s=10) as client:
        for shard in range(shards):
            hits = bm25(url, index, shard)
            answer = client.rerank(QUERY, hits[:window])
            orders.append([item.product_id for item in answer.items if item.reranked])
            for item in answer.items:
                if item.reranked:
                    scores[item.product_id] = reranked_score(item.score)
                    placed.add(item.product_id)
            for h in hits:
                scores.setdefault(h.product_id, tail_score(h.bm25))
    return scores, placed, orders


def assert_reranked(url: str, index: str, shards: int, window: int, preference: str | None = None) -> None:
    where = f"?preference={preference}" if preference else ""
    status, result = http("POST", f"{url}/{index}/_search{where}", search_body(window))
    assert status == 200 and result["_shards"]["failed"] == 0, result
    hits = result["hits"]["hits"]
    scores, placed, orders = expected_scores(url, index, shards, window)
    assert {h["_id"] for h in hits} == set(scores)
    for h in hits:
        assert h["_score"] == pytest.approx(scores[h["_id"]], abs=1e-5), h["_id"]
    ids = [h["_id"] for h in hits]
    # the reranked hits first, each shard's in the model's order; then the rest by BM25
    assert placed and set(ids[: len(placed)]) == placed
    for order in orders:
        assert [i for i in ids if i in order] == order
    assert all(h["_score"] < 0 for h in hits[len(placed):])
    tail_bm25 = [scores[i] for i in ids[len(placed):]]
    assert tail_bm25 == sorted(tail_bm25, reverse=True)


# -- ordering -------------------------------------------------------------------------------------

def test_one_shard_order_is_the_services_order_then_bm25(node_url) -> None:
    index = make_index(node_url, "plugin-one", shards=1)
    before = stats(node_url)
    window = 6
    status, result = http("POST", f"{node_url}/{index}/_search", search_body(window))
    assert status == 200
    ids = [h["_id"] for h in result["hits"]["hits"]]
    bm25_hits = bm25(node_url, index)
    with RerankClient(TARGET, timeout_s=10) as client:
        answer = client.rerank(QUERY, bm25_hits[:window])
    service_order = [item.product_id for item in answer.items]
    assert ids[:window] == service_order
    # (the untrained tiny model may keep BM25's order; the scores below prove the model placed them)
    assert ids[window:] == [h.product_id for h in bm25_hits[window:]]
    after = stats(node_url)
    assert after["reranked"] == before["reranked"] + 1 and after["fallback_total"] == before["fallback_total"]
    assert_reranked(node_url, index, shards=1, window=window)


def test_send_text_reads_each_hits_title_and_reranks(node_url) -> None:
    index = make_index(node_url, "plugin-text", shards=1)
    before = stats(node_url)
    status, result = http("POST", f"{node_url}/{index}/_search", search_body(6, send_text=True))
    assert status == 200 and result["_shards"]["failed"] == 0, result
    after = stats(node_url)
    assert after["reranked"] == before["reranked"] + 1 and after["fallback_total"] == before["fallback_total"], after
    hits = result["hits"]["hits"]
    assert sum(h["_score"] > 0 for h in hits) == 6  # the whole window placed by the model


def test_three_shards_merge_reranked_hits_first(node_url) -> None:
    index = make_index(node_url, "plugin-three", shards=3)
    assert_reranked(node_url, index, shards=3, window=3)


def test_explain_says_which_part_came_from_the_model(node_url) -> None:
    index = make_index(node_url, "plugin-explain", shards=3)
    status, result = http("POST", f"{node_url}/{index}/_search?explain=true", search_body(2))
    assert status == 200
    hits = result["hits"]["hits"]
    top, last = hits[0]["_explanation"], hits[-1]["_explanation"]
    assert top["description"].startswith("shopsearch: reranked by the model")
    assert top["value"] == pytest.approx(hits[0]["_score"], abs=1e-5)
    assert "model score from the reranker service" in top["details"][0]["description"]
    assert last["description"].startswith("shopsearch: not reranked (past the window of 2)")


def test_the_outcome_ext_gives_each_hit_its_part_as_data(node_url, model) -> None:
    # three shards: the outcome is kept by the query phase and read by a separate fetch phase
    index = make_index(node_url, "plugin-outcome", shards=3)
    window = 2
    status, result = http("POST", f"{node_url}/{index}/_search", {**search_body(window), "ext": {"shopsearch_outcome": {}}})
    assert status == 200 and result["_shards"]["failed"] == 0, result
    hits = result["hits"]["hits"]
    scores, placed, _ = expected_scores(node_url, index, 3, window)
    bm25_by_id = {c.product_id: c for shard in range(3) for c in bm25(node_url, index, shard)}
    for h in hits:
        outcome = h["fields"]["_shopsearch"]
        assert len(outcome) == 1, outcome
        o = outcome[0]
        assert o["reranked"] == (h["_id"] in placed), (h["_id"], o)
        assert o["bm25_score"] == pytest.approx(bm25_by_id[h["_id"]].bm25, abs=1e-4)
        assert o["bm25_rank"] == bm25_by_id[h["_id"]].bm25_rank and o["window"] == window
        assert o["model_version"] == model.version
        if o["reranked"]:
            assert reranked_score(o["model_score"]) == pytest.approx(h["_score"], abs=1e-5)
            assert o["model_rank"] in (1, 2) and o["reason"] is None
        else:
            assert o["model_score"] is None and o["reason"] == "past_window", o
    assert "_explanation" not in hits[0]  # explain stays off unless asked
    status, plain = http("POST", f"{node_url}/{index}/_search", search_body(window))
    assert "fields" not in plain["hits"]["hits"][0]  # opt-in only


def test_the_window_ids_come_from_the_id_fields_doc_values_and_fall_back_to_the_id(node_url) -> None:
    """The node reads each hit's item id from `shopsearch.rerank.id_field` (product_id, a keyword,
    by its doc values); an index whose documents' _id differs shows which one the service was sent."""
    index = "plugin-ids"
    http("DELETE", f"{node_url}/{index}")
    status, body = http("PUT", f"{node_url}/{index}", {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {"properties": {"title": {"type": "text"}, "product_id": {"type": "keyword"}}}})
    assert status == 200, body
    lines = "".join(json.dumps({"index": {"_id": f"doc-{pid}"}}) + "\n" + json.dumps({"title": t, "product_id": pid}) + "\n"
                    for pid, t in TITLES.items())
    request = urllib.request.Request(f"{node_url}/{index}/_bulk?refresh=true", data=lines.encode(), method="POST",
                                     headers={"Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(request) as response:
        assert not json.loads(response.read())["errors"]
    window = 6
    body = {**search_body(window), "ext": {"shopsearch_outcome": {}}}
    try:
        before = stats(node_url)
        status, result = http("POST", f"{node_url}/{index}/_search", body)
        assert status == 200 and result["_shards"]["failed"] == 0, result
        outcomes = [h["fields"]["_shopsearch"][0] for h in result["hits"]["hits"][:window]]
        assert all(o["reranked"] for o in outcomes), outcomes  # product ids: every one known to the model
        assert stats(node_url)["partial"] == before["partial"]
        # read from _id instead ("doc-p1": unknown to the model), every hit keeps its BM25 place
        assert http("PUT", f"{node_url}/_cluster/settings", {"transient": {"shopsearch.rerank.id_field": "_id"}})[0] == 200
        status, result = http("POST", f"{node_url}/{index}/_search", body)
        assert status == 200 and result["_shards"]["failed"] == 0, result
        outcomes = [h["fields"]["_shopsearch"][0] for h in result["hits"]["hits"][:window]]
        assert not any(o["reranked"] for o in outcomes), outcomes
        assert stats(node_url)["partial"] == before["partial"] + 1
    finally:
        http("PUT", f"{node_url}/_cluster/settings", {"transient": {"shopsearch.rerank.id_field": None}})


def test_stats_time_each_step_of_a_rescore(node_url) -> None:
    index = make_index(node_url, "plugin-timings", shards=3)
    status, reset = http("POST", f"{node_url}/_shopsearch/stats/timings/_reset")
    assert status == 200 and all(span["count"] == 0 for span in reset["timings"].values()), reset["timings"]
    status, result = http("POST", f"{node_url}/{index}/_search", {**search_body(2), "ext": {"shopsearch_outcome": {}}})
    assert status == 200 and result["_shards"]["failed"] == 0, result
    timings = stats(node_url)["timings"]
    assert list(timings) == ["rescore", "read_window", "call", "service", "model", "transport", "map", "fetch_hit"]
    for span in ("rescore", "read_window", "call", "service", "model", "transport", "map"):
        assert timings[span]["count"] == 3, (span, timings)  # once per shard
    assert timings["fetch_hit"]["count"] == len(result["hits"]["hits"])
    # each call holds the service's own time, which holds the model's: so do their order statistics
    for q in ("min_ms", "p50_ms", "p95_ms"):
        assert timings["model"][q] <= timings["service"][q] <= timings["call"][q] <= timings["rescore"][q], (q, timings)
    assert timings["transport"]["min_ms"] > 0


def test_the_outcome_ext_is_validated(node_url) -> None:
    status, body = http("POST", f"{node_url}/_search", {**search_body(2), "ext": {"shopsearch_outcome": True}})
    assert status == 400
    assert body["error"]["reason"] == '[shopsearch_outcome] takes an empty object: {"shopsearch_outcome": {}}'


# -- failures -----------------------------------------------------------------------------------

def bm25_ids(url: str, index: str) -> list[str]:
    return [h.product_id for h in bm25(url, index)]


def assert_fallback(url: str, index: str, reason: str) -> None:
    before = stats(url)["fallback"].get(reason, 0)
    status, result = http("POST", f"{url}/{index}/_search", {**search_body(5), "ext": {"shopsearch_outcome": {}}})
    assert status == 200 and result["_shards"]["failed"] == 0, result
    assert [h["_id"] for h in result["hits"]["hits"]] == bm25_ids(url, index)
    assert {h["fields"]["_shopsearch"][0]["reason"] for h in result["hits"]["hits"]} == {reason}
    assert stats(url)["fallback"].get(reason, 0) == before + 1, stats(url)


def wait_reranked(url: str, index: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        before = stats(url)["reranked"]
        status, result = http("POST", f"{url}/{index}/_search", search_body(5))
        assert status == 200
        if stats(url)["reranked"] > before:
            return
        assert time.monotonic() < deadline, f"not reranked again within {timeout_s} s: {stats(url)}"
        time.sleep(0.5)


def test_service_down_slow_or_failing_keeps_bm25_order_and_recovers(node_url, service, model) -> None:
    index = make_index(node_url, "plugin-fail", shards=1)
    wait_reranked(node_url, index)
    model.mode = "error"
    try:
        assert_fallback(node_url, index, "error")
        model.mode = "ok"
        wait_reranked(node_url, index)
        # slow last: after a slow answer the service refuses calls whose deadline is shorter than
        # its estimate for a while (until one of them, scored anyway, corrects it)
        model.mode = "slow"
        assert_fallback(node_url, index, "deadline_exceeded")
    finally:
        model.mode = "ok"
    service["server"].stop(grace=0)
    assert_fallback(node_url, index, "unavailable")
    log = Path(plugin_node(ES_PORT).node_dir / "logs" / f"shopsearch-plugin-{ES_PORT}.log")
    assert "shopsearch rescore fell back to BM25 order (unavailable)" in log.read_text()
    service["server"] = start_reranker(model)
    wait_reranked(node_url, index)  # without restarting Elasticsearch


def test_fail_on_error_setting_fails_the_shard_instead(node_url, model) -> None:
    index = make_index(node_url, "plugin-strict", shards=1)
    status, body = http("PUT", f"{node_url}/_cluster/settings", {"transient": {"shopsearch.rerank.fail_on_error": True}})
    assert status == 200, body
    model.mode = "error"
    try:
        before = stats(node_url)["failed"]
        status, result = http("POST", f"{node_url}/{index}/_search", search_body(5))
        assert status == 502, result
        assert "[shopsearch] reranker at " in json.dumps(result)
        assert stats(node_url)["failed"] == before + 1
    finally:
        model.mode = "ok"
        http("PUT", f"{node_url}/_cluster/settings", {"transient": {"shopsearch.rerank.fail_on_error": None}})


# -- bad requests ------------------------------------------------------------------------------------

BAD = [
    ({"shopsearch": {}}, "[shopsearch] requires [query_text], the user's query as typed"),
    ({"shopsearch": {"query_text": "  "}}, "[shopsearch] [query_text] must not be empty"),
    ({"shopsearch": {"query_text": 3}}, "[shopsearch] [query_text] must be a string, got a number"),
    ({"shopsearch": {"query_text": ["a"]}}, "[shopsearch] [query_text] must be a string, got an array"),
    ({"shopsearch": {"query_text": "drill", "send_text": "yes"}}, "[shopsearch] [send_text] must be true or false, got a string"),
    ({"shopsearch": {"query_text": "drill", "model_version": 1}}, "[shopsearch] [model_version] must be a string, got a number"),
    ({"shopsearch": {"query_text": "drill", "depth": 5}},
     "[shopsearch] unknown parameter [depth]; it takes query_text, send_text and model_version"),
    ({"window_size": 101, "shopsearch": {"query_text": "drill"}},  # max_window: the settings' rerank depth, 100
     "Validation Failed: 1: [shopsearch] window_size [101] is over the limit of [100] (node setting shopsearch.rerank.max_window);"),
]


@pytest.mark.parametrize("rescore,reason", BAD, ids=[reason[:40] for _, reason in BAD])
def test_every_bad_parameter_is_a_400_with_its_reason(node_url, rescore, reason) -> None:
    status, body = http("POST", f"{node_url}/_search", {"query": {"match_all": {}}, "rescore": rescore})
    assert status == 400, body
    assert body["error"]["reason"] == reason


@pytest.mark.parametrize("field", ["target", "address", "host"])
def test_a_search_cannot_set_the_services_address(node_url, field) -> None:
    calls = stats(node_url)["calls"]
    status, body = http("POST", f"{node_url}/_search", {"query": {"match_all": {}}, "rescore": {
        "shopsearch": {"query_text": "drill", field: "10.0.0.1:50051"}}})
    assert status == 400
    assert body["error"]["reason"] == (f"[shopsearch] does not take [{field}]: the reranker's address is the node setting "
                                       "[shopsearch.rerank.target], not a search parameter")
    assert stats(node_url)["calls"] == calls and stats(node_url)["target"] == TARGET


def test_the_address_setting_is_validated(node_url) -> None:
    status, body = http("PUT", f"{node_url}/_cluster/settings", {"transient": {"shopsearch.rerank.target": "nowhere"}})
    assert status == 400
    assert "shopsearch.rerank.target must be host:port" in json.dumps(body)


# -- replicas of the service --------------------------------------------------------------------------

def searched_by(replicas, url: str, index: str, searches: int) -> list[int]:
    """Run `searches` reranked searches; how many Rerank calls each replica got meanwhile."""
    before = [r.metrics.value("shopsearch_rerank_requests_total") for r in replicas]
    for _ in range(searches):
        status, result = http("POST", f"{url}/{index}/_search", search_body(5))
        assert status == 200 and result["_shards"]["failed"] == 0, result
    return [int(r.metrics.value("shopsearch_rerank_requests_total") - b) for r, b in zip(replicas, before)]


def test_the_plugin_balances_over_replicas_and_loses_none_to_one_that_leaves(node_url, model) -> None:
    from grpc_health.v1 import health_pb2

    from reranker.rpc.stubs import RERANKER_SERVICE

    replicas = [start_reranker(model, port) for port in (RERANK_PORT + 1, RERANK_PORT + 2)]
    a, b = replicas
    index = make_index(node_url, "plugin-replicas", shards=1)
    listed = f"127.0.0.1:{a.port},127.0.0.1:{b.port}"
    try:
        status, body = http("PUT", f"{node_url}/_cluster/settings", {"transient": {"shopsearch.rerank.target": listed}})
        assert status == 200, body
        wait_warmed(node_url)
        assert stats(node_url)["target"] == listed
        until_both = time.monotonic() + 20  # round robin uses a replica once its connection is up
        while min(searched_by(replicas, node_url, index, 4)) == 0:
            assert time.monotonic() < until_both, "one replica never got a call"
        fallbacks = stats(node_url)["fallback_total"]
        assert searched_by(replicas, node_url, index, 20) == [10, 10]
        # a replica reported NOT_SERVING (loading, draining) leaves the rotation: client-side health checks
        a.health.set(RERANKER_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
        deadline = time.monotonic() + 20
        while searched_by(replicas, node_url, index, 4)[0] != 0:
            assert time.monotonic() < deadline, "the NOT_SERVING replica kept getting calls"
        assert searched_by(replicas, node_url, index, 10) == [0, 10]
        a.health.set(RERANKER_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        deadline = time.monotonic() + 20
        while searched_by(replicas, node_url, index, 4)[0] == 0:
            assert time.monotonic() < deadline, "the replica did not come back into the rotation"
        # one replica gone at once: every search still reranked, by the other
        b.stop(grace=0)
        got = searched_by(replicas, node_url, index, 20)
        assert got[0] == 20, got
        assert stats(node_url)["fallback_total"] == fallbacks, stats(node_url)
    finally:
        http("PUT", f"{node_url}/_cluster/settings", {"transient": {"shopsearch.rerank.target": None}})
        for server in replicas:
            server.stop(grace=0)
    assert stats(node_url)["target"] == TARGET


def test_a_replica_list_and_a_dns_name_are_valid_targets(node_url) -> None:
    for good in ("127.0.0.1:1,127.0.0.1:2", "ipv4:127.0.0.1:1,127.0.0.1:2", "dns:///localhost:50051"):
        status, body = http("PUT", f"{node_url}/_cluster/settings", {"transient": {"shopsearch.rerank.target": good}})
        assert status == 200, (good, body)
    for bad in ("127.0.0.1:1,", "127.0.0.1:1,nowhere", "dns:///localhost"):
        status, body = http("PUT", f"{node_url}/_cluster/settings", {"transient": {"shopsearch.rerank.target": bad}})
        assert status == 400 and "shopsearch.rerank.target must be host:port" in json.dumps(body), (bad, body)
    status, body = http("PUT", f"{node_url}/_cluster/settings", {"transient": {"shopsearch.rerank.target": None}})
    assert status == 200 and stats(node_url)["target"] == TARGET


# -- two nodes ---------------------------------------------------------------------------------------

def test_two_node_cluster_with_replicas_reranks(node_url, service) -> None:
    # node_url's single node goes first: the same ports and distribution serve the cluster.
    single = plugin_node(ES_PORT)
    single.stop()
    seeds = [f"127.0.0.1:{port + 100}" for port in (ES_PORT, ES_PORT_2)]
    cluster = {"discovery.type": "multi-node", "discovery.seed_hosts": seeds,
               "cluster.initial_master_nodes": [f"shopsearch-{ES_PORT}", f"shopsearch-{ES_PORT_2}"]}
    nodes = [plugin_node(port, **cluster) for port in (ES_PORT, ES_PORT_2)]
    for node in nodes:
        shutil.rmtree(node.node_dir / "data", ignore_errors=True)
    errors: list[BaseException] = []

    def start(node) -> None:
        try:
            node.start()
        except BaseException as err:  # noqa: BLE001 - reported by the test thread
            errors.append(err)

    threads = [threading.Thread(target=start, args=(node,)) for node in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    try:
        assert not errors, errors
        url = nodes[0].url
        status, health = http("GET", f"{url}/_cluster/health?wait_for_nodes=2&timeout=60s")
        assert health["number_of_nodes"] == 2, health
        for node in nodes:
            wait_warmed(node.url)
        index = make_index(url, "plugin-cluster", shards=2, replicas=1)
        for node in nodes:  # either node coordinates; each shard copy reranks the same way
            assert_reranked(node.url, index, shards=2, window=3)
        # each node holds a copy of both shards: searched on its own copies, every node reranks (left
        # to adaptive replica selection, a loaded machine may route every shard to one node)
        for node in nodes:
            assert_reranked(node.url, index, shards=2, window=3, preference="_only_local")
        assert all(stats(node.url)["reranked"] > 0 for node in nodes)
    finally:
        for node in nodes:
            node.stop()


# -- the build ------------------------------------------------------------------------------------

def test_the_zip_is_reused_while_its_inputs_are_unchanged() -> None:
    from es_config import plugin

    first = plugin.build(PLUGIN_PROJECT)
    mtime = first.stat().st_mtime_ns
    assert plugin.build(PLUGIN_PROJECT) == first and first.stat().st_mtime_ns == mtime
    import zipfile
    with zipfile.ZipFile(first) as archive:
        names = set(archive.namelist())
        descriptor = archive.read("plugin-descriptor.properties").decode()
    assert {"plugin-descriptor.properties", "entitlement-policy.yaml", "shopsearch-rerank-0.1.0.jar"} <= names
    assert "elasticsearch.version=8.19.21\n" in descriptor


def test_the_java_unit_tests_ran_and_passed_in_the_build() -> None:
    # Surefire runs es_plugin/src/test/java inside `mvn package`, so CI's build of the zip runs them
    # (a failing one fails the build); its reports are what that build left
    import xml.etree.ElementTree as ET
    from es_config import plugin

    plugin.build(PLUGIN_PROJECT)
    reports = sorted((PLUGIN_PROJECT / "target" / "surefire-reports").glob("TEST-*.xml"))
    suites = {r.name: ET.parse(r).getroot().attrib for r in reports}
    summary = {name.removeprefix("TEST-org.shopsearch.es.").removesuffix(".xml"): f"{a['tests']} tests, {a['time']} s"
               for name, a in suites.items()}
    print("Java unit tests:", summary)
    assert {"ShopsearchRescorerBuilderTests", "ScoreMapTests", "SettingsAndFallbackTests", "OutcomeTests"} <= set(summary)
    assert sum(int(a["tests"]) for a in suites.values()) >= 20
    assert all(int(a["failures"]) == 0 and int(a["errors"]) == 0 for a in suites.values()), suites


def test_a_broken_build_is_one_line(tmp_path) -> None:
    from es_config import plugin

    project = tmp_path / "es_plugin"
    shutil.copytree(PLUGIN_PROJECT, project, ignore=shutil.ignore_patterns("target"))
    shutil.copytree(PLUGIN_PROJECT.parent / "proto", tmp_path / "proto")
    source = project / "src/main/java/org/shopsearch/es/RerankSettings.java"
    source.write_text(source.read_text().replace("private RerankSettings() {}", "private RerankSettings() {"))
    with pytest.raises(plugin.PluginError) as excinfo:
        plugin.build(project)
    message = str(excinfo.value)
    assert message.startswith(f"the plugin build failed (mvn package in {project}): ") and "\n" not in message
