"""The query-item bipartite click graph that BERM's k-order relevance reads its neighbors from.

Edges join a query to a product with a weight in [0, 1]. The weight comes either from search logs
(a smoothed click-through rate) or, where a shop has no logs, from the teacher's relevance
probability on the train queries' BM25 candidates (the paper's "teacher-labeled" graph).
Queries and products are separate id spaces, so a query and a product may share an id.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from common.errors import ShopsearchError
from indexer.records import LogEvent

log = logging.getLogger(__name__)

FORMAT = "click-graph-1"


class GraphError(ShopsearchError):
    """A click graph that cannot be built or read."""


def _by_weight(neighbors: dict[str, float]) -> list[tuple[str, float]]:
    # Weight descending, then id, so every listing is deterministic.
    return sorted(neighbors.items(), key=lambda pair: (-pair[1], pair[0]))


class ClickGraph:
    def __init__(self) -> None:
        self._items: dict[str, dict[str, float]] = {}  # query -> {product: weight}
        self._queries: dict[str, dict[str, float]] = {}  # product -> {query: weight}
        self._num_edges = 0

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str, float]]) -> "ClickGraph":
        """A graph from (query id, product id, weight) triples; a repeated pair keeps its max weight."""
        graph = cls()
        for query_id, product_id, weight in edges:
            graph._add(str(query_id), str(product_id), float(weight))
        return graph

    def _add(self, query_id: str, product_id: str, weight: float) -> None:
        if not (0.0 <= weight <= 1.0) or math.isnan(weight):
            raise GraphError(f"edge ({query_id!r}, {product_id!r}) has weight {weight}, outside [0, 1]")
        items = self._items.setdefault(query_id, {})
        if product_id in items:
            if weight <= items[product_id]:
                return
        else:
            self._num_edges += 1
        items[product_id] = weight
        self._queries.setdefault(product_id, {})[query_id] = weight

    def items_of(self, query_id: str) -> list[tuple[str, float]]:
        """The query's products, heaviest first (empty for a query not in the graph)."""
        return _by_weight(self._items.get(query_id, {}))

    def queries_of(self, product_id: str) -> list[tuple[str, float]]:
        """The product's queries, heaviest first (empty for a product not in the graph)."""
        return _by_weight(self._queries.get(product_id, {}))

    def weight(self, query_id: str, product_id: str) -> float | None:
        return self._items.get(query_id, {}).get(product_id)

    def has_query(self, query_id: str | None) -> bool:
        return query_id in self._items

    def has_item(self, product_id: str | None) -> bool:
        return product_id in self._queries

    @property
    def queries(self) -> list[str]:
        return sorted(self._items)

    @property
    def items(self) -> list[str]:
        return sorted(self._queries)

    @property
    def num_edges(self) -> int:
        return self._num_edges

    def edges(self) -> list[tuple[str, str, float]]:
        return [(q, p, w) for q in sorted(self._items) for p, w in sorted(self._items[q].items())]

    def manifest(self) -> dict:
        return {"format": FORMAT, "num_queries": len(self._items), "num_items": len(self._queries),
                "num_edges": self._num_edges}

    def save(self, path: Path) -> None:
        """One JSON file: a manifest (node and edge counts) and the edge list."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"manifest": self.manifest(), "edges": self.edges()}))
        log.info("saved click graph to %s: %s", path, self.manifest())

    @classmethod
    def load(cls, path: Path) -> "ClickGraph":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise GraphError(f"{path}: no click graph there; build the graph stage first") from None
        except ValueError as err:
            raise GraphError(f"{path}: not a click graph file ({err})") from None
        if not isinstance(data, dict) or data.get("manifest", {}).get("format") != FORMAT:
            raise GraphError(f"{path}: not a {FORMAT} file")
        try:
            graph = cls.from_edges((q, p, w) for q, p, w in data["edges"])
        except (KeyError, TypeError, ValueError) as err:
            raise GraphError(f"{path}: malformed edge list ({err})") from None
        if graph.manifest() != data["manifest"]:
            raise GraphError(f"{path}: manifest {data['manifest']} does not match its edges {graph.manifest()}")
        return graph


def graph_from_logs(logs: list[LogEvent]) -> ClickGraph:
    """Edges from search logs, weight = smoothed CTR = (clicks + 1) / (impressions + 2).

    The +1/+2 (a Beta(1, 1) prior) keeps a product shown once and not clicked from dropping to 0
    and one shown once and clicked from reaching 1. Several log lines for one pair are summed
    before the ratio is taken; pairs with neither impressions nor clicks carry no evidence and are
    left out.
    """
    counts: dict[tuple[str, str], list[int]] = {}
    for event in logs:
        if event.clicks < 0 or event.impressions < 0:
            raise GraphError(f"log line ({event.query_id!r}, {event.product_id!r}) has negative counts")
        pair = counts.setdefault((event.query_id, event.product_id), [0, 0])
        pair[0] += event.clicks
        pair[1] += event.impressions
    edges = []
    for (query_id, product_id), (clicks, impressions) in counts.items():
        if clicks == 0 and impressions == 0:
            continue
        clicks = min(clicks, impressions)  # readers reject clicks > impressions; never a weight > 1
        edges.append((query_id, product_id, (clicks + 1) / (impressions + 2)))
    graph = ClickGraph.from_edges(edges)
    log.info("click graph from %d log lines: %s", len(logs), graph.manifest())
    return graph


def graph_from_scores(pairs: list[tuple[str, str]], scores: np.ndarray, min_weight: float = 0.0) -> ClickGraph:
    """Edges from (query id, product id) pairs scored in [0, 1] (the teacher's sigmoid).

    Pairs scoring below `min_weight` are dropped, so a teacher-labeled graph keeps only the
    products the teacher finds relevant enough to be context.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(pairs) != scores.shape[0]:
        raise GraphError(f"{len(pairs)} pairs for {scores.shape[0]} scores")
    if np.isnan(scores).any():
        raise GraphError(f"{int(np.isnan(scores).sum())} scores are NaN")
    graph = ClickGraph.from_edges(
        (query_id, product_id, float(score))
        for (query_id, product_id), score in zip(pairs, scores)
        if score >= min_weight
    )
    log.info("click graph from %d scored pairs (min weight %.2f): %s", len(pairs), min_weight, graph.manifest())
    return graph
