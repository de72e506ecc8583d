"""Metapath neighbor sampling on the query-item click graph (BERM's k-order relevance context).

Four metapaths, in this order everywhere (tensors index them by position):
    Q-I    the query's items                      weight = w(q, i)
    Q-I-Q  queries sharing an item with the query  weight = max over items i of w(q, i) * w(q', i)
    I-Q    the item's queries                      weight = w(q, i)
    I-Q-I  items sharing a query with the item     weight = max over queries q of w(q, i) * w(q, i')
A node never appears among its own second-order neighbors.

Unseen nodes. Every dev/test query is absent from a graph built on train queries, and so is a
product nobody clicked. Such a node borrows context from its `fallback_k` nearest nodes that ARE in
the graph (by bi-encoder cosine similarity): it is treated as a virtual node joined to each
stand-in's neighbors with the stand-in's similarity (clipped to >= 0) as a multiplier, keeping the
max where stand-ins share a neighbor. Its second-order path is then walked from those borrowed
neighbors, so the stand-ins themselves can appear there (they are real, similar logged nodes).
The nearest-node search runs on a FAISS store restricted to graph nodes: the first time a store is
passed in, `VectorStore.subset(graph.queries)` (or `graph.items`) is built from it and kept; graph
nodes missing from the passed store cannot serve as stand-ins.

Sampling keeps at most `per_path` neighbors per path, drawn without replacement with probability
proportional to weight (zero-weight ones only when there are too few positive ones), from a
generator seeded by a SHA-256 of (seed, node, path): the same node always gets the same sample,
across processes and Python hash seeds. An unseen query has no id, so its seed names its stand-ins
instead: never the vector's bits, which move by ~1e-7 with torch's thread count and would draw a
different sample in serving than in training. Results are cached per node, since serving and training
ask for the same node again and again; the cache assumes one query store and one item store.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import numpy as np

from common.errors import ShopsearchError
from indexer.faiss_store import VectorStore
from indexer.graph import ClickGraph

log = logging.getLogger(__name__)

PATHS = ("Q-I", "Q-I-Q", "I-Q", "I-Q-I")
QUERY_PATHS = PATHS[:2]
ITEM_PATHS = PATHS[2:]

Neighbors = list[tuple[str, float]]


class SamplerError(ShopsearchError):
    pass


def stable_seed(seed: int, node: str, path: str) -> int:
    """A generator seed from (seed, node, path) that does not depend on Python's hash salt."""
    digest = hashlib.sha256(f"{seed}\x00{node}\x00{path}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _vector_key(vec: np.ndarray | None) -> str:
    """A cache key for a node that has no id (an ad-hoc query): a digest of its vector."""
    if vec is None:
        return "vec:none"
    return "vec:" + hashlib.sha256(np.asarray(vec, dtype=np.float32).tobytes()).hexdigest()[:16]


def _keep_max(into: dict[str, float], key: str, weight: float) -> None:
    if weight > into.get(key, -1.0):
        into[key] = weight


class NeighborSampler:
    def __init__(self, graph: ClickGraph, per_path: int = 5, seed: int = 13, fallback_k: int = 3) -> None:
        if per_path < 0 or fallback_k < 0:
            raise SamplerError(f"per_path ({per_path}) and fallback_k ({fallback_k}) must be >= 0")
        self.graph = graph
        self.per_path = per_path
        self.seed = seed
        self.fallback_k = fallback_k
        self._query_cache: dict[str, dict[str, Neighbors]] = {}
        self._item_cache: dict[str, dict[str, Neighbors]] = {}
        self._graph_stores: dict[str, tuple[VectorStore, VectorStore]] = {}

    def clear_cache(self) -> None:
        self._query_cache.clear()
        self._item_cache.clear()

    def query_paths(
        self, query_id: str | None, query_vec: np.ndarray | None, query_store: VectorStore
    ) -> dict[str, Neighbors]:
        """Sampled "Q-I" and "Q-I-Q" neighbors of a query, heaviest first.

        `query_vec` is only read when the query is not in the graph (then it picks the stand-ins).
        """
        key = query_id if query_id is not None else _vector_key(query_vec)
        cached = self._query_cache.get(key)
        if cached is None:
            if self.graph.has_query(query_id):
                anchors = {query_id: 1.0}
                seed_key = query_id
            else:
                anchors = self._stand_ins("query", query_vec, query_store)[0]
                seed_key = query_id if query_id is not None else "via:" + "\x00".join(sorted(anchors))
            first, second = self._two_hop(anchors, self.graph.items_of, self.graph.queries_of, query_id)
            cached = {"Q-I": self._sample(seed_key, "Q-I", first), "Q-I-Q": self._sample(seed_key, "Q-I-Q", second)}
            self._query_cache[key] = cached
        return {path: list(found) for path, found in cached.items()}

    def item_paths(
        self, product_id: str, item_vec: np.ndarray | None, item_store: VectorStore
    ) -> dict[str, Neighbors]:
        """Sampled "I-Q" and "I-Q-I" neighbors of a product, heaviest first (same fallback as queries)."""
        cached = self._item_cache.get(product_id)
        if cached is None:
            if self.graph.has_item(product_id):
                anchors = {product_id: 1.0}
            else:
                anchors = self._stand_ins("item", item_vec, item_store)[0]
            cached = self._item_entry(product_id, anchors)
        return {path: list(found) for path, found in cached.items()}

    def item_paths_many(
        self, product_ids: list[str], item_vecs: np.ndarray, item_store: VectorStore
    ) -> list[dict[str, Neighbors]]:
        """`item_paths` for a candidate list: the unseen items' stand-ins come from one FAISS search."""
        todo: dict[str, int] = {}
        for row, pid in enumerate(product_ids):
            if pid not in self._item_cache and not self.graph.has_item(pid):
                todo.setdefault(pid, row)
        if todo:
            rows = list(todo.values())
            for pid, anchors in zip(todo, self._stand_ins("item", np.asarray(item_vecs)[rows], item_store)):
                self._item_entry(pid, anchors)
        return [self.item_paths(pid, item_vecs[row], item_store) for row, pid in enumerate(product_ids)]

    def warm_items(self, product_ids: list[str], item_store: VectorStore, chunk: int = 4096) -> None:
        """Sample many items' paths ahead, in large batches: FAISS finds the stand-ins of unseen
        items far faster per item in one big search than in a request-sized one."""
        todo = [pid for pid in dict.fromkeys(product_ids) if pid not in self._item_cache and item_store.has(pid)]
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            self.item_paths_many(part, item_store.vectors_of(part), item_store)

    def _item_entry(self, product_id: str, anchors: dict[str, float]) -> dict[str, Neighbors]:
        first, second = self._two_hop(anchors, self.graph.queries_of, self.graph.items_of, product_id)
        entry = {"I-Q": self._sample(product_id, "I-Q", first), "I-Q-I": self._sample(product_id, "I-Q-I", second)}
        self._item_cache[product_id] = entry
        return entry

    @staticmethod
    def _two_hop(
        anchors: dict[str, float],
        hop: Callable[[str], Neighbors],
        back: Callable[[str], Neighbors],
        exclude: str | None,
    ) -> tuple[dict[str, float], dict[str, float]]:
        """First- and second-order neighbors of a (possibly virtual) node joined to `anchors`."""
        first: dict[str, float] = {}
        for anchor, scale in anchors.items():
            for node, weight in hop(anchor):
                _keep_max(first, node, scale * weight)
        second: dict[str, float] = {}
        for node, weight in first.items():
            for other, other_weight in back(node):
                if other != exclude:
                    _keep_max(second, other, weight * other_weight)
        return first, second

    def query_stand_ins(self, query_vec: np.ndarray, query_store: VectorStore) -> dict[str, float]:
        """The logged queries an unseen query borrows its context from, with their cosine (>= 0)."""
        return self._stand_ins("query", query_vec, query_store)[0]

    def _stand_ins(self, kind: str, vecs: np.ndarray | None, store: VectorStore) -> list[dict[str, float]]:
        """Per row of `vecs`: the nearest graph nodes, with cosine similarity clipped to >= 0."""
        if vecs is None:
            return [{}]
        vecs = np.atleast_2d(np.asarray(vecs, dtype=np.float32))
        if vecs.ndim != 2 or vecs.shape[1] != store.dim:
            raise SamplerError(f"{kind} vectors of shape {vecs.shape} for a store of dimension {store.dim}")
        if self.fallback_k == 0:
            return [{} for _ in range(len(vecs))]
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        found = self._graph_store(kind, store).search(vecs / np.where(norms > 0, norms, 1.0), self.fallback_k)
        # a zero vector (nothing known about the node) gets no stand-ins rather than arbitrary ones
        return [{node: max(sim, 0.0) for node, sim in hits} if norm > 0 else {}
                for hits, norm in zip(found, norms[:, 0])]

    def _graph_store(self, kind: str, store: VectorStore) -> VectorStore:
        held = self._graph_stores.get(kind)
        if held is not None and held[0] is store:
            return held[1]
        nodes = self.graph.queries if kind == "query" else self.graph.items
        restricted = store.subset(nodes)
        if len(restricted) < len(nodes):
            log.warning("%d of %d graph %s nodes have no vector; they cannot stand in for unseen ones",
                        len(nodes) - len(restricted), len(nodes), kind)
        self._graph_stores[kind] = (store, restricted)
        return restricted

    def _sample(self, node: str, path: str, neighbors: dict[str, float]) -> Neighbors:
        ordered = sorted(neighbors.items())  # a fixed order to draw from, whatever the dict order
        if len(ordered) > self.per_path:
            rng = np.random.default_rng(stable_seed(self.seed, node, path))
            weights = np.array([weight for _, weight in ordered], dtype=np.float64)
            total = weights[weights > 0].sum()
            chances = np.where(weights > 0, weights / total, 0.0) if total > 0 else np.zeros_like(weights)
            positive = np.flatnonzero(chances > 0)  # after scaling: a weight that underflows counts as 0
            if len(positive) >= self.per_path:
                picked = rng.choice(positive, size=self.per_path, replace=False,
                                    p=chances[positive] / chances[positive].sum())
            else:
                zero = np.flatnonzero(chances <= 0)
                picked = np.concatenate([positive, rng.choice(zero, size=self.per_path - len(positive), replace=False)])
            ordered = [ordered[index] for index in picked]
        return sorted(ordered, key=lambda pair: (-pair[1], pair[0]))
