"""Turns a query and its BM25 candidates into BERM's input tensors.

Per candidate row: the query's and the title's token ids (0-order word interaction), the
bi-encoder vectors of query and item, and the sampled metapath neighbors (k-order relevance) as
vectors, edge weights and a mask, plus the min-max-normalised BM25 score. The query-side paths are
the same for every row, so they are sampled and looked up once per call.

Vectors come from the FAISS stores where the node is there; a query or product that is not (an
ad-hoc query at serving time, a product added after the stores were built) is embedded with the
bi-encoder on the spot and cached. A graph neighbor with no vector anywhere is left out, so the
mask stays honest.

With a `tuned_encoder` (the teacher-distilled query encoder, reranker/training/query_encoder.py)
each row also gets `t_vec`, the query's vector from that encoder, cached per query text.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import torch

from common.errors import ShopsearchError
from indexer.embeddings import embed
from indexer.faiss_store import VectorStore
from indexer.records import Product
from reranker.graph.neighbors import ITEM_PATHS, PATHS, QUERY_PATHS, NeighborSampler
from reranker.normalize import minmax  # the BM25 contract, one definition
from reranker.text import MAX_QUERY_TOKENS, MAX_TITLE_TOKENS

log = logging.getLogger(__name__)

Neighbors = list[tuple[str, float]]


class ContextError(ShopsearchError):
    pass


class TokenVocab(Protocol):
    def encode(self, text: str, max_len: int) -> list[int]: ...  # 0 = padding, 1 = unknown


class ContextBuilder:
    def __init__(
        self,
        sampler: NeighborSampler,
        vocab: TokenVocab,
        query_store: VectorStore,
        item_store: VectorStore,
        catalog_products: dict[str, Product],
        bi_encoder=None,
        per_path: int = 5,
        max_query_tokens: int = MAX_QUERY_TOKENS,
        max_title_tokens: int = MAX_TITLE_TOKENS,
        tuned_encoder=None,
    ) -> None:
        self.sampler = sampler
        self.vocab = vocab
        self.query_store = query_store
        self.item_store = item_store
        self.products = catalog_products
        self.bi_encoder = bi_encoder
        self.per_path = per_path
        self.max_query_tokens = max_query_tokens
        self.max_title_tokens = max_title_tokens
        self.dim = item_store.dim
        self._text_vectors: dict[str, np.ndarray] = {}  # query text -> vector (queries not in the store)
        self._title_vectors: dict[str, np.ndarray] = {}  # product id -> vector (products not in the store)
        self._title_tokens: dict[str, list[int]] = {}
        self._missing_queries: set[str] = set()
        self.tuned_encoder = tuned_encoder
        self._tuned_vectors: dict[str, np.ndarray] = {}  # query text -> tuned encoder's vector

    # --- vectors -------------------------------------------------------------------------------

    def _encoder(self, what: str):
        if self.bi_encoder is None:
            raise ContextError(f"{what} has no stored vector and the builder has no bi-encoder")
        return self.bi_encoder

    def query_vector(self, query_text: str, query_id: str | None) -> np.ndarray:
        if query_id is not None and self.query_store.has(query_id):
            return self.query_store.vector(query_id)
        if query_text not in self._text_vectors:
            model = self._encoder(f"query {query_id or query_text!r}")
            self._text_vectors[query_text] = embed(model, [query_text], progress=False)[0]
        return self._text_vectors[query_text]

    def remember_query_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        """Vectors of query texts that are not in the store, embedded beforehand in one batch
        (training's pseudo-queries), so no group waits for the bi-encoder."""
        self._text_vectors.update(vectors)

    def remember_tuned_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        """The tuned query encoder's vectors of query texts, embedded beforehand in one batch."""
        self._tuned_vectors.update(vectors)

    def tuned_vector(self, query_text: str) -> np.ndarray:
        if query_text not in self._tuned_vectors:
            if self.tuned_encoder is None:
                raise ContextError(f"query {query_text!r} has no tuned vector and the builder has no tuned encoder")
            self._tuned_vectors[query_text] = embed(self.tuned_encoder, [query_text], progress=False)[0]
        return self._tuned_vectors[query_text]

    def _title(self, product_id: str) -> str:
        try:
            return self.products[product_id].title
        except KeyError:
            raise ContextError(f"product {product_id!r} is not in the catalog") from None

    def item_vectors(self, product_ids: list[str]) -> np.ndarray:
        """(len, D) item vectors: from the store, else embedded from the title (in one batch)."""
        todo = [pid for pid in dict.fromkeys(product_ids)
                if not self.item_store.has(pid) and pid not in self._title_vectors]
        if todo:
            model = self._encoder(f"product {todo[0]!r}")
            titles = [self._title(pid) for pid in todo]
            for pid, vec in zip(todo, embed(model, titles, progress=False)):
                self._title_vectors[pid] = vec
        out = np.zeros((len(product_ids), self.dim), dtype=np.float32)
        for row, pid in enumerate(product_ids):
            out[row] = self.item_store.vector(pid) if self.item_store.has(pid) else self._title_vectors[pid]
        return out

    def _neighbor_vector(self, path: str, node: str) -> np.ndarray | None:
        """A neighbor's vector: queries from the query store, items from the item store / title."""
        if path in ("Q-I-Q", "I-Q"):
            if self.query_store.has(node):
                return self.query_store.vector(node)
            if node not in self._missing_queries:
                self._missing_queries.add(node)
                log.warning("graph query %r has no vector in the query store; left out as a neighbor", node)
            return None
        if self.item_store.has(node):
            return self.item_store.vector(node)
        if node in self.products and self.bi_encoder is not None:
            return self.item_vectors([node])[0]
        return None

    def fill(self, paths: dict[str, Neighbors], names: tuple[str, ...]):
        """Vectors [len(names), K, D], weights and mask for some paths (missing vectors skipped)."""
        return self.fill_with_ids(paths, names)[:3]

    def fill_with_ids(self, paths: dict[str, Neighbors], names: tuple[str, ...]):
        """As `fill`, plus the node id in each filled slot (per path), to explain attention."""
        vec = np.zeros((len(names), self.per_path, self.dim), dtype=np.float32)
        weight = np.zeros((len(names), self.per_path), dtype=np.float32)
        mask = np.zeros((len(names), self.per_path), dtype=bool)
        ids: list[list[str]] = []
        for p, name in enumerate(names):
            slot = 0
            ids.append([])
            for node, w in paths.get(name, []):
                if slot >= self.per_path:
                    break
                found = self._neighbor_vector(name, node)
                if found is None:
                    continue
                vec[p, slot], weight[p, slot], mask[p, slot] = found, w, True
                ids[-1].append(node)
                slot += 1
        return vec, weight, mask, ids

    # --- tokens --------------------------------------------------------------------------------

    def _encode(self, text: str, max_len: int) -> list[int]:
        return list(self.vocab.encode(text, max_len))[:max_len]

    def _item_tokens(self, product_id: str) -> list[int]:
        if product_id not in self._title_tokens:
            self._title_tokens[product_id] = self._encode(self._title(product_id), self.max_title_tokens)
        return self._title_tokens[product_id]

    # --- public --------------------------------------------------------------------------------

    def neighbor_ids(
        self, query_id: str | None, query_vec: np.ndarray, product_id: str, item_vec: np.ndarray
    ) -> dict[str, Neighbors]:
        """The sampled neighbors behind one row, by path (for explaining a score)."""
        found = {**self.sampler.query_paths(query_id, query_vec, self.query_store),
                 **self.sampler.item_paths(product_id, item_vec, self.item_store)}
        return {path: found.get(path, [])[: self.per_path] for path in PATHS}

    def build(
        self, query_text: str, query_id: str | None, product_ids: list[str], bm25: list[float]
    ) -> dict[str, torch.Tensor]:
        n = len(product_ids)
        if len(bm25) != n:
            raise ContextError(f"{len(bm25)} BM25 scores for {n} products")
        k, d = self.per_path, self.dim

        query_tokens = self._encode(query_text, self.max_query_tokens) or [0]
        q_tokens = np.tile(np.asarray(query_tokens, dtype=np.int64), (n, 1))
        title_tokens = [self._item_tokens(pid) for pid in product_ids]
        width = max([1, *(len(tokens) for tokens in title_tokens)])
        i_tokens = np.zeros((n, width), dtype=np.int64)
        for row, tokens in enumerate(title_tokens):
            i_tokens[row, : len(tokens)] = tokens

        q_vec = np.asarray(self.query_vector(query_text, query_id), dtype=np.float32)
        i_vec = self.item_vectors(product_ids)

        nb_vec = np.zeros((n, len(PATHS), k, d), dtype=np.float32)
        nb_w = np.zeros((n, len(PATHS), k), dtype=np.float32)
        nb_mask = np.zeros((n, len(PATHS), k), dtype=bool)
        q_side = self.fill(self.sampler.query_paths(query_id, q_vec, self.query_store), QUERY_PATHS)
        nb_vec[:, :2], nb_w[:, :2], nb_mask[:, :2] = q_side
        item_paths = self.sampler.item_paths_many(product_ids, i_vec, self.item_store)
        for row, paths in enumerate(item_paths):
            i_side = self.fill(paths, ITEM_PATHS)
            nb_vec[row, 2:], nb_w[row, 2:], nb_mask[row, 2:] = i_side

        batch = {
            "q_tokens": torch.from_numpy(q_tokens),
            "i_tokens": torch.from_numpy(i_tokens),
            "q_vec": torch.from_numpy(np.tile(q_vec, (n, 1)).astype(np.float32)),
            "i_vec": torch.from_numpy(i_vec),
            "nb_vec": torch.from_numpy(nb_vec),
            "nb_w": torch.from_numpy(nb_w),
            "nb_mask": torch.from_numpy(nb_mask),
            "bm25": torch.from_numpy(minmax(np.asarray(bm25, dtype=np.float64)).astype(np.float32)),
        }
        if self.tuned_encoder is not None:
            t_vec = np.asarray(self.tuned_vector(query_text), dtype=np.float32)
            batch["t_vec"] = torch.from_numpy(np.tile(t_vec, (n, 1)))
        return batch
