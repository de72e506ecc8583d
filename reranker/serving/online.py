"""BERM-O at serving time: one artifact folder, loaded once, that reranks one query's candidates.

The artifact is everything the online model needs, so serving is lookups plus small ONNX graphs:

    manifest.json           format, artifact id, model version, split id, data fingerprint, sizes
    pair.onnx               the online half: tokens, vectors, contexts, BM25 -> score and its parts
    query_ctx.onnx          the query-side context (run once per new query; cached)
    item_ctx.onnx           the item-side context (for items sent with text that were not precomputed)
    items.npz               per known item: title token ids, precomputed context, edge weight, flags
    item_neighbors.json     per known item: its most-attended neighbors (for explain)
    text_encoder.onnx       the bi-encoder (+ text_tokenizer.json, text_encoder.json), for new queries and items
    query_encoder/          the teacher-distilled query encoder, same three files (models with use_tuned_query)
    graph.json, query_store.*, item_store.*, vocab.json, berm_o.pt (the torch weights, for tests)

Choices:
- The query's bi-encoder vector and context are cached per query text (LRU): head queries repeat,
  and the bi-encoder is the one costly step of a request. Items embedded from a request's text are
  cached likewise, by id and text (a changed title is embedded again).
- BM25 scores are min-max scaled over the request's scored candidates, as in training.
- A candidate the artifact does not know is embedded from its text on the spot; without text it
  cannot be scored and is reported as unscored (the caller keeps it in BM25 order).
- The bi-encoder runs as ONNX on one thread (`text_encoder.py`): 3 ms for a short query against
  10 ms through sentence-transformers; one short text gains nothing from more threads, and on a
  busy machine a thread pool waiting for free cores cost ~10x.
- Safe to call from many threads at once (`thread_safe = True`): ONNX Runtime sessions run
  concurrently, the per-query cache has its own lock, and the neighbor sampler (plain dicts, pure
  Python, so it gains nothing from parallel callers) runs under another. The machine's cores are
  used by concurrent requests, each ONNX run on `OnnxThreads.intra_threads` threads (1 by default: a
  100-candidate graph is too small to split, and requests already fill the cores).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.artifacts import MANIFEST, ManifestError, ServingManifest
from common.results import Candidate, Explanation, Neighbor, Reranking, ranked
from common.settings import OnnxThreads, RerankSettings
from indexer.faiss_store import StoreError, VectorStore
from indexer.graph import ClickGraph
from reranker.graph.context import ContextBuilder, minmax
from reranker.graph.neighbors import ITEM_PATHS, QUERY_PATHS, NeighborSampler
from reranker.serving import ArtifactError, text_encoder
from reranker.serving.onnx_runner import OnnxBermO, OnnxContext
from reranker.text import Vocab

log = logging.getLogger(__name__)

EXPLAIN_PER_PATH = 3
TUNED_FOLDER = "query_encoder"  # the tuned query encoder's ONNX files, inside the artifact
REQUIRED = (MANIFEST, "pair.onnx", "items.npz", "item_neighbors.json", "graph.json", "vocab.json",
            "query_store.faiss", "query_store_ids.json", "item_store.faiss", "item_store_ids.json", *text_encoder.FILES)


def top_neighbors(paths: tuple[str, ...], ids: list[list[str]], attention: np.ndarray) -> list[Neighbor]:
    """Each path's most-attended neighbors (EXPLAIN_PER_PATH of them), best first; attention [P, K]."""
    out = []
    for p, name in enumerate(paths):
        best = sorted(zip(ids[p], attention[p, : len(ids[p])].tolist()), key=lambda pair: -pair[1])
        out.extend(Neighbor(name, node, round(float(a), 4)) for node, a in best[:EXPLAIN_PER_PATH])
    return out


# ----------------------------------------------------------------------------------------------
# serving


class Lru:
    """A bounded map, the least recently used entry out first (size 0: keeps nothing). Its lock is
    held for dict operations only, so a hit never waits for another request's miss."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        if not self.size:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def pop(self, key) -> None:
        with self._lock:
            self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class _QueryState:
    vec: np.ndarray  # [D]
    tokens: np.ndarray  # [Lq]
    ctx: np.ndarray  # [2, D]
    ctx_w: np.ndarray  # [2]
    has: np.ndarray  # [2]
    neighbors: list[Neighbor]  # the query's most-attended ones (explain)
    tvec: np.ndarray | None = None  # [D], the tuned query encoder's vector (models that read it)


class OnlineReranker:
    name = "BERM-O"
    thread_safe = True  # the server runs requests on it concurrently (see the module's notes)

    def __init__(self, folder: Path, query_cache_size: int, threads: OnnxThreads, item_cache_size: int = 0) -> None:
        self.folder = Path(folder)
        self.threads = threads
        self.manifest = self._read_manifest()
        m = self.manifest
        try:
            self.pair = OnnxBermO(self.folder / "pair.onnx", threads)
            self.use_k_order = bool(m.use_k_order)
            self.query_ctx = OnnxContext(self.folder / "query_ctx.onnx", threads) if self.use_k_order else None
            self.item_ctx = OnnxContext(self.folder / "item_ctx.onnx", threads) if self.use_k_order else None
            self.vocab = Vocab.load(self.folder / "vocab.json")
            self.graph = ClickGraph.load(self.folder / "graph.json")
            self.query_store = VectorStore.load(self.folder, "query_store")
            self.item_store = VectorStore.load(self.folder, "item_store")
            items = np.load(self.folder / "items.npz")
            self.item_row = {str(pid): row for row, pid in enumerate(items["ids"].tolist())}
            self.item_tokens = items["tokens"].astype(np.int64)  # left-aligned, 0-padded
            self.item_lengths = np.count_nonzero(self.item_tokens, axis=1)
            self.item_vec_row = self.item_store_rows(items["ids"].tolist())
            self.item_ctx_table = items["ctx"].astype(np.float32)
            self.item_ctx_w, self.item_has = items["ctx_w"], items["has"]
            self.item_neighbors = json.loads((self.folder / "item_neighbors.json").read_text())  # id -> [[path, node, attention]]
            self.query_ids = json.loads((self.folder / "query_ids.json").read_text())
            self.text_encoder = text_encoder.TextEncoder(self.folder, threads)
            self.tuned_encoder = (text_encoder.TextEncoder(self.folder / TUNED_FOLDER, threads)
                                  if m.use_tuned_query else None)
        except ArtifactError:
            raise
        except (OSError, ValueError, KeyError, StoreError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ArtifactError(f"{self.folder}: corrupt artifact ({first})") from None
        except Exception as err:  # onnxruntime raises its own exception types for a bad graph
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ArtifactError(f"{self.folder}: corrupt artifact ({type(err).__name__}: {first})") from None
        self.per_path = int(m.per_path)
        self.max_query_tokens, self.max_title_tokens = int(m.max_query_tokens), int(m.max_title_tokens)
        self.version = m.version
        # the BM25 depth the model's labels reached (None: not recorded); more candidates still get
        # scored, but past it the model meets ranks it never learned from (the service warns)
        self.trained_depth = int(m.trained_depth) if m.trained_depth else None
        self.sampler = NeighborSampler(self.graph, per_path=self.per_path, seed=int(m.seed))
        # no bi-encoder here: every vector the builder lacks comes from text_encoder below
        self.builder = ContextBuilder(self.sampler, self.vocab, self.query_store, self.item_store, {}, None,
                                      per_path=self.per_path)
        self._queries = Lru(query_cache_size)  # query text -> _QueryState
        # (id, text) -> (tokens, vec, ctx, ctx_w, has, neighbors) of an item embedded from its text
        self._items = Lru(item_cache_size)
        self._graph_lock = threading.Lock()  # the sampler's and builder's caches: pure Python work

    def _read_manifest(self) -> ServingManifest:
        if not self.folder.is_dir():
            raise ArtifactError(f"{self.folder}: no model artifact there (run `shopsearch pipeline` first)")
        missing = [name for name in REQUIRED if not (self.folder / name).is_file()]
        if missing:
            raise ArtifactError(f"{self.folder}: incomplete artifact, missing {', '.join(missing)}")
        try:
            manifest = ServingManifest.read(self.folder)
        except ManifestError as err:
            raise ArtifactError(str(err)) from None
        if manifest.use_tuned_query:
            missing = [f"{TUNED_FOLDER}/{name}" for name in text_encoder.FILES
                       if not (self.folder / TUNED_FOLDER / name).is_file()]
            if missing:
                raise ArtifactError(f"{self.folder}: incomplete artifact, missing {', '.join(missing)}")
        return manifest

    def item_store_rows(self, ids: list[str]) -> np.ndarray:
        """Each known item's row in the item store, so a request reads all its vectors in one take."""
        missing = [pid for pid in ids if not self.item_store.has(pid)]
        if missing:
            raise ArtifactError(f"{self.folder}: {len(missing)} items have no vector (first: {missing[0]!r})")
        return np.fromiter((self.item_store._rows[pid] for pid in ids), dtype=np.int64, count=len(ids))

    @classmethod
    def load(cls, folder: Path, threads: OnnxThreads | None = None,
             query_cache_size: int = RerankSettings.model_fields["query_cache_size"].default,
             item_cache_size: int = RerankSettings.model_fields["item_cache_size"].default) -> "OnlineReranker":
        """The artifact in `folder`; thread counts and cache sizes default to the settings' (rerank group)."""
        return cls(folder, query_cache_size, threads or OnnxThreads(), item_cache_size)

    def warm_up(self) -> None:
        ids = list(self.item_row)[:100]
        self.rerank("warm up", [Candidate(pid, float(100 - i), i + 1) for i, pid in enumerate(ids)], explain=True)
        self._queries.pop("warm up")

    def knows(self, product_id: str) -> bool:
        return product_id in self.item_row

    @property
    def query_cache_size(self) -> int:
        return self._queries.size

    @query_cache_size.setter
    def query_cache_size(self, size: int) -> None:
        self._queries.size = size

    @property
    def cached_items(self) -> int:
        """Items embedded from a request's text and kept."""
        return len(self._items)

    # -- parts ------------------------------------------------------------------------------------

    def _query(self, text: str) -> _QueryState:
        state = self._queries.get(text)
        if state is not None:
            return state
        # A miss is computed outside the cache lock (two threads missing the same query both compute
        # it, with the same result: sampling is seeded per node), so a hit never waits for a miss.
        query_id = self.query_ids.get(text)
        if query_id is not None and self.query_store.has(query_id):
            vec = self.query_store.vector(query_id).astype(np.float32)
        else:
            vec = self.text_encoder.encode([text])[0]
        tokens = np.asarray(self.vocab.encode(text, self.max_query_tokens) or [0], dtype=np.int64)
        d = vec.shape[0]
        ctx, ctx_w, has, neighbors = np.zeros((2, d), np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32), []
        if self.query_ctx is not None:
            with self._graph_lock:
                paths = self.sampler.query_paths(query_id, vec, self.query_store)
                nb_vec, nb_w, nb_mask, ids = self.builder.fill_with_ids(paths, QUERY_PATHS)
                if query_id is None:
                    self.sampler._query_cache.clear()  # ad-hoc queries would grow the sampler's cache forever
            c, w, h, attention = self.query_ctx(vec[None], nb_vec[None], nb_w[None], nb_mask[None])
            ctx, ctx_w, has = c[0], w[0], h[0]
            neighbors = top_neighbors(QUERY_PATHS, ids, attention[0])
        tvec = self.tuned_encoder.encode([text])[0] if self.tuned_encoder is not None else None
        state = _QueryState(vec, tokens, ctx, ctx_w, has, neighbors, tvec)
        self._queries.put(text, state)
        return state

    def _new_items(self, ids: list[str], texts: list[str]):
        """Tokens, vectors and contexts for items the artifact does not know, from their text, as
        columns; each item's row is computed once and kept (LRU, `item_cache_size`)."""
        keys = list(zip(ids, texts))
        found = {key: row for key in dict.fromkeys(keys) if (row := self._items.get(key)) is not None}
        todo = [key for key in dict.fromkeys(keys) if key not in found]
        if todo:
            fresh = self._embed_items([pid for pid, _ in todo], [text for _, text in todo])
            for i, key in enumerate(todo):
                found[key] = tuple(column[i] for column in fresh)
                self._items.put(key, found[key])
        tokens, vecs, ctx, ctx_w, has, neighbors = zip(*(found[key] for key in keys))
        return list(tokens), np.stack(vecs), np.stack(ctx), np.stack(ctx_w), np.stack(has), list(neighbors)

    def _embed_items(self, ids: list[str], texts: list[str]):
        """Tokens, vectors and contexts for items the artifact does not know, from their text."""
        vecs = self.text_encoder.encode(texts)
        tokens = [self.vocab.encode(t, self.max_title_tokens) for t in texts]
        n, d = len(ids), vecs.shape[1]
        ctx, ctx_w, has, neighbors = np.zeros((n, 2, d), np.float32), np.zeros((n, 2), np.float32), \
            np.zeros((n, 2), np.float32), [[] for _ in ids]
        if self.item_ctx is not None:
            with self._graph_lock:
                filled = [self.builder.fill_with_ids(paths, ITEM_PATHS)
                          for paths in self.sampler.item_paths_many(ids, vecs, self.item_store)]
                for pid in ids:
                    self.sampler._item_cache.pop(pid, None)
            ctx, ctx_w, has, attention = self.item_ctx(vecs, *(np.stack([f[i] for f in filled]) for i in range(3)))
            neighbors = [top_neighbors(ITEM_PATHS, f[3], a) for f, a in zip(filled, attention)]
        return tokens, vecs, ctx, ctx_w, has, neighbors

    # -- the request ------------------------------------------------------------------------------

    def rerank(self, query: str, candidates: list[Candidate], explain: bool = False) -> Reranking:
        began = time.perf_counter()
        q = self._query(query)
        after_query = time.perf_counter()

        known, known_rows, fresh, unscored = [], [], [], []
        for c in candidates:  # one pass: a request's Python work is what limits concurrent requests (GIL)
            row = self.item_row.get(c.product_id)
            if row is not None:
                known.append(c)
                known_rows.append(row)
            elif c.text:
                fresh.append(c)
            else:
                unscored.append(c.product_id)
        order = known + fresh
        n = len(order)
        if n == 0:
            return Reranking([], unscored, {"query_context": 1000 * (after_query - began), "item_lookup": 0.0,
                                            "onnx": 0.0})
        rows = np.asarray(known_rows, dtype=np.int64)
        # The request's own title width, not the maximum: the kernel pooling's work grows with
        # Lq x Li, and padding to 12 x 32 tripled the ONNX time (3.4 vs 1.2 ms per 100 candidates).
        width = max(1, int(self.item_lengths[rows].max(initial=0)))
        i_tokens = self.item_tokens[rows, :width]
        i_vec = self.item_store.vectors[self.item_vec_row[rows]]
        ctx, ctx_w, has = self.item_ctx_table[rows], self.item_ctx_w[rows], self.item_has[rows]
        neighbors = [[Neighbor(*row) for row in self.item_neighbors.get(c.product_id, [])] for c in known] \
            if explain else []
        if fresh:
            f_tokens, f_vec, f_ctx, f_w, f_has, f_nb = self._new_items([c.product_id for c in fresh],
                                                                        [c.text for c in fresh])
            width = max(width, *(len(t) for t in f_tokens))
            f_tok = np.zeros((len(fresh), width), dtype=np.int64)
            for row, t in enumerate(f_tokens):
                f_tok[row, : len(t)] = t
            i_tokens = np.concatenate([np.pad(i_tokens, ((0, 0), (0, width - i_tokens.shape[1]))), f_tok])
            i_vec = np.concatenate([i_vec, f_vec])
            ctx, ctx_w, has = np.concatenate([ctx, f_ctx]), np.concatenate([ctx_w, f_w]), np.concatenate([has, f_has])
            neighbors += f_nb
        bm25 = minmax(np.array([c.bm25 for c in order], dtype=np.float64)).astype(np.float32)
        after_items = time.perf_counter()

        # the query's inputs go once (one row), not once per candidate: the graph broadcasts them
        score, zero, k_order = self.pair(q.tokens[None], i_tokens, q.vec[None], i_vec, q.ctx[None],
                                         q.ctx_w[None], q.has[None], ctx, ctx_w, has, bm25,
                                         None if q.tvec is None else q.tvec[None])
        done = time.perf_counter()

        scores = {}
        for row, (c, s, z, k) in enumerate(zip(order, score.tolist(), zero.tolist(), k_order.tolist())):
            nbs = tuple(q.neighbors + neighbors[row]) if explain else ()
            scores[c.product_id] = (s, Explanation(z, k, s - z - k, nbs))
        timings = {"query_context": 1000 * (after_query - began), "item_lookup": 1000 * (after_items - after_query),
                   "onnx": 1000 * (done - after_items)}
        return Reranking(ranked(candidates, scores), unscored, timings)
