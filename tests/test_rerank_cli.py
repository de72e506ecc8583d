"""`shopsearch serve` and `shopsearch rerank` as a user runs them: real processes, a real
Elasticsearch node, a tiny BERM-O artifact built here, one-line errors, graceful stop on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from es_config.query import bm25_query
from reranker.client import Candidate, RerankClient
from common.settings import RerankSettings
from reranker.server.app import RerankServer
from reranker.server.models import load_berm_o
from tests.tiny_artifact import build_tiny_artifact
from tests.conftest import SMALL_PRODUCTS, free_port
from tests.test_cli import assert_one_line_error, shopsearch

TITLES = dict(SMALL_PRODUCTS)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return build_tiny_artifact(tmp_path_factory.mktemp("cli") / "berm-o", TITLES,
                               ["cordless drill", "paint brush", "hammer"], seed=0)


def test_serve_refuses_a_missing_or_corrupt_artifact(artifact: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    done = shopsearch("serve", "--artifact", str(missing), "--port", "0", "--no-metrics")
    assert_one_line_error(done, f"{missing}: no model artifact there (run `shopsearch pipeline` first)")
    broken = tmp_path / "broken"
    shutil.copytree(artifact, broken)
    (broken / "manifest.json").write_text("{ not json")
    done = shopsearch("serve", "--artifact", str(broken), "--port", "0", "--no-metrics")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {broken}/manifest.json: not JSON ("), done.stderr


def test_serve_answers_logs_json_and_stops_on_sigterm(artifact: Path) -> None:
    port, metrics_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "searchstack", "serve", "--artifact", str(artifact), "--port", str(port),
         "--metrics-port", str(metrics_port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
    try:
        with RerankClient(f"127.0.0.1:{port}", timeout_s=10) as client:
            client.wait_serving(120)
            result = client.rerank("cordless drill", [Candidate(p, 9.0 - i, i + 1) for i, p in enumerate(TITLES)])
            assert len(result.items) == len(TITLES)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert len(lines) == 1 and lines[0]["code"] == "OK" and lines[0]["query"] == "cordless drill"
    assert f"on 127.0.0.1:{port}; metrics on http://127.0.0.1:{metrics_port}/metrics" in stderr
    assert "SIGTERM received: draining in-flight requests" in stderr
    assert stderr.rstrip().endswith("stopped")


def test_rerank_prints_both_orders_side_by_side(artifact: Path, es, es_url: str, alias: str, small_catalog) -> None:
    from indexer.bulk_index import index_catalog

    index_catalog(es, small_catalog, alias, progress=False)
    config = RerankSettings(port=0, metrics_port=None, reload_poll_s=0)
    with RerankServer(config, loader=load_berm_o, artifact=artifact) as server:
        server.wait_ready(120)
        env = {"SHOPSEARCH_INDEX_ALIAS": alias, "SHOPSEARCH_RERANK_TARGET": server.target}
        done = shopsearch("rerank", "cordless drill", "--es-url", es_url, "--explain", env=env)
        expected_version = server.slot.model.version
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "'cordless drill': BM25 top " in out and f"BERM-O {expected_version}" in out
    for header in ("BM25 order", "reranked order", "score", "move"):
        assert header in out
    # the same items in both columns, the BM25 one in BM25 order; each reranked row shows its move
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines()
            if re.match(r"^\s*│\s+\d+\s+│", line)]
    hits = es.search(index=alias, query=bm25_query("cordless drill"), size=100)["hits"]["hits"]
    assert [row[1].split()[0] for row in rows] == [hit["_id"] for hit in hits]
    assert sorted(row[3].split()[0] for row in rows) == sorted(hit["_id"] for hit in hits)
    bm25_rank = {hit["_id"]: rank for rank, hit in enumerate(hits, start=1)}
    for position, row in enumerate(rows, start=1):
        move = bm25_rank[row[3].split()[0]] - position
        assert row[5] == ("=" if move == 0 else f"↑{move}" if move > 0 else f"↓{-move}")
    assert "round trip" in out and "of which the model" in out
    assert "= 0-order" in out and "k-order" in out


def test_rerank_when_the_service_is_down(es, es_url: str, alias: str, small_catalog) -> None:
    from indexer.bulk_index import index_catalog

    index_catalog(es, small_catalog, alias, progress=False)
    port = free_port()
    done = shopsearch("rerank", "cordless drill", "--es-url", es_url, "--target", f"127.0.0.1:{port}",
                      env={"SHOPSEARCH_INDEX_ALIAS": alias})
    assert_one_line_error(done, f"reranker at 127.0.0.1:{port}: UNAVAILABLE: cannot connect (is `shopsearch serve` "
                                "running there? set SHOPSEARCH_RERANK_TARGET)")
