"""The whole distillation pipeline as restartable stages, sized by a profile.

    bm25 -> teacher -> teacher_mix -> labels -> query_encoder -> graph -> faiss -> berm -> berm_o -> evaluate

Each stage writes its artifacts under `artifacts/pipeline/<dataset>-<profile>/` and records its
wall time and a config digest in `stages.json`; a re-run skips a stage whose digest is unchanged,
so an interrupted run continues where it stopped. Test queries are only touched by `evaluate`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from elasticsearch import Elasticsearch

from common.results import Candidate
from evaluation import metrics
from evaluation.retrieval import bm25_top
from evaluation.runner import EvalResult
from indexer.embeddings import embed, load_bi_encoder
from indexer.faiss_store import StoreError, VectorStore
from indexer.graph import ClickGraph, graph_from_logs
from indexer.records import Catalog
from indexer.splits import QuerySplit
from reranker.models.teacher import Teacher
from reranker.models.teacher_onnx import OnnxTeacher
from reranker.training.errors import PipelineError
from reranker.training.export import export_teacher
from reranker.training.int8_guard import GuardThresholds, guard_teacher
from reranker.training.labeling import LabeledPairs, label_candidates
from reranker.training.pseudo_queries import pseudo_queries
from reranker.training.query_encoder import (QueryEncoderConfig, QueryGroup, load_query_encoder, save_query_encoder,
                                             train_query_encoder)
from reranker.graph.context import ContextBuilder
from reranker.graph.neighbors import NeighborSampler
from reranker.models.berm import Berm, BermConfig
from reranker.models.berm_o import BermO, BermOConfig
from reranker.serving.online import OnlineReranker
from reranker.training.artifact import build_artifact
from reranker.text import Vocab
from reranker.training.distill import DistillConfig, Trained, train_student
from reranker.training.linear_start import linear_start
from reranker.training.student_data import StudentGroups, fold_of, graph_edges, mixed_targets
from reranker.training.profiles import MEASUREMENT_ONLY, STAGE_SETTINGS, STAGES, Profile
from reranker.training.teacher_train import build_groups, train_teacher
from reranker.training.word_vectors import start_word_vectors

log = logging.getLogger(__name__)

PSEUDO_FILE = "pseudo_queries.json"  # the labels stage's extra queries, id -> text
UNLABELED_FILE = "unlabeled_queries.json"


def model_manifest(folder: Path) -> dict:
    """The manifest of what is saved in `folder`: a serving artifact's or teacher's `manifest.json`,
    else a student's `<name>_manifest.json` (a serving folder holds both; its own comes first)."""
    folder = Path(folder)
    found = [folder / "manifest.json"] if (folder / "manifest.json").exists() else sorted(folder.glob("*_manifest.json"))
    return json.loads(found[0].read_text()) if found else {}


def _sample(ids: list[str], n: int | None, seed: int) -> list[str]:
    ids = sorted(ids)
    return ids if n is None or n >= len(ids) else sorted(random.Random(seed).sample(ids, n))


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Evaluation:
    """What the evaluate stage measured on the test queries (the CLI prints it; eval.json keeps it)."""

    result: EvalResult  # the table, both settings
    tests: dict[str, dict[str, dict[str, float]]]  # paired t-test p-values against BM25, the bi-encoder and the teacher
    speed: dict[str, dict[str, float]]  # scoring time per 100 candidates


@dataclass
class Pipeline:
    catalog: Catalog
    split: QuerySplit
    es: Elasticsearch
    alias: str
    profile: Profile
    root: Path
    timings: dict[str, float] = field(default_factory=dict)
    name: str | None = None  # the run folder's name after the dataset (default: the profile's)
    evaluation: Evaluation | None = None  # set when this run's evaluate stage ran (not when up to date)

    def __post_init__(self) -> None:
        base = Path(self.root) / f"{self.catalog.name}-{self.profile.name}"
        self.root = Path(self.root) / f"{self.catalog.name}-{self.name or self.profile.name}"
        if self.root != base and not self.root.exists() and base.is_dir():
            # a variant run starts as a copy of its profile's run: stages whose settings it shares
            # (the teacher, usually) have the same digest and are not redone
            shutil.copytree(base, self.root, ignore=shutil.ignore_patterns("teacher-checkpoint", "eval.json",
                                                                            "dev_check.json"))
        if self.profile.teacher_from and not (Path(self.profile.teacher_from) / "teacher_config.json").is_file():
            raise PipelineError(f"--teacher-from {self.profile.teacher_from}: no trained teacher there "
                                f"(expected teacher_config.json, e.g. artifacts/pipeline/home-depot-full/teacher)")
        self.root.mkdir(parents=True, exist_ok=True)
        graded = self.catalog.judgments_by_query()
        seed = self.profile.seed
        self.train_q = _sample([q for q in self.split.train if q in graded], self.profile.train_queries, seed)
        self.dev_q = _sample([q for q in self.split.dev if q in graded], self.profile.dev_queries, seed)
        self.test_q = _sample([q for q in self.split.test if q in graded], self.profile.test_queries, seed)
        # The teacher may learn from more train queries than the students see (quick: the demo's
        # catalog has thousands); never from fewer, and always from the students' own.
        wanted = self.profile.teacher.max_queries
        extra = (_sample([q for q in self.split.train if q in graded], wanted, seed)
                 if wanted is not None and wanted > len(self.train_q) else [])
        self.teacher_q = sorted(set(self.train_q) | set(extra))
        self.texts = {q: self.catalog.queries[q].text for q in self.teacher_q + self.dev_q + self.test_q}
        self.titles = {p: product.title for p, product in self.catalog.products.items()}
        # pseudo- and unlabeled queries (labels stage) train the students beside the train queries
        self.pseudo: dict[str, str] = self._read_queries(PSEUDO_FILE)
        self.unlabeled: dict[str, str] = self._read_queries(UNLABELED_FILE)
        self.texts.update(self.pseudo)
        self.texts.update(self.unlabeled)
        self.manifest = {
            "dataset": self.catalog.name, "data_fingerprint": self.catalog.fingerprint(),
            "split_id": self.split.split_id, "profile": self.profile.name,
        }

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _stages(self) -> dict:
        path = self.root / "stages.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def run_stage(self, name: str, digest: str, fn) -> None:
        stages = self._stages()
        if stages.get(name, {}).get("digest") == digest:
            log.info("stage %s is up to date", name)
            self.timings[name] = stages[name]["seconds"]
            return
        began = time.monotonic()
        fn()
        seconds = time.monotonic() - began
        stages = self._stages()
        stages[name] = {"digest": digest, "seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (self.root / "stages.json").write_text(json.dumps(stages, indent=1))
        self.timings[name] = seconds

    def stage_digest(self, name: str) -> str:
        return self._stages().get(name, {}).get("digest", "missing")

    # -- stages --------------------------------------------------------------------------------------
    def bm25(self) -> None:
        top = bm25_top(self.es, self.alias, self.texts, size=self.profile.bm25_depth)
        (self.root / "bm25_top.json").write_text(json.dumps(top))

    def bm25_top(self) -> dict[str, dict[str, float]]:
        return json.loads((self.root / "bm25_top.json").read_text())

    def dev_clear_pairs(self, teacher: Teacher) -> float:
        """The teacher's accuracy on clear pairs of dev queries' judged products (held out)."""
        grades = {q: self.catalog.judgments_by_query()[q] for q in self.dev_q}
        scores = {}
        for q, items in grades.items():
            ids = list(items)
            scores[q] = dict(zip(ids, teacher.predict([self.texts[q]] * len(ids), [self.titles[p] for p in ids]).tolist()))
        return metrics.clear_pair_accuracy(grades, scores)[0]

    def teacher(self) -> None:
        config = self.profile.teacher
        if len(self.teacher_q) > len(self.train_q):  # more than the students': all of them (drawn above)
            config = dataclasses.replace(config, max_queries=len(self.teacher_q))
        groups = build_groups(self.catalog, self.teacher_q, self.bm25_top(), config)
        source = self.profile.teacher_from
        teacher = Teacher.load(Path(source)) if source else Teacher.from_base(seed=config.seed)
        before = self.dev_clear_pairs(teacher)
        history = train_teacher(teacher, groups, config, self.root / "teacher-checkpoint")
        after = self.dev_clear_pairs(teacher)
        log.info("teacher dev clear-pair accuracy: %.3f untrained -> %.3f trained", before, after)
        teacher.save(self.root / "teacher", {**self.manifest, "train_config": asdict(config), "groups": len(groups),
                                             "teacher_from": source,
                                             "loss_history": history, "dev_clear_pair_acc_untrained": before,
                                             "dev_clear_pair_acc": after})

    def teacher_mix(self) -> None:
        """Export the teacher to ONNX (fp32, int8) and score dev queries' BM25 top-N with it; choose
        how much BM25 and how much zero-shot bi-encoder cosine the deployed teacher mixes in, on dev
        NDCG@10; then the int8 guard picks the graph later stages score with (`_fast_teacher`)."""
        teacher = Teacher.load(self.root / "teacher")
        export_teacher(teacher, self.root / "teacher")
        top = self.bm25_top()
        dev_top = {q: top[q] for q in self.dev_q}
        dev = label_candidates(OnnxTeacher.load(self.root / "teacher", "fp32"), self.texts, dev_top, self.titles,
                               self._query_vectors(self.dev_q),
                               self._item_vectors({p for items in dev_top.values() for p in items}))
        grades = {q: self.catalog.judgments_by_query()[q] for q in self.dev_q}
        by_query = dev.by_query()
        results = {}
        for bm25_mix in self.profile.mix_grid:
            for cosine_mix in self.profile.cosine_grid:
                if bm25_mix + cosine_mix > 0.9 + 1e-9:
                    continue
                run = mixed_targets(by_query, bm25_mix, cosine_mix)
                results[(bm25_mix, cosine_mix)] = metrics.ranx_metrics(
                    grades, run, {"ndcg@10": "ndcg@10"}, f"mix {bm25_mix} {cosine_mix}")["ndcg@10"]
        # ties go to the least mixing (the cross-encoder's own judgement)
        best = max(results, key=lambda m: (round(results[m], 6), -m[0] - m[1]))
        teacher.config.bm25_mix, teacher.config.cosine_mix = best
        table = {f"bm25 {a}, cosine {c}": value for (a, c), value in results.items()}
        log.info("teacher mix chosen on dev: BM25 %s, cosine %s (NDCG@10 %.4f)", *best, results[best])
        # int8 or fp32 for the later stages; the dev labels kept are the chosen graph's
        thresholds = GuardThresholds(self.profile.int8_max_ndcg_drop, self.profile.int8_min_spearman)
        dev, guard = guard_teacher(self.root / "teacher", dev, self.texts, self.titles, grades, best, thresholds)
        (log.info if guard.chosen == "int8" else log.warning)("teacher ONNX graph: %s (%s)", guard.chosen, guard.reason)
        dev.save(self.root / "dev_labels.npz")
        teacher.save(self.root / "teacher", {**json.loads((self.root / "teacher" / "manifest.json").read_text()),
                                             "dev_ndcg@10_by_mix": table, "onnx_guard": asdict(guard)})

    def _fast_teacher(self) -> OnnxTeacher:
        """The teacher through ONNX Runtime, int8 or fp32 as teacher_mix's guard chose, on every core."""
        return OnnxTeacher.load(self.root / "teacher")

    def _query_vectors(self, query_ids) -> dict[str, np.ndarray]:
        """Bi-encoder vectors of these queries' texts, by query id."""
        ids = sorted(query_ids)
        vectors = embed(self._bi_encoder, [self.texts[q] for q in ids], self.profile.embed_batch_size, progress=False)
        return dict(zip(ids, vectors))

    def _item_vectors(self, product_ids) -> dict[str, np.ndarray]:
        """Bi-encoder vectors of these products' titles: reused from any run on the same data (this
        one's included), the rest embedded and kept in this run's `title_cache` store."""
        # read once per run (three stages ask, the stores are tens of MB each), then kept up to date
        if not hasattr(self, "_vectors_seen"):
            self._vectors_seen = self._known_item_vectors()
        known = self._vectors_seen
        todo = sorted(p for p in product_ids if p not in known)
        if todo:
            fresh = embed(self._bi_encoder, [self.titles[p] for p in todo], self.profile.embed_batch_size)
            known.update(zip(todo, fresh))
            cached = sorted(set(self._cached_titles()) | set(todo))
            VectorStore.build(cached, np.stack([known[p] for p in cached])).save(self.root, "title_cache")
        log.info("product vectors: %d reused, %d embedded", len(set(product_ids)) - len(todo), len(todo))
        return {p: known[p] for p in product_ids}

    def _cached_titles(self) -> list[str]:
        if not VectorStore.paths(self.root, "title_cache")[0].is_file():
            return []
        return list(VectorStore.load(self.root, "title_cache").ids)

    @property
    def _bi_encoder(self):
        if not hasattr(self, "_loaded_bi_encoder"):
            self._loaded_bi_encoder = load_bi_encoder()
        return self._loaded_bi_encoder

    def labels(self) -> None:
        """The distillation set: each train query's BM25 top-K plus its judged products."""
        teacher = self._fast_teacher()
        top = self.bm25_top()
        grades = self.catalog.judgments_by_query()
        candidates = {}
        for q in self.train_q:
            items = dict(list(top[q].items())[: self.profile.label_k])
            for p in grades[q]:
                items.setdefault(p, top[q].get(p, 0.0))
            candidates[q] = items
        self.pseudo = self._add_unlabeled(pseudo_queries(self.catalog.products, self.profile.pseudo_queries,
                                                         self.profile.seed), self.profile.pseudo_k, PSEUDO_FILE, candidates)
        self.unlabeled = self._add_unlabeled(self._unlabeled_queries(), self.profile.unlabeled_k, UNLABELED_FILE,
                                             candidates)
        label_candidates(teacher, self.texts, candidates, self.titles, self._query_vectors(candidates),
                         self._item_vectors({p for items in candidates.values() for p in items})
                         ).save(self.root / "train_labels.npz")

    def _read_queries(self, name: str) -> dict[str, str]:
        path = self.root / name
        return json.loads(path.read_text()) if path.exists() else {}

    def _add_unlabeled(self, queries: dict[str, str], k: int, name: str,
                       candidates: dict[str, dict[str, float]]) -> dict[str, str]:
        """Queries without grades (id -> text) whose BM25 top-k holds two products or more: their
        top-k joins `candidates`, their texts the run's, and the kept ones are written to `name`."""
        top = bm25_top(self.es, self.alias, queries, size=k) if queries else {}
        kept = {q: text for q, text in queries.items() if len(top.get(q, {})) > 1}
        candidates.update({q: top[q] for q in kept})
        self.texts.update(kept)
        (self.root / name).write_text(json.dumps(kept))
        return kept

    def _unlabeled_queries(self) -> dict[str, str]:
        """A seeded sample of train-split queries that neither the students' grades nor the teacher's
        training touched (dev and test are never among them), by id -> text."""
        taken = set(self.teacher_q)
        pool = [q for q in self.split.train if q not in taken and q in self.catalog.queries]
        chosen = _sample(pool, self.profile.unlabeled_queries, self.profile.seed + 1) if self.profile.unlabeled_queries else []
        return {q: self.catalog.queries[q].text for q in chosen}

    def _extra_queries(self) -> dict[str, str]:
        """The students' queries beyond the train split's graded ones: pseudo-queries and unlabeled
        queries (id -> text); none is in the query store or the graph."""
        return {**self.pseudo, **self.unlabeled}

    # -- the teacher-distilled query encoder ---------------------------------------------------------
    def query_encoder(self) -> None:
        """Fine-tune the bi-encoder's query side on the deployed teacher's scores (train labels), early
        stopped on dev; item vectors stay the catalog's zero-shot ones (reranker/training/query_encoder.py)."""
        folder = self.root / "query_encoder"
        shutil.rmtree(folder, ignore_errors=True)
        if not self.profile.query_encoder:
            return
        config = Teacher.load_config(self.root / "teacher")
        train = LabeledPairs.load(self.root / "train_labels.npz").by_query()
        dev = LabeledPairs.load(self.root / "dev_labels.npz").by_query()
        items = self._item_vectors({p for labels in (train, dev) for candidates in labels.values() for p in candidates})

        def groups(labels) -> list[QueryGroup]:
            targets = mixed_targets(labels, config.bm25_mix, config.cosine_mix)
            return [QueryGroup(self.texts[q], np.stack([items[p] for p in targets[q]]),
                               np.fromiter(targets[q].values(), np.float32)) for q in sorted(targets)]

        qe_config = QueryEncoderConfig(epochs=self.profile.query_encoder_epochs, seed=self.profile.seed)
        torch.manual_seed(qe_config.seed)
        tuned, result = train_query_encoder(self._bi_encoder, groups(train), groups(dev), qe_config)
        save_query_encoder(tuned, folder)
        (folder / "query_encoder_manifest.json").write_text(json.dumps(
            {**self.manifest, "model": "query_encoder", "config": asdict(qe_config), **asdict(result)}, indent=1))
        log.info("query encoder: best epoch %d, dev KL %.4f (zero-shot %.4f)", result.best_epoch,
                 min(result.dev_history), result.dev_history[0])

    @cached_property
    def _tuned_encoder(self):
        """The teacher-distilled query encoder of this run, or None (the profile has none)."""
        return load_query_encoder(self.root / "query_encoder") if self.profile.query_encoder else None

    # -- students ------------------------------------------------------------------------------------
    def _grades(self, queries: list[str]) -> dict[str, dict[str, float]]:
        graded = self.catalog.judgments_by_query()
        return {q: graded[q] for q in queries if q in graded}

    def graph(self) -> None:
        """The click graph of train queries (whole, and one per fold) and the vocabulary.

        Teacher-scored impressions, with the logged pairs' edges in their place where the shop has
        search logs: the profile's `graph_file` (a graph written by `shopsearch logs export --graph`,
        corrected for position bias) or else the catalog's logs table (smoothed CTR). What the graph
        was built from goes to graph_source.json and every student's manifest."""
        from indexer.click_logs import with_teacher_edges

        labels = LabeledPairs.load(self.root / "train_labels.npz")
        judged = {q: set(items) for q, items in self._grades(self.train_q).items()}
        confident = self.profile.confident_edge
        source = ("logs export " + str(self.profile.graph_file) if self.profile.graph_file
                  else "catalog logs" if self.catalog.logs else None)
        exported = ClickGraph.load(Path(self.profile.graph_file)) if self.profile.graph_file else None

        def logged(queries: set[str]) -> ClickGraph | None:
            if exported is not None:
                return ClickGraph.from_edges([(q, p, w) for q, p, w in exported.edges() if q in queries])
            if self.catalog.logs:
                return graph_from_logs([e for e in self.catalog.logs if e.query_id in queries])
            return None

        def build(queries: set[str]) -> tuple[ClickGraph, int]:
            teacher = ClickGraph.from_edges(graph_edges(labels, judged, confident, queries))
            logs = logged(queries)
            return (teacher, 0) if logs is None else (with_teacher_edges(logs, teacher), logs.num_edges)

        whole, from_logs = build(set(self.train_q))
        whole.save(self.root / "graph.json")
        for fold in (0, 1):
            build({q for q in self.train_q if fold_of(q) != fold})[0].save(self.root / f"graph_fold{fold}.json")
        (self.root / "graph_source.json").write_text(json.dumps({
            "built_from": "teacher-scored impressions" + (f" + {source}" if source else ""),
            "edges": whole.num_edges, "edges_from_logs": from_logs, "edges_from_teacher": whole.num_edges - from_logs},
            indent=1))
        Vocab.build([*self.titles.values(), *(self.texts[q] for q in self.train_q)]).save(self.root / "vocab.json")

    def _graph_source(self) -> dict | None:
        path = self.root / "graph_source.json"
        return json.loads(path.read_text()) if path.exists() else None

    def faiss(self) -> None:
        """Bi-encoder vectors of the products and of the logged (train) queries, as FAISS stores."""
        if self.profile.all_products:
            products = sorted(self.catalog.products)
        else:  # every product some query of the profile retrieves or has judged
            top = self.bm25_top()
            wanted = {p for q in self.train_q + self.dev_q + self.test_q for p in top[q]}
            wanted |= {p for g in self._grades(self.dev_q + self.test_q).values() for p in g}
            wanted |= set(LabeledPairs.load(self.root / "train_labels.npz").product_ids.tolist())
            products = sorted(wanted)
        vectors = self._item_vectors(products)
        stacked = np.stack([vectors[p] for p in products]) if products else np.zeros((0, 384), np.float32)
        VectorStore.build(products, stacked).save(self.root, "item_store")
        query_vectors = self._query_vectors(self.train_q)
        VectorStore.build(self.train_q, np.stack([query_vectors[q] for q in self.train_q])).save(self.root, "query_store")

    def _known_item_vectors(self) -> dict[str, np.ndarray]:
        """Product vectors runs on the same catalog data already computed (this one's included): the
        bi-encoder is frozen, so they are the vectors this run would compute (55k titles: ~10 min)."""
        known: dict[str, np.ndarray] = {}
        for folder in sorted(self.root.parent.glob(f"{self.catalog.name}-*")):
            if model_manifest(folder / "teacher").get("data_fingerprint") != self.manifest["data_fingerprint"]:
                continue
            for name in ("item_store", "title_cache"):
                if not VectorStore.paths(folder, name)[0].is_file():
                    continue
                try:
                    store = VectorStore.load(folder, name)
                except StoreError:  # another run may be writing it right now: embed instead
                    continue
                known.update({p: v for p, v in zip(store.ids, store.vectors_of(store.ids)) if p not in known})
        return known

    def _context(self, graph_file: str, encoder=None) -> ContextBuilder:
        sampler = NeighborSampler(ClickGraph.load(self.root / graph_file), per_path=self.profile.per_path,
                                  seed=self.profile.seed)
        return ContextBuilder(sampler, Vocab.load(self.root / "vocab.json"), self._stores[0], self._stores[1],
                              self.catalog.products, encoder, per_path=self.profile.per_path,
                              tuned_encoder=self._tuned_encoder)

    @property
    def _stores(self) -> tuple[VectorStore, VectorStore]:
        if not hasattr(self, "_loaded_stores"):
            self._loaded_stores = (VectorStore.load(self.root, "query_store"), VectorStore.load(self.root, "item_store"))
        return self._loaded_stores

    def _train_groups(self, target_of=None) -> StudentGroups:
        labels = LabeledPairs.load(self.root / "train_labels.npz").by_query()
        config = Teacher.load_config(self.root / "teacher")
        # pseudo- and unlabeled queries are not in the query store: like test queries, they are embedded
        extra = self._extra_queries()
        encoder = load_bi_encoder() if extra else None
        folds = [self._context(f"graph_fold{fold}.json", encoder) for fold in (0, 1)]
        if extra:
            texts = sorted(set(extra.values()))
            vectors = dict(zip(texts, embed(encoder, texts, self.profile.embed_batch_size, progress=False)))
            for builder in folds:
                builder.remember_query_vectors(vectors)
        if self._tuned_encoder is not None:  # every training query's tuned vector, in one batch
            texts = sorted({self.texts[q] for q in self.train_q} | set(extra.values()))
            tuned = dict(zip(texts, embed(self._tuned_encoder, texts, self.profile.embed_batch_size, progress=False)))
            for builder in folds:
                builder.remember_tuned_vectors(tuned)
        bm25 = {q: {p: b for p, (b, _, _) in items.items()} for q, items in labels.items()}
        items = sorted({p for candidates in bm25.values() for p in candidates})
        for builder in folds:
            builder.sampler.warm_items(items, self._stores[1])
        return StudentGroups(self.train_q + sorted(extra), self.texts, bm25, mixed_targets(labels, config.bm25_mix, config.cosine_mix),
                             self._grades(self.train_q),
                             lambda q: folds[fold_of(q)], target_of)

    def _dev_agreement(self, scorer, warm) -> float:
        """Mean per-query Spearman correlation with the deployed teacher on dev's BM25 top-N (held out)."""
        from scipy.stats import spearmanr

        dev = LabeledPairs.load(self.root / "dev_labels.npz").by_query()
        config = Teacher.load_config(self.root / "teacher")
        targets = mixed_targets(dev, config.bm25_mix, config.cosine_mix)
        warm(sorted({p for items in dev.values() for p in items}))
        rhos = []
        for q, items in dev.items():
            ids = list(items)
            scores = scorer(self.texts[q], ids, [items[p][0] for p in ids])
            rho = spearmanr(scores, [targets[q][p] for p in ids]).statistic
            if np.isfinite(rho):
                rhos.append(rho)
        return float(np.mean(rhos)) if rhos else float("nan")

    def _distil(self, model, groups: StudentGroups, config: DistillConfig) -> tuple[Trained, list[float] | None]:
        """Train a student on `groups`: from its linear start (reranker/training/linear_start.py) when
        the profile says so, keeping the epoch with the best dev NDCG@10 when it says so."""
        start = linear_start(model, groups) if self.profile.linear_start else None
        select = self._dev_ndcg_scorer() if self.profile.select_epoch else None
        return train_student(model, groups, config, select=select), start

    def _training_record(self, trained: Trained, start: list[float] | None) -> dict:
        """The manifest's account of a student's training."""
        record = {"loss_history": trained.history, "linear_start": start}
        if trained.epoch is not None:
            record |= {"dev_ndcg@10_by_epoch": trained.scores, "epoch_kept": trained.epoch}
        return record

    def _dev_ndcg_scorer(self):
        """A function of a student: its NDCG@10 over the dev queries' labelled BM25 top-N (the dev
        grades; linear gain, unjudged = 0), the same groups every call."""
        from evaluation.ndcg import ndcg_at

        dev = LabeledPairs.load(self.root / "dev_labels.npz").by_query()
        builder = self._context("graph.json", load_bi_encoder())
        builder.sampler.warm_items(sorted({p for items in dev.values() for p in items}), self._stores[1])
        grades = self._grades(self.dev_q)
        groups = []
        for q, items in dev.items():
            if any(g > 0 for g in grades.get(q, {}).values()):
                ids = list(items)
                groups.append((ids, grades[q], builder.build(self.texts[q], None, ids, [items[p][0] for p in ids])))

        def dev_ndcg(model) -> float:
            with torch.inference_mode():
                values = [ndcg_at([ids[i] for i in np.argsort(-model(batch)["score"].numpy(), kind="stable")], graded)
                          for ids, graded, batch in groups]
            return float(np.mean(values)) if values else float("nan")

        return dev_ndcg

    def student(self, name: str, use_k_order: bool) -> None:
        """BERM (or its no-k-order ablation) distilled from the deployed teacher's scores plus the grades."""
        vocab = Vocab.load(self.root / "vocab.json")
        model = Berm(BermConfig(vocab_size=len(vocab), use_k_order=use_k_order, use_cosine=self.profile.use_cosine,
                                use_tuned_query=self.profile.query_encoder, word_init=self.profile.word_init))
        start_word_vectors(model, vocab, cache=self.root / "word_vectors.npz")
        config = DistillConfig(epochs=self.profile.student_epochs, seed=self.profile.seed,
                               listwise_weight=self.profile.listwise_weight,
                               listwise_temperature=self.profile.listwise_temperature)
        torch.manual_seed(config.seed)
        trained, start = self._distil(model, self._train_groups(), config)
        builder = self._context("graph.json", load_bi_encoder())

        def scorer(text, ids, bm25):
            with torch.inference_mode():
                return model(builder.build(text, None, ids, bm25))["score"].numpy()

        agreement = self._dev_agreement(scorer, lambda ids: builder.sampler.warm_items(ids, self._stores[1]))
        log.info("%s: dev Spearman with the teacher %.3f", name, agreement)
        model.save(self.root / name, {**self.manifest, "graph": self._graph_source(),
                                      "distill_config": asdict(config), **self._training_record(trained, start),
                                      "dev_spearman_with_teacher": agreement}, vocab)

    def berm_o(self) -> None:
        """BERM-O distilled from BERM's scores, then the serving artifact (ONNX + precomputed contexts)."""
        vocab = Vocab.load(self.root / "vocab.json")
        teacher_model = Berm.load(self.root / "berm")

        def berm_scores(group):
            with torch.inference_mode():
                return teacher_model(group)["score"]

        model = BermO(BermOConfig(vocab_size=len(vocab), use_cosine=self.profile.use_cosine,
                                  use_tuned_query=self.profile.query_encoder, word_init=self.profile.word_init))
        start_word_vectors(model, vocab, cache=self.root / "word_vectors.npz")
        config = DistillConfig(epochs=self.profile.student_epochs, seed=self.profile.seed, hard_label_weight=0.0,
                               listwise_weight=self.profile.listwise_weight,
                               listwise_temperature=self.profile.listwise_temperature)
        torch.manual_seed(config.seed)
        trained, start = self._distil(model, self._train_groups(berm_scores), config)
        builder = self._context("graph.json", load_bi_encoder())

        def scorer(text, ids, bm25):
            with torch.inference_mode():
                return model(builder.build(text, None, ids, bm25))["score"].numpy()

        agreement = self._dev_agreement(scorer, lambda ids: builder.sampler.warm_items(ids, self._stores[1]))
        # trained_depth: the BM25 depth its labels reached; the service warns when a request sends more
        extra = {**self.manifest, "graph": self._graph_source(), "distill_config": asdict(config),
                 **self._training_record(trained, start), "dev_spearman_with_teacher": agreement,
                 "trained_depth": self.profile.label_k}
        model.save(self.root / "berm_o", extra, vocab)
        query_store, item_store = self._stores
        build_artifact(self.root / "serving", model, vocab, builder.sampler.graph, query_store, item_store, self.titles,
                       query_texts={q: self.texts[q] for q in self.train_q}, per_path=self.profile.per_path,
                       seed=self.profile.seed, extra=extra, bi_encoder=builder.bi_encoder,
                       tuned_encoder=self._tuned_encoder)
        # The ONNX path against the torch path on held-out queries: same inputs, same scores.
        online = OnlineReranker.load(self.root / "serving")
        dev = LabeledPairs.load(self.root / "dev_labels.npz").by_query()
        gap = 0.0
        for q in list(dev)[:20]:
            ids = list(dev[q])
            bm25 = [dev[q][p][0] for p in ids]
            out = online.rerank(self.texts[q], [Candidate(p, b, i + 1, self.titles[p]) for i, (p, b) in enumerate(zip(ids, bm25))])
            gap = max(gap, float(np.abs(np.array([s.score for s in out.scored]) - scorer(self.texts[q], ids, bm25)).max()))
        manifest = json.loads((self.root / "serving" / "manifest.json").read_text())
        manifest["onnx_vs_torch_max_abs_diff"] = gap
        (self.root / "serving" / "manifest.json").write_text(json.dumps(manifest, indent=1))
        log.info("BERM-O: dev Spearman with the teacher %.3f; ONNX vs torch max |diff| %.2e", agreement, gap)

    def _speed(self, result, rankers, teacher_name: str) -> dict[str, dict[str, float]]:
        """ms per 100 candidates: first sight of each query (from the evaluation run) and a repeat
        of the same query (a served model's query cache is warm; the others do the same work again)."""
        top = self.bm25_top()
        sample = [q for q in self.test_q if len(top.get(q, {})) >= 100][: self.profile.speed_queries]
        repeat = {}
        for ranker in rankers:
            seconds = 0.0
            for q in sample:
                products = [self.catalog.products[p] for p in list(top[q])[:100]]
                bm25 = list(top[q].values())[:100]
                ranker.score(self.texts[q], products, bm25)  # first sight
                began = time.perf_counter()
                ranker.score(self.texts[q], products, bm25)
                seconds += time.perf_counter() - began
            repeat[ranker.name] = 1000.0 * seconds / max(1, len(sample))
        first = {row.name: row.ms_per_100 for row in result.rows}
        return {name: {"ms_per_100_first": first[name], "ms_per_100_repeat": repeat[name],
                       "teacher_over_model_first": first[teacher_name] / first[name],
                       "teacher_over_model_repeat": repeat[teacher_name] / repeat[name]} for name in first}

    def _rankers(self, queries: list[str]) -> list:
        """BM25, the zero-shot bi-encoder, the deployed teacher, BERM (and its ablation) and BERM-O."""
        from reranker.training.rankers import (TUNED_BI_ENCODER, BiEncoderRanker, OnlineRanker, StudentRanker,
                                               TeacherRanker)
        from evaluation.rankers import BM25Ranker

        encoder = load_bi_encoder()
        builder = self._warm_context(queries, encoder)
        bi_encoder = BiEncoderRanker(encoder, self._stores[1])
        rankers = [BM25Ranker(), bi_encoder, TeacherRanker(self._fast_teacher(), bi_encoder),
                   StudentRanker("BERM", Berm.load(self.root / "berm"), builder)]
        if (self.root / "berm_no_k_order").is_dir() and self.profile.k_order_ablation:
            rankers.append(StudentRanker("BERM without k-order", Berm.load(self.root / "berm_no_k_order"), builder))
        rankers.append(OnlineRanker(OnlineReranker.load(self.root / "serving")))
        if self._tuned_encoder is not None:  # the tuned query encoder alone, against the same item vectors
            rankers.append(BiEncoderRanker(self._tuned_encoder, self._stores[1], name=TUNED_BI_ENCODER))
        return rankers

    def _warm_context(self, queries: list[str], encoder) -> ContextBuilder:
        """The whole graph's context builder, its neighbors of these queries' candidates sampled."""
        builder = self._context("graph.json", encoder)
        top = self.bm25_top()
        builder.sampler.warm_items(sorted({p for q in queries for p in top.get(q, {})}
                                          | {p for g in self._grades(queries).values() for p in g}), self._stores[1])
        return builder

    def student_rankers(self, queries: list[str], label: str = "") -> list:
        """This run's BERM and BERM-O as rankers of these queries (named "BERM" and "BERM-O (ONNX)",
        plus `label`), without the teacher and the references `evaluate` adds."""
        from reranker.training.rankers import OnlineRanker, StudentRanker

        builder = self._warm_context(queries, load_bi_encoder())
        return [StudentRanker("BERM" + label, Berm.load(self.root / "berm"), builder),
                OnlineRanker(OnlineReranker.load(self.root / "serving"), name="BERM-O (ONNX)" + label)]

    def dev_head_to_head(self, other: Path) -> tuple[float, float, float, int]:
        """This run's served model against another serving artifact on this run's dev queries (end-to-end
        NDCG@10, paired t-test): (ours, theirs, p, queries). Two runs' own dev checks are made on
        different dev samples, so their figures cannot be compared with each other."""
        from evaluation.runner import evaluate_rankers
        from evaluation.significance import paired_tests
        from reranker.training.rankers import OnlineRanker

        ours, theirs = "candidate", "served"
        rankers = [OnlineRanker(OnlineReranker.load(self.root / "serving"), name=ours),
                   OnlineRanker(OnlineReranker.load(Path(other)), name=theirs)]
        result = evaluate_rankers(self.es, self.alias, self.catalog, self.dev_q, rankers, side="dev",
                                  split_id=self.split.split_id, depth=self.profile.bm25_depth)
        ndcg = {row.name: row.end_to_end["ndcg@10"] for row in result.rows}
        p = paired_tests(result, [theirs])[ours][f"vs {theirs}"]["e2e ndcg@10"]
        return ndcg[ours], ndcg[theirs], p, len(self.dev_q)

    def dev_check(self) -> None:
        """Guard rail: every trained model against BM25 and the zero-shot bi-encoder on dev (end to end
        NDCG@10, paired t-test); the verdicts go to dev_check.json and the serving manifest."""
        from evaluation.runner import evaluate_rankers
        from evaluation.significance import paired_tests
        from reranker.training.rankers import TeacherRanker
        from reranker.training.verdicts import REFERENCES, dev_verdicts

        # the teacher's dev figures are teacher_mix's (it chose the deployed mix there); scoring dev
        # with it again would be most of this stage's time
        rankers = [ranker for ranker in self._rankers(self.dev_q) if not isinstance(ranker, TeacherRanker)]
        result = evaluate_rankers(self.es, self.alias, self.catalog, self.dev_q, rankers, side="dev",
                                  split_id=self.split.split_id, depth=self.profile.bm25_depth)
        tests = paired_tests(result, list(REFERENCES))
        check = dev_verdicts({row.name: row.end_to_end["ndcg@10"] for row in result.rows}, tests)
        (self.root / "dev_check.json").write_text(json.dumps(check, indent=1))
        path = self.root / "serving" / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest["dev_check"] = check
        path.write_text(json.dumps(manifest, indent=1))
        for line in check["warnings"]:
            log.warning("dev check: %s", line)

    def evaluate(self) -> Evaluation:
        """Every model on the test queries, both settings, one table, significance, timings, JSON."""
        from evaluation.per_query import per_query_scores
        from evaluation.rankers import BM25Ranker
        from evaluation.report import write_json
        from evaluation.runner import evaluate_rankers
        from evaluation.significance import paired_tests

        rankers = self._rankers(self.test_q)
        teacher = rankers[2]
        result = evaluate_rankers(self.es, self.alias, self.catalog, self.test_q, rankers, side="test",
                                  split_id=self.split.split_id, depth=self.profile.bm25_depth)
        # the ablation gets its own test: does the k-order context help BERM on these queries?
        names = {row.name for row in result.rows}
        pairs = [("BERM", "BERM without k-order")] if "BERM without k-order" in names else []
        tests = paired_tests(result, [BM25Ranker.name, rankers[1].name, teacher.name], pairs=pairs)
        speed = self._speed(result, rankers, teacher.name)
        stages = self._stages()
        extra = {**self.manifest, "significance_p_values": tests, "speed": speed,
                 "stage_seconds": {k: v["seconds"] for k, v in stages.items()},
                 "dev_spearman_with_teacher": {name: model_manifest(self.root / name).get("dev_spearman_with_teacher")
                                               for name in ("berm", "berm_no_k_order", "berm_o")},
                 "dev_check": json.loads((self.root / "dev_check.json").read_text())
                 if (self.root / "dev_check.json").exists() else None,
                 "per_query": per_query_scores(result, self.texts)}  # for the report's intervals and wins
        write_json(result, self.root / "eval.json", extra)
        log.info("wrote %s", self.root / "eval.json")
        self.evaluation = Evaluation(result, tests, speed)
        return self.evaluation

    def run(self, until: str | None = None) -> None:
        plan = [
            ("bm25", self.bm25),
            ("teacher", self.teacher),
            ("teacher_mix", self.teacher_mix),
            ("labels", self.labels),
            ("query_encoder", self.query_encoder),
            ("graph", self.graph),
            ("faiss", self.faiss),
            ("berm", lambda: self.student("berm", use_k_order=True)),
            ("berm_no_k_order", lambda: self.student("berm_no_k_order", use_k_order=False)),
            ("berm_o", self.berm_o),
            ("dev_check", self.dev_check),
            ("evaluate", self.evaluate),
        ]
        if until is not None and until not in STAGES:
            raise PipelineError(f"unknown stage {until!r}; stages: {', '.join(STAGES)}")
        if not self.profile.k_order_ablation:
            plan = [(name, fn) for name, fn in plan if name != "berm_no_k_order"]
        # A stage's digest chains the one before it: redoing a stage redoes everything after it.
        settings = asdict(self.profile)
        later = {stage: {key: settings.pop(key) for key in keys} for stage, keys in STAGE_SETTINGS.items()}
        for key in MEASUREMENT_ONLY:
            settings.pop(key)
        digest = _digest(settings, self.manifest)
        for name, fn in plan:
            if name in later:
                digest = _digest(digest, later[name])
            digest = _digest(digest, name)
            log.info("stage %s", name)
            self.run_stage(name, digest, fn)
            if name == until:
                break
