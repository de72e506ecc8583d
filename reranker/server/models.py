"""The one small model protocol the server runs, and the three models behind it.

- BERM-O (`load_berm_o`): the served model, an artifact folder run by reranker.serving.online.
- `TeacherModel`: the teacher cross-encoder served the same way (the latency to beat).
- `Bm25Order`: does nothing; its score is the BM25 score, so the server's ordering reproduces the
  BM25 list (the floor: what the gRPC server costs with no model at all).

The server code is the same for all three; only what `rerank` does differs. A model answers with
common/results.py's `Reranking`. Importing this module loads no model code (the artifact's is
imported when one is loaded).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from common.results import Candidate, Explanation, Reranking, ranked
from common.settings import OnnxThreads, RerankSettings
from reranker.serving import ArtifactError

__all__ = ["ArtifactError", "ServingModel", "Bm25Order", "TeacherModel", "Serialized", "guard", "load_berm_o",
           "berm_o_loader"]


QUEUE = "queue"  # the timings key of time spent waiting for a model that runs one call at a time


@runtime_checkable
class ServingModel(Protocol):
    name: str
    version: str

    def warm_up(self) -> None: ...

    def rerank(self, query: str, candidates: list[Candidate], explain: bool = False) -> Reranking:
        """One score per scorable candidate, in input order; ids it cannot score go to `unscored`."""
        ...


class Serialized:
    """Runs a model's calls one at a time, for models not safe (or not faster) across threads.

    The teacher is one (torch already runs one batch on every core). A model that declares
    `thread_safe = True` is run unwrapped, concurrently: BERM-O (OnlineReranker) and the floor.
    """

    def __init__(self, model: ServingModel) -> None:
        self.model = model
        self.name, self.version = model.name, model.version
        self._lock = threading.Lock()

    @property
    def trained_depth(self) -> int | None:
        return getattr(self.model, "trained_depth", None)

    def warm_up(self) -> None:
        with self._lock:
            self.model.warm_up()

    def rerank(self, query: str, candidates: list[Candidate], explain: bool = False) -> Reranking:
        began = time.perf_counter()
        with self._lock:
            waited_ms = 1000 * (time.perf_counter() - began)
            output = self.model.rerank(query, candidates, explain)
        # the wait is queueing, not model work: the servicer reports it as its own stage
        return replace(output, timings_ms={QUEUE: waited_ms, **output.timings_ms})


def guard(model: ServingModel) -> ServingModel:
    """The model itself when it declares `thread_safe = True`, else wrapped in Serialized."""
    if getattr(model, "thread_safe", False) or isinstance(model, Serialized):
        return model
    return Serialized(model)


def load_berm_o(folder: Path, threads: OnnxThreads | None = None,
                query_cache_size: int = RerankSettings.model_fields["query_cache_size"].default,
                item_cache_size: int = RerankSettings.model_fields["item_cache_size"].default) -> ServingModel:
    """The BERM-O artifact in `folder`; raises ArtifactError (one line) when missing or corrupt."""
    from reranker.serving.online import OnlineReranker  # torch, faiss and onnxruntime: only when serving one

    return OnlineReranker.load(Path(folder), threads, query_cache_size, item_cache_size)


def berm_o_loader(config: RerankSettings):
    """A loader (path -> model) with the rerank group's ONNX threads and query cache, for the server's slot."""
    return lambda folder: load_berm_o(folder, config.onnx, config.query_cache_size, config.item_cache_size)


class Bm25Order:
    """The do-nothing model: score = BM25 score, all of it in `bm25_part`."""

    name = "BM25 order"
    version = "bm25-order-1"
    thread_safe = True

    def warm_up(self) -> None:
        pass

    def rerank(self, query: str, candidates: list[Candidate], explain: bool = False) -> Reranking:
        began = time.perf_counter()
        scores = {c.product_id: (float(c.bm25), Explanation(0.0, 0.0, float(c.bm25))) for c in candidates}
        return Reranking(ranked(candidates, scores), [], {"score": 1000 * (time.perf_counter() - began)})


class TeacherModel:
    """The cross-encoder teacher behind the serving protocol.

    Titles come from the candidate's text, else from `titles` (the catalog); a candidate with
    neither is unscored. The teacher's score has no parts: it is all `zero_order` (query-title
    interaction), with k_order and bm25_part 0, so the explain invariant still holds.
    """

    thread_safe = False  # torch runs one batch on all cores; parallel batches only contend

    def __init__(self, teacher, titles: dict[str, str]) -> None:
        self.teacher = teacher
        self.titles = titles
        self.name = "teacher cross-encoder"
        self.version = teacher.config.model_version

    def warm_up(self) -> None:
        some = list(self.titles.values())[:100] or ["warm up"]
        self.teacher.predict(["warm up"] * len(some), some)

    def rerank(self, query: str, candidates: list[Candidate], explain: bool = False) -> Reranking:
        began = time.perf_counter()
        scorable = [(c, c.text or self.titles.get(c.product_id)) for c in candidates]
        kept = [(c, title) for c, title in scorable if title]
        logits = self.teacher.predict([query] * len(kept), [title for _, title in kept])
        scores = {c.product_id: (float(s), Explanation(float(s), 0.0, 0.0)) for (c, _), s in zip(kept, logits)}
        unscored = [c.product_id for c, title in scorable if not title]
        return Reranking(ranked(candidates, scores), unscored, {"cross-encoder": 1000 * (time.perf_counter() - began)})
