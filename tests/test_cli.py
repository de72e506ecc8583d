"""The `shopsearch` command line as a user runs it: real processes, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import SMALL_PRODUCTS, free_port


def shopsearch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "searchstack", *args],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", **(env or {})}, timeout=300,
    )


def assert_one_line_error(done: subprocess.CompletedProcess, expected: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {expected}"]


@pytest.fixture
def shop_folder(tmp_path: Path) -> Path:
    """The small test catalog in the generic format."""
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "products.jsonl").write_text(
        "\n".join(json.dumps({"product_id": p, "title": t}) for p, t in SMALL_PRODUCTS) + "\n"
    )
    (folder / "queries.csv").write_text("query_id,query\nq1,cordless drill\nq2,paint brushes\n")
    (folder / "labels.csv").write_text("query_id,product_id,grade\nq1,p1,2\nq1,p2,1\nq1,p6,0\nq2,p7,2\nq2,p5,0\n")
    return folder


def test_every_command_explains_itself() -> None:
    for command in ([], ["index"], ["split"], ["eval"], ["demo"], ["es", "start"], ["ceiling"], ["k-order"]):
        done = shopsearch(*command, "--help")
        assert done.returncode == 0 and "Usage:" in done.stdout, command


def test_index_when_the_cluster_is_down(shop_folder: Path) -> None:
    port = free_port()
    done = shopsearch("index", "-f", "generic", "--path", str(shop_folder), "--es-url", f"http://127.0.0.1:{port}")
    assert_one_line_error(
        done,
        f"cannot reach Elasticsearch at http://127.0.0.1:{port} (ConnectionError); "
        "start it with `shopsearch es start` or set SHOPSEARCH_ES_URL",
    )


def test_index_with_a_missing_file() -> None:
    done = shopsearch("index", "-f", "home-depot", "--path", "/nonexistent/train.csv")
    assert_one_line_error(done, "/nonexistent/train.csv: not found")


def test_es_start_on_a_taken_port() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        done = shopsearch("es", "start", "--port", str(port))
    assert_one_line_error(
        done,
        f"port {port} on 127.0.0.1 is in use by another process; choose another with "
        "SHOPSEARCH_ES_PORT (or point SHOPSEARCH_ES_URL at that node)",
    )


def test_malformed_row_is_reported_and_strict_stops(shop_folder: Path, es_url: str) -> None:
    with open(shop_folder / "labels.csv", "a") as labels:
        labels.write("q1,p404,2\n")
    env = {"SHOPSEARCH_INDEX_ALIAS": f"test-{uuid.uuid4().hex[:8]}"}
    done = shopsearch("index", "-f", "generic", "--path", str(shop_folder), "--es-url", es_url, env=env)
    assert done.returncode == 0, done.stderr
    assert f"{shop_folder / 'labels.csv'}:7: unknown product_id 'p404'" in done.stderr
    strict = shopsearch("index", "-f", "generic", "--path", str(shop_folder), "--es-url", es_url, "--strict", env=env)
    assert_one_line_error(strict, f"malformed row at {shop_folder / 'labels.csv'}:7: unknown product_id 'p404'")


def test_index_then_eval_end_to_end(shop_folder: Path, es_url: str, tmp_path: Path) -> None:
    env = {"SHOPSEARCH_INDEX_ALIAS": f"test-{uuid.uuid4().hex[:8]}", "SHOPSEARCH_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
           "SHOPSEARCH_SPLIT_TEST_FRACTION": "0.99", "SHOPSEARCH_SPLIT_DEV_FRACTION": "0.0"}
    first = shopsearch("index", "-f", "generic", "--path", str(shop_folder), "--es-url", es_url, env=env)
    assert first.returncode == 0, first.stderr
    assert "count check passed (8)" in first.stdout
    again = shopsearch("index", "-f", "generic", "--path", str(shop_folder), "--es-url", es_url, env=env)
    assert "already holds this catalog (8 products); nothing to do" in again.stdout
    report = tmp_path / "bm25.json"
    done = shopsearch("eval", "-f", "generic", "--path", str(shop_folder), "--es-url", es_url, "--json", str(report), env=env)
    assert done.returncode == 0, done.stderr
    assert "linear gain" in done.stdout
    result = json.loads(report.read_text())
    assert [row["name"] for row in result["rows"]] == ["BM25 (Elasticsearch)", "random order (reference)"]
    assert result["queries"] == 2
    assert result["rows"][0]["end_to_end"]["ndcg@10"] == pytest.approx(1.0)
    assert (tmp_path / "artifacts" / "splits" / "shop.json").exists()


def test_ablation_help_names_every_part_it_accepts() -> None:
    from reranker.training.ablation import VARIANTS

    done = shopsearch("ablation", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # rich wraps the help over lines
    missing = [part for part in VARIANTS if part not in text]
    assert not missing, f"ablation --help does not name {missing}"
