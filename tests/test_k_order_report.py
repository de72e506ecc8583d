"""`k_order_coverage` (reranker/training/k_order_report.py) on a hand-made graph whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.faiss_store import VectorStore
from indexer.graph import ClickGraph
from reranker.graph.neighbors import NeighborSampler
from reranker.training.k_order_report import k_order_coverage


def unit(*values: float) -> np.ndarray:
    vec = np.array(values, dtype=np.float32)
    return vec / np.linalg.norm(vec)


def test_a_twin_query_borrows_judged_neighbours_and_a_stranger_borrows_noise() -> None:
    graph = ClickGraph.from_edges([("drill", "p1", 1.0), ("drill", "p2", 0.5), ("rug", "p9", 1.0)])
    store = VectorStore.build(["drill", "rug"], np.stack([unit(1, 0, 0), unit(0, 1, 0)]))
    sampler = NeighborSampler(graph, per_path=5, seed=1, fallback_k=1)
    vectors = {"cordless drill": unit(1, 0.1, 0), "lamp": unit(0.3, 0.3, 1)}  # a twin of "drill", a stranger
    candidates = {"cordless drill": ["p1", "p3", "p4", "p5"], "lamp": ["p7", "p8", "p9", "p6"]}
    grades = {"cordless drill": {"p1": 3.0, "p2": 2.0, "p3": 1.0}, "lamp": {"p7": 3.0}}

    found = k_order_coverage(sampler, store, vectors, candidates, grades)

    twin = float(vectors["cordless drill"] @ store.vectors[0])
    stranger = max(float(vectors["lamp"] @ v) for v in store.vectors)
    assert found.stand_in_cosine[0] == pytest.approx(np.percentile([twin, stranger], 25), abs=1e-5)
    assert found.twin_share == 0.5  # the lamp's nearest logged query is far
    assert found.borrowed_judged == pytest.approx((1.0 + 0.0) / 2)  # drill's p1, p2 both judged; lamp's p9 not
    assert found.borrowed_gain == pytest.approx(2.5) and found.bm25_top10_gain == pytest.approx(7 / 3)
    assert found.candidates_in_graph == pytest.approx((1 / 4 + 1 / 4) / 2)  # p1 and p9 have their own queries
    assert found.item_query_cosine == pytest.approx((twin + float(vectors["lamp"] @ store.vectors[1])) / 2, abs=1e-5)
    assert (found.queries, found.graph_queries, found.graph_items) == (2, 2, 3)
    assert len(found.lines()) == 4 and "50.0% have one >= 0.8" in found.lines()[1]


def test_no_queries_is_an_error() -> None:
    graph = ClickGraph.from_edges([("drill", "p1", 1.0)])
    with pytest.raises(ValueError, match="no test queries"):
        k_order_coverage(NeighborSampler(graph), VectorStore.build(["drill"], unit(1, 0)[None]), {}, {}, {})
