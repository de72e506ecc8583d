"""The graph-from-logs curve's plumbing (`shopsearch loop-curve`, reranker/training/loop_curve.py) on the
page tests' catalog: real Elasticsearch for the BM25 stage, a tiny real BERM-O artifact as the served
model, seeded shoppers on the train queries only, the logs export's PBM-corrected graph, and the
variant run's graph stage reading it. Training and evaluation are the pipeline's own (tests/test_pipeline.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation.click_simulator import ClickModel, simulated_events
from frontend.events import parse_batch
from indexer.graph import ClickGraph
from indexer.splits import QuerySplit
from reranker.training.labeling import LabeledPairs
from reranker.training.loop_curve import graph_ndcg, shown_lists, write_logs_graph
from reranker.training import student_stages, teacher_stages
from reranker.training.pipeline import Pipeline
from reranker.training.profiles import PROFILES, run_name, with_overrides
from searchstack.cli import app
from tests.shop_page import GRADES, TITLES, page_catalog
from tests.tiny_artifact import build_tiny_artifact

TRAIN, TEST = ["q1", "q3"], ["q2"]  # "cordless drill", "drill bits"; "paint brushes" is the test split


@pytest.fixture(scope="module")
def base_run(es, page_shop, tmp_path_factory):
    """The profile's run as far as the curve needs it: BM25 top-N (the real stage), a served BERM-O
    (tiny, untrained) and train labels for the graph stage's teacher edges."""
    catalog = page_catalog()
    split = QuerySplit("s", catalog.name, "f", 13, 0.8, 0.1, TRAIN, [], TEST)
    run = Pipeline(catalog, split, es, page_shop, PROFILES["quick"], tmp_path_factory.mktemp("runs"))
    teacher_stages.bm25(run)
    build_tiny_artifact(run.root / "serving", TITLES, ["cordless drill", "drill bits", "claw hammer"])
    pairs = [(q, p) for q in run.train_q for p in run.bm25_top()[q]]
    LabeledPairs(np.array([q for q, _ in pairs]), np.array([p for _, p in pairs]), np.ones(len(pairs), np.float32),
                 np.full(len(pairs), 3.0, np.float32), np.zeros(len(pairs), np.float32)).save(run.root / "train_labels.npz")
    return run


def test_shoppers_search_only_the_train_queries_as_the_page_would_show_them(base_run) -> None:
    lists = shown_lists(base_run)
    assert sorted(lists) == ["cordless drill", "drill bits"]  # never the test split's "paint brushes"
    top = base_run.bm25_top()
    for q in TRAIN:
        shown = lists[base_run.texts[q]]
        assert shown.bm25 == list(top[q]) and sorted(shown.model) == sorted(shown.bm25)
        assert shown.grades == GRADES[q]


def test_simulated_sessions_are_seeded_nested_and_in_the_pages_event_shape(base_run) -> None:
    lists = shown_lists(base_run)
    sessions = simulated_events(lists, ClickModel(), 300, seed=0, page_size=6, interleave_share=0.5)
    assert sessions == simulated_events(lists, ClickModel(), 300, seed=0, page_size=6, interleave_share=0.5)
    assert simulated_events(lists, ClickModel(), 100, seed=0, page_size=6, interleave_share=0.5) == sessions[:100]
    assert simulated_events(lists, ClickModel(), 100, seed=1, page_size=6, interleave_share=0.5) != sessions[:100]
    events = [e for session in sessions for e in session]
    for start in range(0, len(events), 100):  # the event API's own validation takes every one
        parse_batch(json.dumps({"events": events[start:start + 100]}).encode(), 100)
    impressions = [e for e in events if e["type"] == "impression"]
    assert len(impressions) == 300 and {e["query"] for e in impressions} == set(lists)
    drafted = [e for e in impressions if e["interleaved"]]
    assert 90 < len(drafted) < 210  # half of 300 draws, far from the bounds
    assert all({i["arm"] for i in e["items"]} == {"model"} for e in impressions if not e["interleaved"])
    clicks = [e for e in events if e["type"] == "click"]
    assert clicks and all(c["query"] in lists for c in clicks)


def test_the_logs_graph_follows_the_grades_and_the_variant_run_trains_on_it(base_run) -> None:
    lists = shown_lists(base_run)
    sessions = simulated_events(lists, ClickModel(), 400, seed=0, page_size=6, interleave_share=0.5)
    path = base_run.root.parent / "logs" / "graph-s400.json"
    covered = write_logs_graph([e for s in sessions for e in s], base_run, path)
    assert covered == 2
    logged = {(q, p): w for q, p, w in ClickGraph.load(path).edges()}
    assert {q for q, _ in logged} == set(TRAIN)
    good = [w for (q, p), w in logged.items() if GRADES[q].get(p, 0.0) >= 2.0]
    poor = [w for (q, p), w in logged.items() if GRADES[q].get(p, 0.0) == 0.0]
    # attractiveness 0.9 against 0.02: clicked per examined impression, far apart
    assert good and poor and np.mean(good) > 3 * np.mean(poor), (good, poor)

    overrides = {"graph_file": str(path), "k_order_ablation": "false"}
    variant = Pipeline(base_run.catalog, base_run.split, base_run.es, base_run.alias,
                       with_overrides(PROFILES["quick"], overrides), base_run.root.parent,
                       name=run_name(PROFILES["quick"], overrides))
    assert variant.root.name == "page-shop-quick+graph_file=graph-s400+k_order_ablation=false"
    assert (variant.root / "serving" / "manifest.json").is_file()  # a copy of the base run
    student_stages.graph(variant)
    edges = {(q, p): w for q, p, w in ClickGraph.load(variant.root / "graph.json").edges()}
    assert all(edges[pair] == w for pair, w in logged.items())  # the logs' weights, not the teacher's
    source = json.loads((variant.root / "graph_source.json").read_text())
    assert source["edges_from_logs"] == len(logged) and str(path) in source["built_from"]


def test_graph_ndcg_orders_each_train_querys_neighbors_by_edge_weight() -> None:
    grades = {"q1": {"a": 2.0, "b": 1.0}, "q2": {"c": 2.0}, "q3": {"d": 0.0}}  # q3: no positive grade, left out
    assert graph_ndcg(ClickGraph.from_edges([("q1", "a", 0.9), ("q1", "b", 0.5), ("q2", "c", 0.3)]), grades) == 1.0
    # q1 upside down (1 + 2 / log2 3 over 2 + 1 / log2 3), q2 without an edge: 0
    assert graph_ndcg(ClickGraph.from_edges([("q1", "a", 0.1), ("q1", "b", 0.5)]), grades) == pytest.approx(0.4299, abs=1e-4)


def test_the_curve_refuses_volumes_that_are_not_sessions() -> None:
    out = CliRunner().invoke(app, ["loop-curve", "--sessions", "100,lots"])
    assert out.exit_code != 0 and "whole numbers of sessions" in out.output


def test_the_curve_sets_the_graph_file_itself_and_refuses_one_given() -> None:
    out = CliRunner().invoke(app, ["loop-curve", "--set", "graph_file=mine.json"])
    assert out.exit_code != 0 and "sets graph_file itself" in out.output
