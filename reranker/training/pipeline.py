"""The whole distillation pipeline as restartable stages, sized by a profile.

    bm25 -> teacher -> teacher_mix -> labels -> graph -> faiss -> berm -> berm_o -> evaluate

Each stage writes its artifacts under `artifacts/pipeline/<dataset>-<profile>/` and records its
wall time and a config digest in `stages.json`; a re-run skips a stage whose digest is unchanged,
so an interrupted run continues where it stopped. Test queries are only touched by `evaluate`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from elasticsearch import Elasticsearch

from evaluation import metrics
from evaluation.retrieval import bm25_top
from indexer.records import Catalog
from indexer.splits import QuerySplit
from reranker.models.teacher import Teacher, minmax
from reranker.training.labeling import LabeledPairs, label_candidates
from reranker.training.teacher_train import TeacherTrainConfig, build_groups, train_teacher

log = logging.getLogger(__name__)


@dataclass
class Profile:
    name: str
    teacher: TeacherTrainConfig
    train_queries: int | None  # train queries used for labeling, graph and students (None: all)
    dev_queries: int | None
    test_queries: int | None
    label_k: int = 50  # BM25 top-K of each train query scored by the teacher
    bm25_depth: int = 100
    mix_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    student_epochs: int = 4
    seed: int = 13


PROFILES: dict[str, Profile] = {
    # Minutes on 2 cores: the demo and CI.
    "quick": Profile("quick", TeacherTrainConfig(max_queries=300, checkpoint_every=50),
                     train_queries=300, dev_queries=100, test_queries=200, student_epochs=3),
    # The headline numbers: every train query, the whole test split (an hour or more on 2 cores).
    "full": Profile("full", TeacherTrainConfig(), train_queries=None, dev_queries=400, test_queries=None),
}


def _sample(ids: list[str], n: int | None, seed: int) -> list[str]:
    ids = sorted(ids)
    return ids if n is None or n >= len(ids) else sorted(random.Random(seed).sample(ids, n))


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class Pipeline:
    catalog: Catalog
    split: QuerySplit
    es: Elasticsearch
    alias: str
    profile: Profile
    root: Path
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root) / f"{self.catalog.name}-{self.profile.name}"
        self.root.mkdir(parents=True, exist_ok=True)
        graded = self.catalog.judgments_by_query()
        seed = self.profile.seed
        self.train_q = _sample([q for q in self.split.train if q in graded], self.profile.train_queries, seed)
        self.dev_q = _sample([q for q in self.split.dev if q in graded], self.profile.dev_queries, seed)
        self.test_q = _sample([q for q in self.split.test if q in graded], self.profile.test_queries, seed)
        self.texts = {q: self.catalog.queries[q].text for q in self.train_q + self.dev_q + self.test_q}
        self.titles = {p: product.title for p, product in self.catalog.products.items()}
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
        groups = build_groups(self.catalog, self.train_q, self.bm25_top(), config)
        teacher = Teacher.from_base()
        before = self.dev_clear_pairs(teacher)
        history = train_teacher(teacher, groups, config, self.root / "teacher-checkpoint")
        after = self.dev_clear_pairs(teacher)
        log.info("teacher dev clear-pair accuracy: %.3f untrained -> %.3f trained", before, after)
        teacher.save(self.root / "teacher", {**self.manifest, "train_config": asdict(config), "groups": len(groups),
                                             "loss_history": history, "dev_clear_pair_acc_untrained": before,
                                             "dev_clear_pair_acc": after})

    def teacher_mix(self) -> None:
        """Score dev queries' BM25 top-N with the teacher; choose the BM25 mix weight on dev NDCG@10."""
        teacher = Teacher.load(self.root / "teacher")
        top = self.bm25_top()
        dev = label_candidates(teacher, self.texts, {q: top[q] for q in self.dev_q}, self.titles)
        dev.save(self.root / "dev_labels.npz")
        grades = {q: self.catalog.judgments_by_query()[q] for q in self.dev_q}
        by_query = dev.by_query()
        results = {}
        for mix in self.profile.mix_grid:
            run = {}
            for q, items in by_query.items():
                ids = list(items)
                t = minmax(np.array([items[p][1] for p in ids]))
                b = minmax(np.array([items[p][0] for p in ids]))
                run[q] = dict(zip(ids, ((1 - mix) * t + mix * b).tolist()))
            results[mix] = metrics.ranx_metrics(grades, run, {"ndcg@10": "ndcg@10"}, f"mix {mix}")["ndcg@10"]
        best = max(results, key=lambda m: (results[m], -m))
        teacher.config.bm25_mix = best
        teacher.save(self.root / "teacher", {**json.loads((self.root / "teacher" / "manifest.json").read_text()),
                                             "dev_ndcg@10_by_bm25_mix": results})
        log.info("teacher BM25 mix chosen on dev: %s (NDCG@10 %s)", best, results)

    def labels(self) -> None:
        """The distillation set: each train query's BM25 top-K plus its judged products."""
        teacher = Teacher.load(self.root / "teacher")
        top = self.bm25_top()
        grades = self.catalog.judgments_by_query()
        candidates = {}
        for q in self.train_q:
            items = dict(list(top[q].items())[: self.profile.label_k])
            for p in grades[q]:
                items.setdefault(p, top[q].get(p, 0.0))
            candidates[q] = items
        label_candidates(teacher, self.texts, candidates, self.titles).save(self.root / "train_labels.npz")

    def run(self, until: str | None = None) -> None:
        plan = [
            ("bm25", self.bm25),
            ("teacher", self.teacher),
            ("teacher_mix", self.teacher_mix),
            ("labels", self.labels),
        ]
        if until is not None and until not in dict(plan):
            raise ValueError(f"unknown stage {until!r}; stages: {', '.join(name for name, _ in plan)}")
        # A stage's digest chains the one before it: redoing a stage redoes everything after it.
        digest = _digest(asdict(self.profile), self.manifest)
        for name, fn in plan:
            digest = _digest(digest, name)
            log.info("stage %s", name)
            self.run_stage(name, digest, fn)
            if name == until:
                break
