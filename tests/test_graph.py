"""Click graph builders and persistence, and the FAISS vector store (no Elasticsearch, no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from indexer.faiss_store import StoreError, StoreMissingError, VectorStore
from indexer.graph import ClickGraph, GraphError, graph_from_logs, graph_from_scores
from indexer.records import LogEvent


def test_graph_from_logs_uses_smoothed_ctr() -> None:
    graph = graph_from_logs([
        LogEvent("q1", "p1", clicks=3, impressions=10),
        LogEvent("q1", "p2", clicks=1, impressions=2),
        LogEvent("q1", "p2", clicks=0, impressions=2),  # a second line for the pair: counts add up
        LogEvent("q2", "p1", clicks=0, impressions=0),  # no evidence: no edge
        LogEvent("q2", "p3", clicks=0, impressions=1),
    ])
    assert graph.items_of("q1") == [("p1", pytest.approx(4 / 12)), ("p2", pytest.approx(2 / 6))]
    assert graph.items_of("q2") == [("p3", pytest.approx(1 / 3))]
    assert graph.queries_of("p1") == [("q1", pytest.approx(4 / 12))]
    assert graph.num_edges == 3
    assert graph.queries == ["q1", "q2"] and graph.items == ["p1", "p2", "p3"]
    assert graph.has_query("q2") and not graph.has_query("p1")
    assert graph.has_item("p3") and not graph.has_item("q1")
    assert graph.items_of("nope") == [] and graph.queries_of("nope") == []


def test_from_edges_keeps_max_weight_and_rejects_out_of_range() -> None:
    graph = ClickGraph.from_edges([("q", "a", 0.2), ("q", "a", 0.7), ("q", "a", 0.5), ("q", "b", 0.7)])
    assert graph.num_edges == 2
    assert graph.items_of("q") == [("a", 0.7), ("b", 0.7)]  # ties broken by id
    assert graph.queries_of("a") == [("q", 0.7)]
    with pytest.raises(GraphError, match="outside"):
        ClickGraph.from_edges([("q", "a", 1.5)])
    with pytest.raises(GraphError):
        ClickGraph.from_edges([("q", "a", float("nan"))])


def test_graph_from_scores_drops_edges_below_min_weight() -> None:
    pairs = [("q1", "p1"), ("q1", "p2"), ("q2", "p1"), ("q2", "p3")]
    graph = graph_from_scores(pairs, np.array([0.9, 0.2, 0.5, 0.49]), min_weight=0.5)
    assert graph.items_of("q1") == [("p1", pytest.approx(0.9))]
    assert graph.items_of("q2") == [("p1", pytest.approx(0.5))]  # exactly min_weight is kept
    assert not graph.has_item("p2") and not graph.has_item("p3")
    assert graph.num_edges == 2
    assert graph_from_scores(pairs, np.array([0.9, 0.2, 0.5, 0.0])).num_edges == 4
    with pytest.raises(GraphError, match="3 scores"):
        graph_from_scores(pairs, np.array([0.1, 0.2, 0.3]))


def test_graph_save_load_round_trip(tmp_path) -> None:
    graph = ClickGraph.from_edges([("q1", "p1", 0.25), ("q1", "p2", 1.0), ("q2", "p2", 0.0), ("p1", "q1", 0.5)])
    path = tmp_path / "graphs" / "click.json"
    graph.save(path)
    manifest = json.loads(path.read_text())["manifest"]
    assert manifest == {"format": "click-graph-1", "num_queries": 3, "num_items": 3, "num_edges": 4}
    loaded = ClickGraph.load(path)
    assert loaded.edges() == graph.edges()
    assert loaded.items_of("q1") == [("p2", 1.0), ("p1", 0.25)]
    assert loaded.queries_of("q1") == [("p1", 0.5)]  # a product id that is also a query id stays apart


def test_graph_load_errors(tmp_path) -> None:
    with pytest.raises(GraphError, match="no click graph"):
        ClickGraph.load(tmp_path / "missing.json")
    path = tmp_path / "g.json"
    ClickGraph.from_edges([("q1", "p1", 0.5)]).save(path)
    data = json.loads(path.read_text())
    data["manifest"]["num_edges"] = 7
    path.write_text(json.dumps(data))
    with pytest.raises(GraphError, match="does not match"):
        ClickGraph.load(path)


def _unit(rows: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_vector_store_search_finds_itself_first() -> None:
    vectors = _unit(20)
    ids = [f"v{i}" for i in range(20)]
    store = VectorStore.build(ids, vectors)
    assert len(store) == 20 and store.has("v3") and not store.has("v20")
    results = store.search(vectors, k=3)
    assert [hits[0][0] for hits in results] == ids
    assert all(hits[0][1] == pytest.approx(1.0, abs=1e-5) for hits in results)
    assert all(len(hits) == 3 and hits[0][1] >= hits[1][1] >= hits[2][1] for hits in results)
    np.testing.assert_allclose(store.vector("v7"), vectors[7], atol=1e-6)
    assert len(store.search(vectors[0], k=50)[0]) == 20  # k larger than the store; 1-D query
    with pytest.raises(KeyError):
        store.vector("v99")


def test_vector_store_subset_and_build_errors() -> None:
    vectors = _unit(6)
    store = VectorStore.build(list("abcdef"), vectors)
    sub = store.subset(["b", "e", "zz"])
    assert sub.ids == ["b", "e"]
    assert sub.search(vectors[4], k=1)[0][0][0] == "e"
    assert sub.search(vectors[0], k=5)[0][0][0] in {"b", "e"}  # 'a' itself is not in the subset
    with pytest.raises(StoreError, match="5 ids for 6"):
        VectorStore.build(list("abcde"), vectors)
    with pytest.raises(StoreError, match="duplicate"):
        VectorStore.build(list("aabcde"), vectors)


def test_vector_store_save_load_round_trip(tmp_path) -> None:
    vectors = _unit(10, dim=16, seed=3)
    ids = [f"p{i}" for i in range(10)]
    VectorStore.build(ids, vectors).save(tmp_path / "faiss", "items")
    assert (tmp_path / "faiss" / "items.faiss").is_file() and (tmp_path / "faiss" / "items_ids.json").is_file()
    loaded = VectorStore.load(tmp_path / "faiss", "items")
    assert loaded.ids == ids
    np.testing.assert_allclose(loaded.vectors, vectors, atol=1e-6)
    np.testing.assert_allclose(loaded.vector("p4"), vectors[4], atol=1e-6)
    assert loaded.search(vectors[[2, 9]], k=1) == [[("p2", pytest.approx(1.0, abs=1e-5))],
                                                    [("p9", pytest.approx(1.0, abs=1e-5))]]


def test_vector_store_missing_file_is_named(tmp_path) -> None:
    VectorStore.build(["a"], _unit(1)).save(tmp_path, "queries")
    (tmp_path / "queries_ids.json").unlink()
    with pytest.raises(StoreMissingError, match="queries_ids.json") as caught:
        VectorStore.load(tmp_path, "queries")
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError, match="other.faiss"):
        VectorStore.load(tmp_path, "other")
