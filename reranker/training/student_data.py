"""The students' training data: the click graph from teacher-scored impressions, and lazy groups.

Graph. The train split's judged pairs were drawn from the shop's result lists, so they are the
impressions: each becomes an edge weighted by the teacher's confidence sigmoid(logit). BM25
candidates the teacher is confident about (sigmoid >= `confident`) join as extra edges. Grades of
dev or test queries never enter; only train queries are graph nodes.

Folds. A train query's own edges are weighted by the very teacher scores the student learns, so
its Q-I context would hand the student the answer; and at test time no query is in the graph.
So train queries fall into two folds by a hash of their id, each fold gets a graph built from the
OTHER fold's queries, and a training group takes its context from that graph: like a test query,
it meets the graph only through its FAISS stand-ins. Dev, test and serving use the whole graph.

Groups are built on demand (a Sequence): all groups' neighbor vectors at once would not fit in
memory on the full data (~500k pairs x 4 paths x 5 neighbors x 384 floats).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from reranker.graph.context import ContextBuilder
from reranker.models.teacher import deployed_score
from reranker.training.labeling import LabeledPairs


def fold_of(query_id: str) -> int:
    """0 or 1, stable across runs and machines."""
    return hashlib.sha256(query_id.encode()).digest()[0] & 1


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))


def graph_edges(
    labels: LabeledPairs, judged: dict[str, set[str]], confident: float = 0.8, queries: set[str] | None = None
) -> list[tuple[str, str, float]]:
    """(query, product, weight) edges: judged pairs (impressions) at sigmoid(teacher logit), plus
    teacher-confident BM25 candidates; only the queries in `queries` when given."""
    weights = sigmoid(labels.teacher)
    edges = []
    for q, p, w in zip(labels.query_ids.tolist(), labels.product_ids.tolist(), weights.tolist()):
        if queries is not None and q not in queries:
            continue
        if p in judged.get(q, ()) or w >= confident:
            edges.append((q, p, round(w, 4)))
    return edges


def mixed_targets(by_query: dict[str, dict[str, tuple[float, float, float]]], bm25_mix: float, cosine_mix: float,
                  scale: float = 4.0) -> dict[str, dict[str, float]]:
    """The deployed teacher's score per candidate (`deployed_score` of its (BM25, logit, cosine)
    within the query), times `scale` so the targets span a few units like the students' scores."""
    out = {}
    for q, items in by_query.items():
        ids = list(items)
        b, t, c = (np.array([items[p][k] for p in ids]) for k in range(3))
        out[q] = dict(zip(ids, (scale * deployed_score(t, b, c, bm25_mix, cosine_mix)).tolist()))
    return out


class StudentGroups(Sequence):
    """One training group per query: the model inputs for its candidates plus `target` and `gain`.

    `builder_of(query_id)` picks the context builder (the other fold's graph for train queries).
    `target_of`, when given, replaces the stored targets with a model's scores on the group (BERM
    teaching BERM-O).
    """

    def __init__(
        self,
        queries: list[str],
        texts: dict[str, str],
        bm25: dict[str, dict[str, float]],
        targets: dict[str, dict[str, float]],
        gains: dict[str, dict[str, float]],
        builder_of: Callable[[str], ContextBuilder],
        target_of: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    ) -> None:
        self.queries = [q for q in queries if len(bm25.get(q, {})) > 1]
        self.texts, self.bm25, self.targets, self.gains = texts, bm25, targets, gains
        self.builder_of, self.target_of = builder_of, target_of

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:  # type: ignore[override]
        q = self.queries[index]
        ids = list(self.bm25[q])
        group = self.builder_of(q).build(self.texts[q], q, ids, [self.bm25[q][p] for p in ids])
        grades = self.gains.get(q, {})
        group["gain"] = torch.tensor([grades.get(p, float("nan")) for p in ids], dtype=torch.float32)
        if self.target_of is not None:
            group["target"] = self.target_of(group).detach().to(torch.float32)
        else:
            group["target"] = torch.tensor([self.targets[q][p] for p in ids], dtype=torch.float32)
        return group
