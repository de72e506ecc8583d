"""What every stage of a pipeline run reads: the run folder's files by name, the query samples, texts
and titles, and what is loaded once per run (the bi-encoder, the FAISS stores, the tuned query
encoder, the product vectors already computed).

The stages themselves are in teacher_stages.py, student_stages.py and checks.py; the runner that
orders them is pipeline.py.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from elasticsearch import Elasticsearch

from common.artifacts import RunLayout, model_manifest
from indexer.embeddings import embed, load_bi_encoder
from indexer.faiss_store import StoreError, VectorStore
from indexer.graph import ClickGraph
from indexer.records import Catalog
from indexer.splits import QuerySplit
from reranker.graph.context import ContextBuilder
from reranker.graph.neighbors import NeighborSampler
from reranker.models.teacher_onnx import OnnxTeacher
from reranker.text import Vocab
from reranker.training.errors import PipelineError
from reranker.training.profiles import Profile
from reranker.training.query_encoder import load_query_encoder

log = logging.getLogger(__name__)


def sample(ids: list[str], n: int | None, seed: int) -> list[str]:
    """A seeded sample of `n` ids, sorted (all of them when `n` is None or more than there are)."""
    ids = sorted(ids)
    return ids if n is None or n >= len(ids) else sorted(random.Random(seed).sample(ids, n))


def read_queries(path: Path) -> dict[str, str]:
    """A query file the labels stage wrote (id -> text), or {} before it ran."""
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass
class RunContext:
    """One run folder and what its stages read: the query samples (train, dev, test and the
    teacher's), texts and titles, the files by name (`layout`), and loads made once per run."""

    catalog: Catalog
    split: QuerySplit
    es: Elasticsearch
    alias: str
    profile: Profile
    root: Path
    name: str | None = None  # the run folder's name after the dataset (default: the profile's)

    def __post_init__(self) -> None:
        base = RunLayout(Path(self.root) / f"{self.catalog.name}-{self.profile.name}")
        self.root = Path(self.root) / f"{self.catalog.name}-{self.name or self.profile.name}"
        self.layout = RunLayout(self.root)
        if self.root != base.root and not self.root.exists() and base.root.is_dir():
            # a variant run starts as a copy of its profile's run: stages whose settings it shares
            # (the teacher, usually) have the same digest and are not redone
            shutil.copytree(base.root, self.root, ignore=shutil.ignore_patterns(
                base.teacher_checkpoint.name, base.eval.name, base.dev_check.name))
        if self.profile.teacher_from and not (Path(self.profile.teacher_from) / "teacher_config.json").is_file():
            raise PipelineError(f"--teacher-from {self.profile.teacher_from}: no trained teacher there "
                                f"(expected teacher_config.json, e.g. artifacts/pipeline/home-depot-full/teacher)")
        self.root.mkdir(parents=True, exist_ok=True)
        graded = self.catalog.judgments_by_query()
        seed = self.profile.seed
        self.train_q = sample([q for q in self.split.train if q in graded], self.profile.train_queries, seed)
        self.dev_q = sample([q for q in self.split.dev if q in graded], self.profile.dev_queries, seed)
        self.test_q = sample([q for q in self.split.test if q in graded], self.profile.test_queries, seed)
        # The teacher may learn from more train queries than the students see (quick: the demo's
        # catalog has thousands); never from fewer, and always from the students' own.
        wanted = self.profile.teacher.max_queries
        extra = (sample([q for q in self.split.train if q in graded], wanted, seed)
                 if wanted is not None and wanted > len(self.train_q) else [])
        self.teacher_q = sorted(set(self.train_q) | set(extra))
        self.texts = {q: self.catalog.queries[q].text for q in self.teacher_q + self.dev_q + self.test_q}
        self.titles = {p: product.title for p, product in self.catalog.products.items()}
        # pseudo- and unlabeled queries (labels stage) train the students beside the train queries
        self.pseudo: dict[str, str] = read_queries(self.layout.pseudo_queries)
        self.unlabeled: dict[str, str] = read_queries(self.layout.unlabeled_queries)
        self.texts.update(self.pseudo)
        self.texts.update(self.unlabeled)
        # the run's identity: the head of every manifest it writes, and of the stage digest chain
        self.manifest = {
            "dataset": self.catalog.name, "data_fingerprint": self.catalog.fingerprint(),
            "split_id": self.split.split_id, "profile": self.profile.name,
        }

    # -- what earlier stages wrote -------------------------------------------------------------------
    def recorded_stages(self) -> dict:
        """stages.json: each finished stage's digest, seconds and finishing time."""
        path = self.layout.stages
        return json.loads(path.read_text()) if path.exists() else {}

    def bm25_top(self) -> dict[str, dict[str, float]]:
        return json.loads(self.layout.bm25_top.read_text())

    def grades(self, queries: list[str]) -> dict[str, dict[str, float]]:
        graded = self.catalog.judgments_by_query()
        return {q: graded[q] for q in queries if q in graded}

    def extra_queries(self) -> dict[str, str]:
        """The students' queries beyond the train split's graded ones: pseudo-queries and unlabeled
        queries (id -> text); none is in the query store or the graph."""
        return {**self.pseudo, **self.unlabeled}

    def graph_source(self) -> dict | None:
        path = self.layout.graph_source
        return json.loads(path.read_text()) if path.exists() else None

    def fast_teacher(self) -> OnnxTeacher:
        """The teacher through ONNX Runtime, int8 or fp32 as teacher_mix's guard chose, on every core."""
        return OnnxTeacher.load(self.layout.teacher)

    # -- loaded once per run -------------------------------------------------------------------------
    @cached_property
    def bi_encoder(self):
        """The zero-shot bi-encoder (frozen: it made the catalog's item vectors)."""
        return load_bi_encoder()

    @cached_property
    def tuned_encoder(self):
        """The teacher-distilled query encoder of this run, or None (the profile has none)."""
        return load_query_encoder(self.layout.query_encoder) if self.profile.query_encoder else None

    @cached_property
    def query_store(self) -> VectorStore:
        return VectorStore.load(self.root, RunLayout.QUERY_STORE)

    @cached_property
    def item_store(self) -> VectorStore:
        return VectorStore.load(self.root, RunLayout.ITEM_STORE)

    @cached_property
    def _vectors_seen(self) -> dict[str, np.ndarray]:
        """Product vectors runs on the same catalog data already computed (this one's included): the
        bi-encoder is frozen, so they are the vectors this run would compute (55k titles: ~10 min).
        Read once per run (three stages ask, the stores are tens of MB each), then kept up to date."""
        known: dict[str, np.ndarray] = {}
        for folder in sorted(self.root.parent.glob(f"{self.catalog.name}-*")):
            other = RunLayout(folder)
            if model_manifest(other.teacher).get("data_fingerprint") != self.manifest["data_fingerprint"]:
                continue
            for name in (RunLayout.ITEM_STORE, RunLayout.TITLE_CACHE):
                if not VectorStore.paths(folder, name)[0].is_file():
                    continue
                try:
                    store = VectorStore.load(folder, name)
                except StoreError:  # another run may be writing it right now: embed instead
                    continue
                known.update({p: v for p, v in zip(store.ids, store.vectors_of(store.ids)) if p not in known})
        return known

    # -- vectors and contexts ------------------------------------------------------------------------
    def query_vectors(self, query_ids) -> dict[str, np.ndarray]:
        """Bi-encoder vectors of these queries' texts, by query id."""
        ids = sorted(query_ids)
        vectors = embed(self.bi_encoder, [self.texts[q] for q in ids], self.profile.embed_batch_size, progress=False)
        return dict(zip(ids, vectors))

    def item_vectors(self, product_ids) -> dict[str, np.ndarray]:
        """Bi-encoder vectors of these products' titles: reused from any run on the same data (this
        one's included), the rest embedded and kept in this run's `title_cache` store."""
        known = self._vectors_seen
        todo = sorted(p for p in product_ids if p not in known)
        if todo:
            fresh = embed(self.bi_encoder, [self.titles[p] for p in todo], self.profile.embed_batch_size)
            known.update(zip(todo, fresh))
            cached = sorted(set(self._cached_titles()) | set(todo))
            VectorStore.build(cached, np.stack([known[p] for p in cached])).save(self.root, RunLayout.TITLE_CACHE)
        log.info("product vectors: %d reused, %d embedded", len(set(product_ids)) - len(todo), len(todo))
        return {p: known[p] for p in product_ids}

    def _cached_titles(self) -> list[str]:
        if not VectorStore.paths(self.root, RunLayout.TITLE_CACHE)[0].is_file():
            return []
        return list(VectorStore.load(self.root, RunLayout.TITLE_CACHE).ids)

    def context_builder(self, graph: Path, encoder=None) -> ContextBuilder:
        """The students' input builder over the click graph in `graph` (the whole one or a fold's)."""
        sampler = NeighborSampler(ClickGraph.load(graph), per_path=self.profile.per_path, seed=self.profile.seed)
        return ContextBuilder(sampler, Vocab.load(self.layout.vocab), self.query_store, self.item_store,
                              self.catalog.products, encoder, per_path=self.profile.per_path,
                              tuned_encoder=self.tuned_encoder)
