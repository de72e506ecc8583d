"""The models of `reranker/` behind the evaluation's Ranker interface (query, candidates, BM25 -> scores),
beside the pipeline that evaluates them (so evaluation/ never imports the reranker).

The small models run on one torch thread, as one serving worker would; the teacher runs on every
core (ONNX Runtime in the pipeline, `OnnxTeacher`), which only flatters it in the speed ratios.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from common.results import Candidate
from indexer.embeddings import embed
from indexer.faiss_store import VectorStore
from indexer.records import Product
from reranker.graph.context import ContextBuilder
from reranker.models.teacher import Teacher, deployed_score
from reranker.models.teacher_onnx import OnnxTeacher
from reranker.serving.online import OnlineReranker


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` torch threads (setting it costs well under a microsecond)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


TUNED_BI_ENCODER = "bi-encoder cosine (teacher-tuned query)"


class BiEncoderRanker:
    """Zero-shot reference: cosine between the query's and the title's bi-encoder vectors. With the
    teacher-distilled query encoder as `encoder` (and the same zero-shot item vectors), the tuned
    bi-encoder alone."""

    name = "bi-encoder cosine (zero-shot)"

    def __init__(self, encoder, item_store: VectorStore, name: str | None = None) -> None:
        self.encoder, self.item_store = encoder, item_store
        if name is not None:
            self.name = name

    def score(self, query: str, candidates: list[Product], bm25: list[float]) -> list[float]:
        with torch_threads(1):
            q = embed(self.encoder, [query], progress=False)[0]
        known = [c for c in candidates if self.item_store.has(c.product_id)]
        vectors = {c.product_id: self.item_store.vector(c.product_id) for c in known}
        missing = [c for c in candidates if c.product_id not in vectors]
        if missing:
            with torch_threads(1):
                vectors.update(zip([c.product_id for c in missing],
                                   embed(self.encoder, [c.title for c in missing], progress=False)))
        return [float(vectors[c.product_id] @ q) for c in candidates]


class TeacherRanker:
    """The deployed teacher: the cross-encoder's logits mixed with BM25 and the bi-encoder cosine at
    the weights dev chose (`deployed_score`)."""

    def __init__(self, teacher: Teacher | OnnxTeacher, bi_encoder: BiEncoderRanker) -> None:
        self.teacher, self.bi_encoder = teacher, bi_encoder
        config = teacher.config
        self.name = f"teacher cross-encoder (BM25 mix {config.bm25_mix}, cosine mix {config.cosine_mix})"

    def score(self, query: str, candidates: list[Product], bm25: list[float]) -> list[float]:
        config = self.teacher.config
        logits = self.teacher.predict([query] * len(candidates), [c.title for c in candidates])
        cosine = np.array(self.bi_encoder.score(query, candidates, bm25)) if config.cosine_mix else None
        return deployed_score(logits, np.asarray(bm25), cosine, config.bm25_mix, config.cosine_mix).tolist()


class StudentRanker:
    """BERM (or its ablation) through the torch path: contexts built per request."""

    def __init__(self, name: str, model: torch.nn.Module, builder: ContextBuilder) -> None:
        self.name, self.model, self.builder = name, model.eval(), builder

    @torch.inference_mode()
    def score(self, query: str, candidates: list[Product], bm25: list[float]) -> list[float]:
        with torch_threads(1):
            batch = self.builder.build(query, None, [c.product_id for c in candidates], bm25)
            return self.model(batch)["score"].tolist()


class OnlineRanker:
    """BERM-O as served: the ONNX artifact, precomputed item contexts, cached query state."""

    def __init__(self, model: OnlineReranker, name: str = "BERM-O (ONNX)") -> None:
        self.name, self.model = name, model

    def score(self, query: str, candidates: list[Product], bm25: list[float]) -> list[float]:
        out = self.model.rerank(query, [Candidate(c.product_id, b, rank, c.title)
                                        for rank, (c, b) in enumerate(zip(candidates, bm25), start=1)])
        by_id = {s.product_id: s.score for s in out.scored}
        return [by_id.get(c.product_id, -np.inf) for c in candidates]
