"""A FAISS exact inner-product index over normalised vectors, with the string ids of its rows.

Exact search (`IndexFlatIP`) is enough at catalog scale (tens of thousands of rows) and keeps
results reproducible. The matrix is also kept in memory (`.vectors`) because the reranker looks up
vectors by id far more often than it searches.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import faiss
import numpy as np

from common.errors import ShopsearchError

log = logging.getLogger(__name__)


class StoreError(ShopsearchError):
    """A vector store that cannot be built or read (bad shapes, ids out of step with the index)."""


class StoreMissingError(StoreError, FileNotFoundError):
    """A store file that is not there (also a FileNotFoundError, so either can be caught)."""


def _normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit rows (zero rows stay zero), so inner product is cosine similarity whatever the caller gave."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class VectorStore:
    def __init__(self, ids: list[str], vectors: np.ndarray, index: faiss.Index) -> None:
        self.ids = ids
        self.vectors = vectors
        self.index = index
        self._rows = {item: row for row, item in enumerate(ids)}

    @classmethod
    def build(cls, ids: list[str], vectors: np.ndarray) -> "VectorStore":
        ids = [str(item) for item in ids]
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise StoreError(f"vectors must be a 2-D matrix, got shape {vectors.shape}")
        if len(ids) != vectors.shape[0]:
            raise StoreError(f"{len(ids)} ids for {vectors.shape[0]} vectors")
        if len(set(ids)) != len(ids):
            raise StoreError(f"duplicate ids in store ({len(ids) - len(set(ids))} repeated)")
        vectors = np.ascontiguousarray(_normalise(vectors))
        index = faiss.IndexFlatIP(vectors.shape[1])
        if len(ids):
            index.add(vectors)
        return cls(ids, vectors, index)

    def subset(self, ids: list[str]) -> "VectorStore":
        """A new store over some of these rows (ids not in this store are skipped)."""
        kept = [item for item in ids if item in self._rows]
        rows = np.fromiter((self._rows[item] for item in kept), dtype=np.int64, count=len(kept))
        return VectorStore.build(kept, self.vectors[rows].reshape(len(kept), self.dim))

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.ids)

    def has(self, item: str) -> bool:
        return item in self._rows

    def vector(self, item: str) -> np.ndarray:
        try:
            return self.vectors[self._rows[item]]
        except KeyError:
            raise KeyError(f"{item!r} is not in the vector store") from None

    def vectors_of(self, ids: list[str]) -> np.ndarray:
        """Rows for several ids at once, shape (len(ids), dim); every id must be present."""
        try:
            rows = [self._rows[item] for item in ids]
        except KeyError as err:
            raise KeyError(f"{err.args[0]!r} is not in the vector store") from None
        return self.vectors[np.asarray(rows, dtype=np.int64)].reshape(len(rows), self.dim)

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The k most similar rows per query vector, best first, as (id, inner product)."""
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or (queries.shape[0] and queries.shape[1] != self.dim):
            raise StoreError(f"query vectors of shape {queries.shape} for a store of dimension {self.dim}")
        k = min(int(k), len(self))
        if k <= 0 or queries.shape[0] == 0:
            return [[] for _ in range(queries.shape[0])]
        scores, rows = self.index.search(np.ascontiguousarray(queries), k)
        return [
            [(self.ids[row], float(score)) for row, score in zip(row_list, score_list) if row >= 0]
            for row_list, score_list in zip(rows, scores)
        ]

    @staticmethod
    def paths(folder: Path, name: str) -> tuple[Path, Path]:
        folder = Path(folder)
        return folder / f"{name}.faiss", folder / f"{name}_ids.json"

    def save(self, folder: Path, name: str) -> None:
        index_path, ids_path = self.paths(folder, name)
        index_path.parent.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(index_path))
        ids_path.write_text(json.dumps({"dim": self.dim, "count": len(self), "ids": self.ids}))
        log.info("saved %d vectors to %s", len(self), index_path)

    @classmethod
    def load(cls, folder: Path, name: str) -> "VectorStore":
        index_path, ids_path = cls.paths(folder, name)
        for path in (index_path, ids_path):
            if not path.is_file():
                raise StoreMissingError(f"{path}: no vector store file there; build the faiss stage first")
        try:
            meta = json.loads(ids_path.read_text())
            ids = [str(item) for item in meta["ids"]]
        except (ValueError, KeyError, TypeError) as err:
            raise StoreError(f"{ids_path}: not a vector store id file ({err})") from None
        try:
            index = faiss.read_index(str(index_path))
        except RuntimeError as err:
            raise StoreError(f"{index_path}: not a FAISS index ({str(err).splitlines()[0]})") from None
        if index.ntotal != len(ids):
            raise StoreError(f"{index_path}: {index.ntotal} vectors but {len(ids)} ids in {ids_path.name}")
        vectors = index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)
        return cls(ids, np.ascontiguousarray(vectors, dtype=np.float32), index)
