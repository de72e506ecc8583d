"""From logged events to the generic format's logs table and a position-bias corrected click graph:
the position-based model's examination recovered from seeded synthetic logs, and `shopsearch logs
export` against a real Elasticsearch (events written twice count once; the table reads back through
the generic reader)."""

from __future__ import annotations

import json
import random
import shutil

import pytest
from typer.testing import CliRunner

from common.settings import EventSettings
from frontend.events import Click, EventLog, Impression, Shown, new_id, stored
from frontend.search import make_es
from indexer.click_logs import (estimate_pbm, graph_from_position_counts, log_query_id, logs_table,
                                with_teacher_edges)
from indexer.graph import ClickGraph
from indexer.readers.generic import read
from indexer.records import RowErrors
from searchstack.cli import app
from tests.shop_page import write_generic_catalog

def synthetic_counts(seed: int, theta: list[float], pairs: int = 60, shows: int = 400) -> dict:
    """Counts from a known PBM: each pair shown at random positions (so position and relevance part)."""
    rng = random.Random(seed)
    counts: dict = {}
    for p in range(pairs):
        gamma = rng.uniform(0.05, 0.9)
        for _ in range(shows):
            k = rng.randrange(len(theta)) + 1
            cell = counts.setdefault((f"q{p % 7}", f"p{p}", k), [0, 0])
            cell[0] += 1
            cell[1] += rng.random() < theta[k - 1] and rng.random() < gamma
    return counts


def test_the_position_based_model_recovers_examination_from_the_logs_alone() -> None:
    theta = [1.0 / k for k in range(1, 7)]
    model = estimate_pbm(synthetic_counts(0, theta))
    for k, truth in enumerate(theta, start=1):
        assert model.examination[k] == pytest.approx(truth, abs=0.04), (k, model.examination)


def test_the_corrected_graph_credits_clicks_low_on_the_page() -> None:
    # the same click rate, one product always at 1, the other always at 5 (examined a fifth as often)
    counts = {("drill", "top", 1): [100, 20], ("drill", "low", 5): [100, 20]}
    plain = graph_from_position_counts(counts, {"drill": "q1"})
    corrected = graph_from_position_counts(counts, {"drill": "q1"}, {1: 1.0, 5: 0.2})
    assert plain.weight("q1", "top") == plain.weight("q1", "low") == pytest.approx(21 / 102)
    assert corrected.weight("q1", "top") == pytest.approx(21 / 102)
    assert corrected.weight("q1", "low") == pytest.approx(21 / 22)


def test_logged_edges_win_and_the_teacher_fills_the_pairs_the_logs_have_not_reached() -> None:
    logged = ClickGraph.from_edges([("q1", "p1", 0.8)])
    teacher = ClickGraph.from_edges([("q1", "p1", 0.1), ("q1", "p2", 0.6), ("q2", "p3", 0.7)])
    merged = with_teacher_edges(logged, teacher)
    assert sorted(merged.edges()) == [("q1", "p1", 0.8), ("q1", "p2", 0.6), ("q2", "p3", 0.7)]


def test_logs_table_sums_positions_and_names_unknown_queries() -> None:
    counts = {("cordless drill", "p1", 1): [3, 1], ("cordless drill", "p1", 2): [2, 2], ("new query", "p2", 1): [1, 0]}
    rows, new = logs_table(counts, {"cordless drill": "q1"})
    assert rows == sorted([{"query_id": "q1", "product_id": "p1", "clicks": 3, "impressions": 5},
                           {"query_id": log_query_id("new query"), "product_id": "p2", "clicks": 0, "impressions": 1}],
                          key=lambda r: (r["query_id"], r["product_id"]))
    assert new == [{"query_id": log_query_id("new query"), "query": "new query"}]


def test_logs_export_writes_the_generic_logs_table_once_per_event(es_url, events_prefix, tmp_path) -> None:
    config = EventSettings(enabled=True, index_prefix=events_prefix, flush_ms=10.0)
    log = EventLog(make_es(es_url, 2000), config).start()
    shown = Impression(type="impression", event_id=new_id(), session_id="session-01", query="Cordless  Drill",
                       items=[Shown(product_id=p, position=i, arm="bm25") for i, p in enumerate(["p1", "p9", "p10"], 1)])
    clicked = Click(type="click", event_id=new_id(), session_id="session-01", impression_id=shown.event_id,
                    query="Cordless  Drill", product_id="p9", position=2, arm="bm25")
    other = Impression(type="impression", event_id=new_id(), session_id="session-02", query="bosch drill",
                       items=[Shown(product_id="p10", position=1, arm="bm25")])
    batch = [stored(e, "api") for e in (shown, clicked, other)]
    for _ in range(2):  # the same events twice: a retried bulk
        assert log.offer(batch)
        assert log.flush(10)
    log.stop()
    assert log.stats()["written"] == 3 and log.stats()["duplicates"] == 3
    catalog = write_generic_catalog(tmp_path / "shop")
    out = tmp_path / "export"
    answer = CliRunner().invoke(app, ["logs", "export", "-f", "generic", "--path", str(catalog), "--out", str(out),
                                      "--graph", str(out / "graph.json"), "--es-url", es_url],
                                env={"SHOPSEARCH_WEB_EVENTS_INDEX_PREFIX": events_prefix, "COLUMNS": "200"})
    assert answer.exit_code == 0, answer.output
    assert f"4 query-product pairs to {out / 'logs.jsonl'}; 1 queries the catalog lacks" in answer.output
    rows = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()]
    bosch = log_query_id("bosch drill")
    assert rows == [{"query_id": bosch, "product_id": "p10", "clicks": 0, "impressions": 1},
                    {"query_id": "q1", "product_id": "p1", "clicks": 0, "impressions": 1},
                    {"query_id": "q1", "product_id": "p10", "clicks": 0, "impressions": 1},
                    {"query_id": "q1", "product_id": "p9", "clicks": 1, "impressions": 1}]
    assert [json.loads(line) for line in (out / "log_queries.jsonl").read_text().splitlines()] == [
        {"query_id": bosch, "query": "bosch drill"}]
    # the table is the generic format's: it reads back beside the catalog's own tables
    shutil.copy(out / "logs.jsonl", catalog / "logs.jsonl")
    with (catalog / "queries.jsonl").open("a") as queries:  # the queries the catalog lacked
        queries.write((out / "log_queries.jsonl").read_text())
    errors = RowErrors(strict=True)
    assert sorted((e.query_id, e.product_id, e.clicks, e.impressions) for e in read(catalog, errors).logs) == sorted(
        (r["query_id"], r["product_id"], r["clicks"], r["impressions"]) for r in rows)
    graph = ClickGraph.load(out / "graph.json")
    # (clicks + 1) / (examined + 2): clicked at position 2, so the model has position 2 examined
    assert graph.weight("q1", "p9") == pytest.approx(2 / 3)
