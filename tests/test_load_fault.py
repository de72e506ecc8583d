"""The load and fault test, bounded for CI: a few clients for a short while against the page and the
gRPC reranker (run as the demo runs them), malformed and oversized requests mixed in, the reranker
killed with SIGKILL and restarted, Elasticsearch stopped and started. The pass rule is the bench's
(bench/load.py): every request answered (reranked, BM25 fallback or a clear error), none past its
budget plus slack, and the stack back to reranked answers on its own. `python -m bench load` runs
the same test at full size against the demo stack."""

from __future__ import annotations

import os

import pytest

from bench.load import LoadConfig, LoadRun, bm25_lists, print_report, stack_faults
from tests.conftest import test_node
from tests.shop_page import ARTIFACT_QUERIES, drop_alias, start_page_stack


@pytest.fixture
def stack(tmp_path, es, es_url):
    alias = "test-load-fault"
    stack = start_page_stack(tmp_path, es, es_url, alias, SHOPSEARCH_WEB_BUDGET_MS="1500",
                             SHOPSEARCH_WEB_ES_TIMEOUT_MS="1000", SHOPSEARCH_RERANK_PAGE_DEADLINE_MS="300")
    yield stack, alias
    stack.stop_all()
    drop_alias(es, alias)


def test_every_request_answered_in_time_and_the_stack_recovers(stack, es, es_url) -> None:
    page, alias = stack
    # Elasticsearch is stopped and started only when it is this session's own node
    node = None if os.environ.get("ES_URL") else test_node()
    queries = [*ARTIFACT_QUERIES, "drill", "cordless", "masonry bit"]
    seconds = 30.0
    config = LoadConfig(web_url=page.url, grpc_target=page.target, queries=queries,
                        lists=bm25_lists(es, alias, queries, depth=8), clients=4, grpc_clients=1,
                        seconds=seconds, rate_per_client=4.0, max_requests=3000, web_budget_ms=1500.0,
                        grpc_deadline_ms=1000.0, slack_ms=2000.0, recovery_s=120.0)
    report = LoadRun(config, stack_faults(page.stack, page.serve, page.target, node, seconds, env=page.env)).run()
    print(report)
    assert report.passed, report.reasons
    assert [f.name for f in report.faults][:2] == ["kill -9 the reranker", "start the reranker (until SERVING)"]
    web, grpc = report.outcomes["web"], report.outcomes["grpc"]
    assert web["failed"] == grpc["failed"] == 0 and report.hung == 0
    assert web["reranked"] > 0 and web["fallback"] > 0, "the reranker's absence shows as the BM25 fallback"
    assert web["error"] > 0 and grpc["error"] > 0, "malformed and oversized requests get clear errors"
    assert report.shapes["malformed"]["failed"] == report.shapes["oversized"]["failed"] == 0
    if node is not None:
        assert "503 Elasticsearch is not answering" in " ".join(report.errors_seen), report.errors_seen
    assert report.recovered


@pytest.fixture
def replicated(tmp_path, es, es_url):
    alias = "test-load-replicas"
    stack = start_page_stack(tmp_path, es, es_url, alias, replicas=2, SHOPSEARCH_WEB_BUDGET_MS="1500",
                             SHOPSEARCH_WEB_ES_TIMEOUT_MS="1000", SHOPSEARCH_RERANK_PAGE_DEADLINE_MS="300")
    yield stack, alias
    stack.stop_all()
    drop_alias(es, alias)


def test_two_replicas_lose_nothing_to_a_kill_and_a_rolling_reload(replicated, es, tmp_path) -> None:
    """Two replicas behind the page's balanced client: one SIGKILLed and started again mid-run, then
    every replica reloaded in turn with a new artifact. Every request is answered, the BM25 fallback
    while a replica is down stays near zero (the other takes the traffic), and the answers name the
    old version, then the new one."""
    from bench.load import Replica, replica_faults
    from reranker.serving.online import OnlineReranker
    from tests.tiny_artifact import build_tiny_artifact
    from tests.shop_page import TITLES

    page, alias = replicated
    new = build_tiny_artifact(tmp_path / "berm-o-2", TITLES, ARTIFACT_QUERIES, seed=1)
    old_version, new_version = OnlineReranker.load(page.artifact).version, OnlineReranker.load(new).version
    queries = [*ARTIFACT_QUERIES, "drill", "cordless", "masonry bit"]
    seconds = 25.0
    config = LoadConfig(web_url=page.url, grpc_target=page.target, queries=queries,
                        lists=bm25_lists(es, alias, queries, depth=8), clients=4, grpc_clients=1,
                        seconds=seconds, rate_per_client=4.0, max_requests=3000, web_budget_ms=1500.0,
                        grpc_deadline_ms=1000.0, slack_ms=2000.0, recovery_s=60.0)
    replicas = [Replica(name, argv, address) for name, argv, address in page.replicas]
    report = LoadRun(config, replica_faults(page.stack, replicas, None, seconds, str(new), env=page.env)).run()
    from rich.console import Console

    print_report(report, Console(width=160))
    assert report.passed, report.reasons
    assert [f.error for f in report.faults] == ["", "", ""]
    web, grpc = report.outcomes["web"], report.outcomes["grpc"]
    assert web["failed"] == grpc["failed"] == 0 and report.hung == 0
    down = report.windows["one replica down"]
    sent_down = sum(down["web"].values()) + sum(down["grpc"].values())
    fallback_down = down["web"].get("fallback", 0) + down["grpc"].get("error", 0)
    assert sent_down >= 10 and fallback_down <= max(1, sent_down // 20), down  # near zero: <= 5 %
    rolling = report.windows["rolling reload"]
    assert rolling["web"].get("fallback", 0) + rolling["grpc"].get("error", 0) <= 1, rolling
    assert set(report.versions) == {old_version, new_version}, report.versions


@pytest.fixture
def plugin_leg(tmp_path):
    """Two reranker replicas (processes, as the demo runs them) and a node with the plugin whose
    target is both of them, the page catalog indexed there."""
    import shutil

    from indexer.bulk_index import connect, index_catalog
    from tests.shop_page import page_catalog
    from tests.test_es_plugin import ES_PORT, plugin_node, wait_warmed

    alias = "test-load-plugin"
    stack = start_page_stack(tmp_path, None, f"http://127.0.0.1:{ES_PORT}", alias, replicas=2, web=False)
    node = plugin_node(ES_PORT, **{"shopsearch.rerank.target": stack.target})
    try:
        if node.status().running:
            node.stop()
        shutil.rmtree(node.node_dir / "data", ignore_errors=True)
        node.start()
        index_catalog(connect(node.url), page_catalog(), alias, force=True)
        wait_warmed(node.url)
        warm_up_searches(node.url, alias)
        yield stack, node, alias
    finally:
        node.stop()
        stack.stop_all()


def warm_up_searches(url: str, alias: str, timeout_s: float = 120.0) -> None:
    """Rescored searches until two in a row are reranked: a fresh node's first searches compile and
    load what the path needs (seconds on a loaded machine), which is not what the fault run measures."""
    import random
    import time

    from bench.load import plugin_request

    deadline, in_a_row = time.monotonic() + timeout_s, 0
    while in_a_row < 2:
        assert time.monotonic() < deadline, f"the plugin did not rerank within {timeout_s} s"
        outcome, *_ = plugin_request(url, alias, "cordless drill", 8, "normal", random.Random(0), 30.0, 60.0)
        in_a_row = in_a_row + 1 if outcome == "reranked" else 0


def test_the_plugin_path_loses_no_search_to_a_kill_a_rollout_and_a_retarget(plugin_leg, tmp_path) -> None:
    """Searches with the rescore clause at a fixed rate against a node whose target is two replicas,
    while one replica is SIGKILLed and started again, a new model rolls out replica by replica, and
    the node's target is changed live (to one replica, then back to its own, both). Every search is answered:
    reranked, or the BM25 order with the plugin's reason, or (the malformed and oversized ones) a 400;
    none failed, none hung, and both model versions reranked."""
    from rich.console import Console

    from bench.load import Replica, plugin_faults
    from reranker.serving.online import OnlineReranker
    from tests.shop_page import TITLES
    from tests.tiny_artifact import build_tiny_artifact

    stack, node, alias = plugin_leg
    new = build_tiny_artifact(tmp_path / "berm-o-2", TITLES, ARTIFACT_QUERIES, seed=1)
    old_version, new_version = OnlineReranker.load(stack.artifact).version, OnlineReranker.load(new).version
    seconds = 30.0
    config = LoadConfig(web_url=None, grpc_target=None, queries=[*ARTIFACT_QUERIES, "drill", "cordless", "masonry bit"],
                        clients=4, plugin_clients=4, plugin_url=node.url, plugin_index=alias, plugin_window=8,
                        seconds=seconds, rate_per_client=4.0, max_requests=2000, plugin_budget_ms=1500.0,
                        # the node, two replicas (one of them restarting) and the load share two loaded
                        # cores: a search starved for seconds is slow, not hung (a hung one never returns)
                        slack_ms=5000.0, recovery_s=60.0)
    replicas = [Replica(name, argv, address) for name, argv, address in stack.replicas]
    report = LoadRun(config, plugin_faults(stack.stack, replicas, node.url, seconds, str(new), env=stack.env)).run()
    print_report(report, Console(width=160))
    assert report.passed, report.reasons
    assert [f.error for f in report.faults] == [""] * 5, report.faults
    plugin = report.outcomes["plugin"]
    assert plugin["failed"] == 0 and report.hung == 0
    assert plugin["reranked"] > 0 and plugin["error"] > 0, plugin  # bad rescores: a 400 with its reason
    assert report.shapes["malformed"]["failed"] == report.shapes["oversized"]["failed"] == 0
    assert set(report.fallback_reasons.get("plugin", {})) <= {"unavailable", "deadline_exceeded", "overloaded"}, \
        report.fallback_reasons
    for window in ("one replica down", "rolling reload", "retargeted"):
        assert report.windows[window]["plugin"].get("reranked", 0) > 0, (window, report.windows[window])
    assert set(report.versions) == {old_version, new_version}, report.versions
