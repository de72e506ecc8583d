"""One owner for the rerank depth and for every deadline of a Rerank call (issue 21, item 4): the
settings fill the page's copies, the former keys still work, the plugin node is handed every one
of its settings from them (none left to a Java default), and the served model's trained depth
turns more candidates than it learned from into a warning, not a failure."""

from __future__ import annotations

import logging
import re

import pytest
from pydantic import ValidationError

from common.results import Candidate
from common.settings import Balancing, Deadlines, Limits, RerankSettings
from es_config.local_node import PLUGIN_PROJECT, plugin_node_settings
from reranker.client import DEFAULT_TIMEOUT_S, RerankClient
from reranker.server.app import RerankServer
from reranker.server.models import load_berm_o
from searchstack.settings import Settings
from tests.conftest import SMALL_PRODUCTS
from tests.tiny_artifact import build_tiny_artifact

JAVA_SETTINGS = PLUGIN_PROJECT / "src" / "main" / "java" / "org" / "shopsearch" / "es" / "RerankSettings.java"


@pytest.fixture(autouse=True)
def no_settings_from_outside(monkeypatch, tmp_path):
    import os

    for name in list(os.environ):
        if name.startswith("SHOPSEARCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SHOPSEARCH_CONFIG", str(tmp_path / "none.toml"))


def test_the_page_gets_the_rerank_depth_and_its_deadline_from_their_owners(monkeypatch) -> None:
    s = Settings()
    assert s.rerank.depth == s.web.rerank_depth == 100
    assert s.rerank.deadlines == Deadlines(page_ms=300, plugin_ms=300, client_ms=2000, server_default_ms=1000)
    assert s.web.rerank_deadline_ms == 300
    monkeypatch.setenv("SHOPSEARCH_RERANK_DEPTH", "40")
    monkeypatch.setenv("SHOPSEARCH_RERANK_PAGE_DEADLINE_MS", "250")
    monkeypatch.setenv("SHOPSEARCH_RERANK_PLUGIN_DEADLINE_MS", "150")
    s = Settings()
    assert (s.rerank.depth, s.web.rerank_depth) == (40, 40)
    assert (s.rerank.deadlines.page_ms, s.web.rerank_deadline_ms, s.rerank.deadlines.plugin_ms) == (250, 250, 150)
    assert Settings(rerank_depth=12).web.rerank_depth == 12  # a CLI flag reaches the page too


def test_the_former_keys_still_set_the_owner(monkeypatch) -> None:
    monkeypatch.setenv("SHOPSEARCH_WEB_RERANK_DEPTH", "8")
    monkeypatch.setenv("SHOPSEARCH_WEB_RERANK_DEADLINE_MS", "1000")
    monkeypatch.setenv("SHOPSEARCH_ES_RERANK_DEADLINE_MS", "250")
    s = Settings()
    assert (s.rerank.depth, s.web.rerank_depth) == (8, 8)
    assert (s.rerank.deadlines.page_ms, s.rerank.deadlines.plugin_ms) == (1000, 250)
    monkeypatch.setenv("SHOPSEARCH_RERANK_DEPTH", "8")
    assert Settings().rerank.depth == 8  # both names, one value: fine
    monkeypatch.setenv("SHOPSEARCH_RERANK_DEPTH", "9")
    with pytest.raises(ValidationError, match=re.escape(
            "web_rerank_depth is the former name of rerank_depth, and the two differ (8 and 9); set rerank_depth only")):
        Settings()


def test_the_flat_deadline_keys_of_the_server_and_client_keep_their_names(monkeypatch) -> None:
    monkeypatch.setenv("SHOPSEARCH_RERANK_DEFAULT_DEADLINE_MS", "700")
    monkeypatch.setenv("SHOPSEARCH_RERANK_CLIENT_TIMEOUT_MS", "900")
    assert Settings().rerank.deadlines.server_default_ms == 700
    assert Settings().rerank.deadlines.client_ms == 900
    assert RerankSettings(default_deadline_ms=5).deadlines.server_default_ms == 5
    assert DEFAULT_TIMEOUT_S == Deadlines().client_ms / 1000


def java_settings() -> dict[str, str]:
    """Each node setting RerankSettings.java declares -> its default, as written in the Java source."""
    source = JAVA_SETTINGS.read_text()
    found = re.findall(r'Setting\.\w+\(\s*"(shopsearch\.rerank\.[a-z_]+)",\s*([^,]+?),', source)
    assert len(found) >= 9, found
    return dict(found)


def test_the_node_is_handed_every_plugin_setting_from_the_projects_settings() -> None:
    s = Settings(rerank_depth=40, rerank_plugin_deadline_ms=150, rerank_retry_attempts=2, rerank_retry_backoff_ms=30,
                 rerank_max_text_chars=500)
    handed = plugin_node_settings(s)
    assert set(handed) == set(java_settings())
    assert handed == {
        "shopsearch.rerank.target": "127.0.0.1:50051", "shopsearch.rerank.retry_attempts": 2,
        "shopsearch.rerank.retry_backoff": "30ms", "shopsearch.rerank.deadline": "150ms",
        "shopsearch.rerank.fail_on_error": False, "shopsearch.rerank.max_window": 40,
        "shopsearch.rerank.text_field": "title", "shopsearch.rerank.id_field": "product_id",
        "shopsearch.rerank.max_text_chars": 500}


def test_the_java_defaults_are_the_python_defaults() -> None:
    """For a node set up by hand: the plugin's own defaults say what the project's settings say."""
    java = java_settings()
    python = plugin_node_settings(Settings())

    def as_java(value) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, str) and value.endswith("ms"):
            return f"TimeValue.timeValueMillis({value[:-2]})"
        return f'"{value}"' if isinstance(value, str) else str(value)

    assert {key: as_java(value) for key, value in python.items()} == java
    assert (Balancing().retry_attempts, Limits().max_text_chars) == (3, 1000)


def test_more_candidates_than_the_model_learned_from_is_a_warning_not_a_failure(tmp_path, caplog) -> None:
    titles = dict(SMALL_PRODUCTS)
    artifact = build_tiny_artifact(tmp_path / "a", titles, ["cordless drill"], seed=0, trained_depth=3)
    config = RerankSettings(port=0, grace_s=1.0, metrics_port=None, reload_poll_s=0)
    caplog.set_level(logging.WARNING, logger="reranker.server.service")
    with RerankServer(config, loader=load_berm_o, artifact=artifact) as server:
        server.wait_ready(120)
        assert server.metrics.value("shopsearch_rerank_model_trained_depth") == 3
        candidates = [Candidate(pid, 10.0 - rank, rank + 1) for rank, pid in enumerate(titles)]
        with RerankClient(server.target, timeout_s=10) as client:
            within = client.rerank("cordless drill", candidates[:3])
            assert server.metrics.value("shopsearch_rerank_over_trained_depth_total") == 0
            over = [client.rerank("cordless drill", candidates) for _ in range(3)]
        assert len(within.items) == 3 and all(len(answer.items) == len(titles) for answer in over)
        assert all(item.reranked for answer in over for item in answer.items)  # scored all the same
        assert server.metrics.value("shopsearch_rerank_over_trained_depth_total") == 3
    warnings = [r.getMessage() for r in caplog.records if "trained on the BM25 top" in r.getMessage()]
    assert warnings == [f"a request sent {len(titles)} candidates; model {over[0].model_version} was trained on the "
                        "BM25 top 3 (set rerank_depth to 3 or less; counted in shopsearch_rerank_over_trained_depth_total)"]
