"""The local Elasticsearch node: start, second start, status, and every way it can refuse."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

from es_config.local_node import LocalNode, NodeError, cluster_health, find_java_home
from tests.conftest import free_port, test_node


def test_session_node_is_healthy(es_url: str) -> None:
    health = cluster_health(es_url)
    assert health is not None and health["status"] in ("green", "yellow")


@pytest.mark.skipif(bool(os.environ.get("ES_URL")), reason="the node is external")
def test_second_start_says_already_running_and_does_nothing(es_url: str) -> None:
    node = test_node()
    pid_before = node.status().pid
    result = node.start()
    assert result.already_running is True
    assert node.status().pid == pid_before


def test_status_of_a_node_that_is_not_running() -> None:
    status = test_node(port=free_port()).status()
    assert (status.running, status.pid, status.health) == (False, None, None)


def test_stop_without_a_running_node_returns_false() -> None:
    assert test_node(port=free_port()).stop() is False


def test_start_refuses_a_port_taken_by_another_process() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(NodeError) as err:
            test_node(port=port).start()
    assert str(err.value) == (
        f"port {port} on 127.0.0.1 is in use by another process; choose another with "
        "SHOPSEARCH_ES_PORT (or point SHOPSEARCH_ES_URL at that node)"
    )


def test_missing_java_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("ES_JAVA_HOME", raising=False)
    with pytest.raises(NodeError, match=r"^Java not found: Elasticsearch needs a JDK 17 or newer"):
        find_java_home()


def test_missing_maven_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    node = test_node(cache_dir=tmp_path / "empty-cache")
    with pytest.raises(NodeError, match=r"^Maven not found: it fetches Elasticsearch from Maven Central"):
        node.fetch()


def test_a_node_that_cannot_start_names_its_log(es_url: str) -> None:
    node = test_node(port=free_port(), heap="1x")  # the JVM rejects this heap size and exits
    try:
        with pytest.raises(NodeError) as err:
            node.start()
    finally:
        node.stop()
    message = str(err.value)
    assert message.startswith("Elasticsearch exited with code ")
    log_path = message.rsplit("see ", 1)[1]
    assert os.path.exists(log_path)
    assert not node.status().running
    shutil.rmtree(node.node_dir, ignore_errors=True)
