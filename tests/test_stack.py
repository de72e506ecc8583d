"""The demo's process control (searchstack/stack.py) and the commands around it: `shopsearch demo`
(on a small catalog, with a tiny artifact: everything but training and the local node), `stop`
and `ping`, as a user runs them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.tiny_artifact import build_tiny_artifact
from searchstack.stack import Stack, StackError
from tests.conftest import free_port
from tests.shop_page import ARTIFACT_QUERIES, TITLES, drop_alias, write_generic_catalog
from tests.test_cli import assert_one_line_error, shopsearch

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_start_reuse_stop(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    started = stack.start("sleeper", SLEEPER, lambda: True, timeout_s=10)
    assert not started.already_running and stack.pid("sleeper") == started.pid
    again = stack.start("sleeper", SLEEPER, lambda: True, timeout_s=10)
    assert again.already_running and again.pid == started.pid
    assert stack.stop("sleeper") and stack.pid("sleeper") is None
    assert not stack.pid_file("sleeper").exists()
    assert not stack.stop("sleeper")


def test_a_stale_pid_file_never_signals_a_stranger(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    # this very test process, recorded under another command line: not ours to stop
    stack.pid_file("web").write_text(json.dumps({"pid": os.getpid(), "argv": ["shopsearch", "web"]}))
    assert stack.pid("web") is None
    assert not stack.stop("web") and not stack.kill("web")


def test_a_process_that_dies_or_never_gets_ready(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    crash = [sys.executable, "-c", "import sys; print('port 8080 is taken', flush=True); sys.exit(3)"]
    with pytest.raises(StackError) as err:
        stack.start("web", crash, lambda: False, timeout_s=30)
    assert str(err.value) == f"web exited with code 3 while starting: port 8080 is taken (log: {tmp_path / 'web.log'})"
    with pytest.raises(StackError) as err:
        stack.start("sleeper", SLEEPER, lambda: False, timeout_s=1)
    assert str(err.value) == f"sleeper was not ready within 1 s; see {tmp_path / 'sleeper.log'}"
    assert stack.pid("sleeper") is None


def test_ping_and_stop_when_nothing_runs(tmp_path: Path) -> None:
    port = free_port()
    done = shopsearch("ping", "web", env={"SHOPSEARCH_WEB_PORT": str(port)})
    assert done.returncode == 1 and done.stdout.strip() == f"web at http://127.0.0.1:{port}: not answering"
    done = shopsearch("stop", "--keep-es", env={"SHOPSEARCH_STACK_DIR": str(tmp_path)})
    assert done.returncode == 0 and done.stdout.splitlines() == ["web: was not running", "reranker: was not running"]


def test_demo_brings_up_the_stack_reuses_it_and_stop_ends_it(tmp_path: Path, es, es_url: str) -> None:
    alias = "test-demo-cli"
    catalog = write_generic_catalog(tmp_path / "shop")
    web_port = free_port()
    env = {
        "SHOPSEARCH_ES_URL": es_url, "SHOPSEARCH_INDEX_ALIAS": alias, "SHOPSEARCH_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "SHOPSEARCH_STACK_DIR": str(tmp_path / "stack"), "SHOPSEARCH_RERANK_PORT": str(free_port()),
        "SHOPSEARCH_RERANK_METRICS_PORT": str(free_port()), "SHOPSEARCH_WEB_PORT": str(web_port),
    }
    try:
        done = shopsearch("demo", "-f", "generic", "--path", str(catalog), "--no-train", env=env)
        assert_one_line_error(done, "no trained reranker for shop; run `shopsearch pipeline --profile quick` "
                                    "or the demo without --no-train")
        artifact = build_tiny_artifact(tmp_path / "berm-o", TITLES, ARTIFACT_QUERIES)
        env["SHOPSEARCH_RERANK_ARTIFACT"] = str(artifact)
        done = shopsearch("demo", "-f", "generic", "--path", str(catalog), "--no-train", env=env)
        assert done.returncode == 0, done.stderr
        assert f"Open http://127.0.0.1:{web_port} and search." in done.stdout
        # the closing line points at the comparison (no evaluated run here: it says how to get one)
        assert f"http://127.0.0.1:{web_port}/report and /compare show it." in done.stdout
        assert "not evaluated yet" in done.stdout
        assert "reranker started on" in done.stdout and "page started" in done.stdout
        assert (tmp_path / "artifacts" / "serving").resolve() == artifact.resolve()
        done = shopsearch("ping", "web", env=env)
        assert done.returncode == 0, done.stdout
        again = shopsearch("demo", "-f", "generic", "--path", str(catalog), "--no-train", env=env)
        assert again.returncode == 0, again.stderr
        assert "already holds this catalog" in again.stdout
        assert "reranker already running" in again.stdout and "page already running" in again.stdout
    finally:
        done = shopsearch("stop", "--keep-es", env=env)
        drop_alias(es, alias)
    assert done.stdout.splitlines() == ["web: stopped", "reranker: stopped"]
    assert shopsearch("ping", "web", env=env).returncode == 1


def free_consecutive_ports(n: int) -> int:
    """The first of `n` consecutive free loopback ports (checked by binding each)."""
    import socket

    for _ in range(50):
        first = free_port()
        sockets = []
        try:
            for port in range(first, first + n):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {n} consecutive free ports")


def test_replicas_on_consecutive_ports_serve_one_version_behind_one_target(tmp_path: Path) -> None:
    import io
    import urllib.request

    from rich.console import Console

    from reranker.client import Candidate, RerankClient
    from searchstack.demo import start_replicas
    from searchstack.settings import Settings

    artifact = build_tiny_artifact(tmp_path / "berm-o", TITLES, ARTIFACT_QUERIES)
    port, metrics = free_consecutive_ports(3), free_consecutive_ports(3)
    settings = Settings(rerank_port=port, rerank_metrics_port=metrics, rerank_replicas=3, stack_dir=tmp_path / "stack")
    stack = Stack(settings.stack_dir)
    out = io.StringIO()
    try:
        target = start_replicas(settings, stack, artifact, Console(file=out, width=200))
        assert target == f"ipv4:127.0.0.1:{port},127.0.0.1:{port + 1},127.0.0.1:{port + 2}"
        assert stack.replicas() == ["reranker", "reranker-2", "reranker-3"]
        with RerankClient(target) as client:
            client.wait_serving(30)
            answers = {client.rerank("cordless drill", [Candidate(pid, 9.0 - i, i + 1) for i, pid in
                                                         enumerate(TITLES)], timeout=10).model_version
                       for _ in range(30)}
        assert len(answers) == 1 and f"3 replica(s) serving model {answers.pop()}" in out.getvalue()
        for index in range(3):  # round robin reached every replica
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics + index}/metrics", timeout=5).read().decode()
            served = [line for line in text.splitlines() if line.startswith("shopsearch_rerank_requests_total")]
            assert served and float(served[0].split()[-1]) >= 2, (index, served)
        # a later run with fewer replicas stops the extra ones and reuses the rest
        fewer = settings.model_copy(update={"rerank": settings.rerank.model_copy(update={"replicas": 2})})
        assert start_replicas(fewer, stack, artifact, Console(file=io.StringIO())) == \
            f"ipv4:127.0.0.1:{port},127.0.0.1:{port + 1}"
        assert stack.replicas() == ["reranker", "reranker-2"]
    finally:
        done = shopsearch("stop", "--keep-es", env={"SHOPSEARCH_STACK_DIR": str(settings.stack_dir)})
    assert done.stdout.splitlines() == ["web: was not running", "reranker: stopped", "reranker-2: stopped"]
