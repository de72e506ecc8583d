"""What the k-order part has to work with on a run's test queries: how close the click graph's nodes
are to them, and whether the neighbours they borrow are relevant (`shopsearch k-order`).

Every test query is absent from a graph built on train queries, so its query-side context comes
from its nearest logged queries (reranker/graph/neighbors.py's stand-ins); a candidate product has
item-side context of its own only when some train query reached it. The paper's graph comes from
massive search logs, where most queries have a near twin; these figures say how far a run's graph
is from that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.faiss_store import VectorStore
from reranker.graph.neighbors import NeighborSampler

TWIN = 0.8  # cosine at which a logged query is a near twin of the test query (same intent, other words)


@dataclass(frozen=True)
class KOrderCoverage:
    queries: int  # test queries measured
    graph_queries: int
    graph_items: int
    stand_in_cosine: tuple[float, float, float]  # quartiles of the nearest logged query's cosine
    twin_share: float  # test queries whose nearest logged query has cosine >= TWIN
    borrowed_judged: float  # share of the borrowed Q-I items that are judged for the test query
    borrowed_gain: float  # mean grade of those judged borrowed items
    bm25_top10_gain: float  # mean grade of the judged items in BM25's top 10, for comparison
    candidates_in_graph: float  # share of BM25 top-N candidates with item-side neighbours of their own
    item_query_cosine: float  # mean, over those, of their closest logged query's cosine to the test query

    def lines(self) -> list[str]:
        q1, q2, q3 = self.stand_in_cosine
        return [
            f"test queries: {self.queries}; graph: {self.graph_queries:,} queries, {self.graph_items:,} products",
            f"nearest logged query's cosine to a test query: quartiles {q1:.2f} / {q2:.2f} / {q3:.2f}; "
            f"{self.twin_share:.1%} have one >= {TWIN}",
            f"query-side neighbours (Q-I, borrowed through those stand-ins): {self.borrowed_judged:.1%} are judged for "
            f"the test query, mean grade {self.borrowed_gain:.2f} (BM25's judged top 10: {self.bm25_top10_gain:.2f})",
            f"candidates with item-side neighbours of their own: {self.candidates_in_graph:.1%}; their closest logged "
            f"query's cosine to the test query: {self.item_query_cosine:.2f} on average",
        ]


def k_order_coverage(sampler: NeighborSampler, query_store: VectorStore, query_vectors: dict[str, np.ndarray],
                     candidates: dict[str, list[str]], grades: dict[str, dict[str, float]]) -> KOrderCoverage:
    """The figures for test queries given by id: their bi-encoder vectors, BM25 candidates (best
    first) and human grades. Raises ValueError when no query is given."""
    if not query_vectors:
        raise ValueError("no test queries to measure")
    graph = sampler.graph
    logged = dict(zip(query_store.ids, query_store.vectors))
    nearest, judged_share, borrowed, top10, in_graph, item_cos = [], [], [], [], [], []
    for q, vec in query_vectors.items():
        stand_ins = sampler.query_stand_ins(vec, query_store)
        nearest.append(max(stand_ins.values(), default=0.0))
        found = [p for p, _ in sampler.query_paths(None, vec, query_store)["Q-I"]]
        graded = grades.get(q, {})
        judged = [graded[p] for p in found if p in graded]
        judged_share.append(len(judged) / len(found) if found else 0.0)
        borrowed.extend(judged)
        ids = candidates.get(q, [])
        top10.extend(graded[p] for p in ids[:10] if p in graded)
        own = [p for p in ids if graph.has_item(p)]
        if ids:
            in_graph.append(len(own) / len(ids))
        for p in own:
            cosines = [float(logged[x] @ vec) for x, _ in graph.queries_of(p) if x in logged]
            if cosines:
                item_cos.append(max(cosines))
    nearest_arr = np.array(nearest)

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return KOrderCoverage(
        queries=len(query_vectors), graph_queries=len(graph.queries), graph_items=len(graph.items),
        stand_in_cosine=tuple(float(x) for x in np.percentile(nearest_arr, [25, 50, 75])),
        twin_share=float((nearest_arr >= TWIN).mean()), borrowed_judged=mean(judged_share),
        borrowed_gain=mean(borrowed), bm25_top10_gain=mean(top10), candidates_in_graph=mean(in_graph),
        item_query_cosine=mean(item_cos))
