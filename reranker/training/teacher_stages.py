"""The pipeline's teacher stages: BM25's candidates, the cross-encoder fine-tune, its deployed mix
(and ONNX graph), and the labels the students distil from.

    bm25 -> teacher -> teacher_mix -> labels
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import asdict
from pathlib import Path

from common.artifacts import model_manifest
from evaluation import metrics
from evaluation.retrieval import bm25_top
from reranker.models.teacher import Teacher
from reranker.models.teacher_onnx import OnnxTeacher
from reranker.training.export import export_teacher
from reranker.training.int8_guard import GuardThresholds, guard_teacher
from reranker.training.labeling import label_candidates
from reranker.training.pseudo_queries import pseudo_queries
from reranker.training.run import RunContext, sample
from reranker.training.student_data import mixed_targets
from reranker.training.teacher_train import build_groups, train_teacher

log = logging.getLogger(__name__)


def bm25(ctx: RunContext) -> None:
    top = bm25_top(ctx.es, ctx.alias, ctx.texts, size=ctx.profile.bm25_depth)
    ctx.layout.bm25_top.write_text(json.dumps(top))


def dev_clear_pairs(ctx: RunContext, teacher: Teacher) -> float:
    """The teacher's accuracy on clear pairs of dev queries' judged products (held out)."""
    grades = {q: ctx.catalog.judgments_by_query()[q] for q in ctx.dev_q}
    scores = {}
    for q, items in grades.items():
        ids = list(items)
        scores[q] = dict(zip(ids, teacher.predict([ctx.texts[q]] * len(ids), [ctx.titles[p] for p in ids]).tolist()))
    return metrics.clear_pair_accuracy(grades, scores)[0]


def teacher(ctx: RunContext) -> None:
    config = ctx.profile.teacher
    if len(ctx.teacher_q) > len(ctx.train_q):  # more than the students': all of them (drawn in RunContext)
        config = dataclasses.replace(config, max_queries=len(ctx.teacher_q))
    groups = build_groups(ctx.catalog, ctx.teacher_q, ctx.bm25_top(), config)
    source = ctx.profile.teacher_from
    model = Teacher.load(Path(source)) if source else Teacher.from_base(seed=config.seed)
    before = dev_clear_pairs(ctx, model)
    history = train_teacher(model, groups, config, ctx.layout.teacher_checkpoint)
    after = dev_clear_pairs(ctx, model)
    log.info("teacher dev clear-pair accuracy: %.3f untrained -> %.3f trained", before, after)
    model.save(ctx.layout.teacher, {**ctx.manifest, "train_config": asdict(config), "groups": len(groups),
                                    "teacher_from": source,
                                    "loss_history": history, "dev_clear_pair_acc_untrained": before,
                                    "dev_clear_pair_acc": after})


def teacher_mix(ctx: RunContext) -> None:
    """Export the teacher to ONNX (fp32, int8) and score dev queries' BM25 top-N with it; choose
    how much BM25 and how much zero-shot bi-encoder cosine the deployed teacher mixes in, on dev
    NDCG@10; then the int8 guard picks the graph later stages score with (`RunContext.fast_teacher`)."""
    folder = ctx.layout.teacher
    model = Teacher.load(folder)
    export_teacher(model, folder)
    top = ctx.bm25_top()
    dev_top = {q: top[q] for q in ctx.dev_q}
    dev = label_candidates(OnnxTeacher.load(folder, "fp32"), ctx.texts, dev_top, ctx.titles,
                           ctx.query_vectors(ctx.dev_q),
                           ctx.item_vectors({p for items in dev_top.values() for p in items}))
    grades = {q: ctx.catalog.judgments_by_query()[q] for q in ctx.dev_q}
    by_query = dev.by_query()
    results = {}
    for bm25_mix in ctx.profile.mix_grid:
        for cosine_mix in ctx.profile.cosine_grid:
            if bm25_mix + cosine_mix > 0.9 + 1e-9:
                continue
            run = mixed_targets(by_query, bm25_mix, cosine_mix)
            results[(bm25_mix, cosine_mix)] = metrics.ranx_metrics(
                grades, run, {"ndcg@10": "ndcg@10"}, f"mix {bm25_mix} {cosine_mix}")["ndcg@10"]
    # ties go to the least mixing (the cross-encoder's own judgement)
    best = max(results, key=lambda m: (round(results[m], 6), -m[0] - m[1]))
    model.config.bm25_mix, model.config.cosine_mix = best
    table = {f"bm25 {a}, cosine {c}": value for (a, c), value in results.items()}
    log.info("teacher mix chosen on dev: BM25 %s, cosine %s (NDCG@10 %.4f)", *best, results[best])
    # int8 or fp32 for the later stages; the dev labels kept are the chosen graph's
    thresholds = GuardThresholds(ctx.profile.int8_max_ndcg_drop, ctx.profile.int8_min_spearman)
    dev, guard = guard_teacher(folder, dev, ctx.texts, ctx.titles, grades, best, thresholds)
    (log.info if guard.chosen == "int8" else log.warning)("teacher ONNX graph: %s (%s)", guard.chosen, guard.reason)
    dev.save(ctx.layout.dev_labels)
    model.save(folder, {**model_manifest(folder), "dev_ndcg@10_by_mix": table, "onnx_guard": asdict(guard)})


def labels(ctx: RunContext) -> None:
    """The distillation set: each train query's BM25 top-K plus its judged products."""
    model = ctx.fast_teacher()
    top = ctx.bm25_top()
    grades = ctx.catalog.judgments_by_query()
    candidates = {}
    for q in ctx.train_q:
        items = dict(list(top[q].items())[: ctx.profile.label_k])
        for p in grades[q]:
            items.setdefault(p, top[q].get(p, 0.0))
        candidates[q] = items
    ctx.pseudo = _add_unlabeled(ctx, pseudo_queries(ctx.catalog.products, ctx.profile.pseudo_queries, ctx.profile.seed),
                                ctx.profile.pseudo_k, ctx.layout.pseudo_queries, candidates)
    ctx.unlabeled = _add_unlabeled(ctx, _unlabeled_queries(ctx), ctx.profile.unlabeled_k, ctx.layout.unlabeled_queries,
                                   candidates)
    label_candidates(model, ctx.texts, candidates, ctx.titles, ctx.query_vectors(candidates),
                     ctx.item_vectors({p for items in candidates.values() for p in items})
                     ).save(ctx.layout.train_labels)


def _add_unlabeled(ctx: RunContext, queries: dict[str, str], k: int, path: Path,
                   candidates: dict[str, dict[str, float]]) -> dict[str, str]:
    """Queries without grades (id -> text) whose BM25 top-k holds two products or more: their
    top-k joins `candidates`, their texts the run's, and the kept ones are written to `path`."""
    top = bm25_top(ctx.es, ctx.alias, queries, size=k) if queries else {}
    kept = {q: text for q, text in queries.items() if len(top.get(q, {})) > 1}
    candidates.update({q: top[q] for q in kept})
    ctx.texts.update(kept)
    path.write_text(json.dumps(kept))
    return kept


def _unlabeled_queries(ctx: RunContext) -> dict[str, str]:
    """A seeded sample of train-split queries that neither the students' grades nor the teacher's
    training touched (dev and test are never among them), by id -> text."""
    taken = set(ctx.teacher_q)
    pool = [q for q in ctx.split.train if q not in taken and q in ctx.catalog.queries]
    chosen = sample(pool, ctx.profile.unlabeled_queries, ctx.profile.seed + 1) if ctx.profile.unlabeled_queries else []
    return {q: ctx.catalog.queries[q].text for q in chosen}
