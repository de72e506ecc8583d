"""The pipeline's checks: every trained model on dev against the free references (dev_check), then
on the test queries with significance and speed (evaluate). Test queries are touched here only.

    dev_check -> evaluate

Also here, for callers outside the stage table: the loop curve's student rankers
(student_rankers) and the upgrade's paired comparison with a served artifact (dev_head_to_head).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.artifacts import STUDENTS, ServingManifest, model_manifest
from evaluation.runner import EvalResult
from indexer.embeddings import load_bi_encoder
from reranker.graph.context import ContextBuilder
from reranker.models.berm import Berm
from reranker.serving.online import OnlineReranker
from reranker.training.run import RunContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """What the evaluate stage measured on the test queries (the CLI prints it; eval.json keeps it)."""

    result: EvalResult  # the table, both settings
    tests: dict[str, dict[str, dict[str, float]]]  # paired t-test p-values against BM25, the bi-encoder and the teacher
    speed: dict[str, dict[str, float]]  # scoring time per 100 candidates


@dataclass
class Rankers:
    """The rankers a check compares, by role; `all` in table order."""

    bm25: object
    bi_encoder: object  # the zero-shot bi-encoder's cosine
    teacher: object  # the deployed teacher (its ONNX graph, with its BM25 and cosine mix)
    students: list = field(default_factory=list)  # BERM (and its ablation), BERM-O, the tuned bi-encoder

    @property
    def all(self) -> list:
        return [self.bm25, self.bi_encoder, self.teacher, *self.students]


def rankers(ctx: RunContext, queries: list[str]) -> Rankers:
    """BM25, the zero-shot bi-encoder, the deployed teacher, BERM (and its ablation) and BERM-O."""
    from evaluation.rankers import BM25Ranker
    from reranker.training.rankers import (TUNED_BI_ENCODER, BiEncoderRanker, OnlineRanker, StudentRanker,
                                           TeacherRanker)

    encoder = load_bi_encoder()
    builder = _warm_context(ctx, queries, encoder)
    bi_encoder = BiEncoderRanker(encoder, ctx.item_store)
    found = Rankers(BM25Ranker(), bi_encoder, TeacherRanker(ctx.fast_teacher(), bi_encoder),
                    [StudentRanker("BERM", Berm.load(ctx.layout.berm), builder)])
    if ctx.layout.berm_no_k_order.is_dir() and ctx.profile.k_order_ablation:
        found.students.append(StudentRanker("BERM without k-order", Berm.load(ctx.layout.berm_no_k_order),
                                            builder))
    found.students.append(OnlineRanker(OnlineReranker.load(ctx.layout.serving)))
    if ctx.tuned_encoder is not None:  # the tuned query encoder alone, against the same item vectors
        found.students.append(BiEncoderRanker(ctx.tuned_encoder, ctx.item_store, name=TUNED_BI_ENCODER))
    return found


def _warm_context(ctx: RunContext, queries: list[str], encoder) -> ContextBuilder:
    """The whole graph's context builder, its neighbors of these queries' candidates sampled."""
    builder = ctx.context_builder(ctx.layout.graph, encoder)
    top = ctx.bm25_top()
    builder.sampler.warm_items(sorted({p for q in queries for p in top.get(q, {})}
                                      | {p for g in ctx.grades(queries).values() for p in g}), ctx.item_store)
    return builder


def student_rankers(ctx: RunContext, queries: list[str], label: str = "") -> list:
    """This run's BERM and BERM-O as rankers of these queries (named "BERM" and "BERM-O (ONNX)",
    plus `label`), without the teacher and the references `evaluate` adds."""
    from reranker.training.rankers import OnlineRanker, StudentRanker

    builder = _warm_context(ctx, queries, load_bi_encoder())
    return [StudentRanker("BERM" + label, Berm.load(ctx.layout.berm), builder),
            OnlineRanker(OnlineReranker.load(ctx.layout.serving), name="BERM-O (ONNX)" + label)]


def dev_head_to_head(ctx: RunContext, other: Path) -> tuple[float, float, float, int]:
    """This run's served model against another serving artifact on this run's dev queries (end-to-end
    NDCG@10, paired t-test): (ours, theirs, p, queries). Two runs' own dev checks are made on
    different dev samples, so their figures cannot be compared with each other (`shopsearch
    upgrade` hands this to roll_in_if_better as its judge)."""
    from evaluation.runner import evaluate_rankers
    from evaluation.significance import paired_tests
    from reranker.training.rankers import OnlineRanker

    ours, theirs = "candidate", "served"
    rankers = [OnlineRanker(OnlineReranker.load(ctx.layout.serving), name=ours),
               OnlineRanker(OnlineReranker.load(Path(other)), name=theirs)]
    result = evaluate_rankers(ctx.es, ctx.alias, ctx.catalog, ctx.dev_q, rankers, side="dev",
                              split_id=ctx.split.split_id, depth=ctx.profile.bm25_depth)
    ndcg = {row.name: row.end_to_end["ndcg@10"] for row in result.rows}
    p = paired_tests(result, [theirs])[ours][f"vs {theirs}"]["e2e ndcg@10"]
    return ndcg[ours], ndcg[theirs], p, len(ctx.dev_q)


def dev_check(ctx: RunContext) -> None:
    """Guard rail: every trained model against BM25 and the zero-shot bi-encoder on dev (end to end
    NDCG@10, paired t-test); the verdicts go to dev_check.json and the serving manifest."""
    from evaluation.runner import evaluate_rankers
    from evaluation.significance import paired_tests
    from reranker.training.verdicts import REFERENCES, dev_verdicts

    # the teacher's dev figures are teacher_mix's (it chose the deployed mix there); scoring dev
    # with it again would be most of this stage's time
    found = rankers(ctx, ctx.dev_q)
    result = evaluate_rankers(ctx.es, ctx.alias, ctx.catalog, ctx.dev_q,
                              [ranker for ranker in found.all if ranker is not found.teacher], side="dev",
                              split_id=ctx.split.split_id, depth=ctx.profile.bm25_depth)
    tests = paired_tests(result, list(REFERENCES))
    check = dev_verdicts({row.name: row.end_to_end["ndcg@10"] for row in result.rows}, tests)
    ctx.layout.dev_check.write_text(json.dumps(check, indent=1))
    # the one change to the artifact after its swap: the check needs the served artifact itself
    manifest = ServingManifest.read(ctx.layout.serving)
    manifest.dev_check = check
    manifest.write(ctx.layout.serving)
    for line in check["warnings"]:
        log.warning("dev check: %s", line)


def evaluate(ctx: RunContext) -> Evaluation:
    """Every model on the test queries, both settings, one table, significance, timings, JSON."""
    from evaluation.per_query import per_query_scores
    from evaluation.report import write_json
    from evaluation.runner import evaluate_rankers
    from evaluation.significance import paired_tests

    found = rankers(ctx, ctx.test_q)
    result = evaluate_rankers(ctx.es, ctx.alias, ctx.catalog, ctx.test_q, found.all, side="test",
                              split_id=ctx.split.split_id, depth=ctx.profile.bm25_depth)
    # the ablation gets its own test: does the k-order context help BERM on these queries?
    names = {row.name for row in result.rows}
    pairs = [("BERM", "BERM without k-order")] if "BERM without k-order" in names else []
    tests = paired_tests(result, [found.bm25.name, found.bi_encoder.name, found.teacher.name], pairs=pairs)
    timed = speed(ctx, result, found.all, found.teacher.name)
    stages = ctx.recorded_stages()
    dev_check = ctx.layout.dev_check
    extra = {**ctx.manifest, "significance_p_values": tests, "speed": timed,
             "stage_seconds": {k: v["seconds"] for k, v in stages.items()},
             "dev_spearman_with_teacher": {name: model_manifest(ctx.layout.student(name)).get("dev_spearman_with_teacher")
                                           for name in STUDENTS},
             "dev_check": json.loads(dev_check.read_text()) if dev_check.exists() else None,
             "per_query": per_query_scores(result, ctx.texts)}  # for the report's intervals and wins
    write_json(result, ctx.layout.eval, extra)
    log.info("wrote %s", ctx.layout.eval)
    return Evaluation(result, tests, timed)


def speed(ctx: RunContext, result, rankers: list, teacher_name: str) -> dict[str, dict[str, float]]:
    """ms per 100 candidates: first sight of each query (from the evaluation run) and a repeat
    of the same query (a served model's query cache is warm; the others do the same work again)."""
    top = ctx.bm25_top()
    sample = [q for q in ctx.test_q if len(top.get(q, {})) >= 100][: ctx.profile.speed_queries]
    repeat = {}
    for ranker in rankers:
        seconds = 0.0
        for q in sample:
            products = [ctx.catalog.products[p] for p in list(top[q])[:100]]
            bm25 = list(top[q].values())[:100]
            ranker.score(ctx.texts[q], products, bm25)  # first sight
            began = time.perf_counter()
            ranker.score(ctx.texts[q], products, bm25)
            seconds += time.perf_counter() - began
        repeat[ranker.name] = 1000.0 * seconds / max(1, len(sample))
    first = {row.name: row.ms_per_100 for row in result.rows}
    return {name: {"ms_per_100_first": first[name], "ms_per_100_repeat": repeat[name],
                   "teacher_over_model_first": first[teacher_name] / first[name],
                   "teacher_over_model_repeat": repeat[teacher_name] / repeat[name]} for name in first}
