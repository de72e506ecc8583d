"""The pipeline's student stages: the teacher-distilled query encoder, the click graph and
vocabulary, the FAISS stores, and the students, each distilled through one `_distil`.

    query_encoder -> graph -> faiss -> berm -> berm_no_k_order -> berm_o (+ the serving artifact)
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from common.artifacts import RunLayout, ServingManifest
from common.results import Candidate
from indexer.embeddings import DIM, embed, load_bi_encoder
from indexer.faiss_store import VectorStore
from indexer.graph import ClickGraph, graph_from_logs
from reranker.graph.context import ContextBuilder
from reranker.models.berm import Berm, BermConfig
from reranker.models.berm_o import BermO, BermOConfig
from reranker.models.teacher import Teacher
from reranker.serving.online import OnlineReranker
from reranker.text import Vocab
from reranker.training.artifact import build_artifact
from reranker.training.distill import DistillConfig, Trained, train_student
from reranker.training.labeling import LabeledPairs
from reranker.training.linear_start import linear_start
from reranker.training.query_encoder import QueryEncoderConfig, QueryGroup, save_query_encoder, train_query_encoder
from reranker.training.run import RunContext
from reranker.training.student_data import StudentGroups, fold_of, graph_edges, mixed_targets
from reranker.training.word_vectors import start_word_vectors

log = logging.getLogger(__name__)

Scorer = Callable[[str, list[str], list[float]], np.ndarray]  # (query text, item ids, BM25) -> scores


# -- the teacher-distilled query encoder -------------------------------------------------------------
def query_encoder(ctx: RunContext) -> None:
    """Fine-tune the bi-encoder's query side on the deployed teacher's scores (train labels), early
    stopped on dev; item vectors stay the catalog's zero-shot ones (reranker/training/query_encoder.py)."""
    folder = ctx.layout.query_encoder
    shutil.rmtree(folder, ignore_errors=True)
    if not ctx.profile.query_encoder:
        return
    config = Teacher.load_config(ctx.layout.teacher)
    train = LabeledPairs.load(ctx.layout.train_labels).by_query()
    dev = LabeledPairs.load(ctx.layout.dev_labels).by_query()
    items = ctx.item_vectors({p for labels in (train, dev) for candidates in labels.values() for p in candidates})

    def groups(labels) -> list[QueryGroup]:
        targets = mixed_targets(labels, config.bm25_mix, config.cosine_mix)
        return [QueryGroup(ctx.texts[q], np.stack([items[p] for p in targets[q]]),
                           np.fromiter(targets[q].values(), np.float32)) for q in sorted(targets)]

    qe_config = QueryEncoderConfig(epochs=ctx.profile.query_encoder_epochs, seed=ctx.profile.seed)
    torch.manual_seed(qe_config.seed)
    tuned, result = train_query_encoder(ctx.bi_encoder, groups(train), groups(dev), qe_config)
    save_query_encoder(tuned, folder)
    (folder / "query_encoder_manifest.json").write_text(json.dumps(
        {**ctx.manifest, "model": "query_encoder", "config": asdict(qe_config), **asdict(result)}, indent=1))
    log.info("query encoder: best epoch %d, dev KL %.4f (zero-shot %.4f)", result.best_epoch,
             min(result.dev_history), result.dev_history[0])


# -- the click graph, the vocabulary and the stores --------------------------------------------------
def graph(ctx: RunContext) -> None:
    """The click graph of train queries (whole, and one per fold) and the vocabulary.

    Teacher-scored impressions, with the logged pairs' edges in their place where the shop has
    search logs: the profile's `graph_file` (a graph written by `shopsearch logs export --graph`,
    corrected for position bias) or else the catalog's logs table (smoothed CTR). What the graph
    was built from goes to graph_source.json and every student's manifest."""
    from indexer.click_logs import with_teacher_edges

    labels = LabeledPairs.load(ctx.layout.train_labels)
    judged = {q: set(items) for q, items in ctx.grades(ctx.train_q).items()}
    confident = ctx.profile.confident_edge
    source = ("logs export " + str(ctx.profile.graph_file) if ctx.profile.graph_file
              else "catalog logs" if ctx.catalog.logs else None)
    exported = ClickGraph.load(Path(ctx.profile.graph_file)) if ctx.profile.graph_file else None

    def logged(queries: set[str]) -> ClickGraph | None:
        if exported is not None:
            return ClickGraph.from_edges([(q, p, w) for q, p, w in exported.edges() if q in queries])
        if ctx.catalog.logs:
            return graph_from_logs([e for e in ctx.catalog.logs if e.query_id in queries])
        return None

    def build(queries: set[str]) -> tuple[ClickGraph, int]:
        teacher = ClickGraph.from_edges(graph_edges(labels, judged, confident, queries))
        logs = logged(queries)
        return (teacher, 0) if logs is None else (with_teacher_edges(logs, teacher), logs.num_edges)

    whole, from_logs = build(set(ctx.train_q))
    whole.save(ctx.layout.graph)
    for fold in (0, 1):
        build({q for q in ctx.train_q if fold_of(q) != fold})[0].save(ctx.layout.graph_fold(fold))
    ctx.layout.graph_source.write_text(json.dumps({
        "built_from": "teacher-scored impressions" + (f" + {source}" if source else ""),
        "edges": whole.num_edges, "edges_from_logs": from_logs, "edges_from_teacher": whole.num_edges - from_logs},
        indent=1))
    Vocab.build([*ctx.titles.values(), *(ctx.texts[q] for q in ctx.train_q)]).save(ctx.layout.vocab)


def faiss(ctx: RunContext) -> None:
    """Bi-encoder vectors of the products and of the logged (train) queries, as FAISS stores."""
    if ctx.profile.all_products:
        products = sorted(ctx.catalog.products)
    else:  # every product some query of the profile retrieves or has judged
        top = ctx.bm25_top()
        wanted = {p for q in ctx.train_q + ctx.dev_q + ctx.test_q for p in top[q]}
        wanted |= {p for g in ctx.grades(ctx.dev_q + ctx.test_q).values() for p in g}
        wanted |= set(LabeledPairs.load(ctx.layout.train_labels).product_ids.tolist())
        products = sorted(wanted)
    vectors = ctx.item_vectors(products)
    stacked = np.stack([vectors[p] for p in products]) if products else np.zeros((0, DIM), np.float32)
    VectorStore.build(products, stacked).save(ctx.root, RunLayout.ITEM_STORE)
    query_vectors = ctx.query_vectors(ctx.train_q)
    VectorStore.build(ctx.train_q, np.stack([query_vectors[q] for q in ctx.train_q])).save(ctx.root, RunLayout.QUERY_STORE)


# -- the students ------------------------------------------------------------------------------------
def berm(ctx: RunContext) -> None:
    student(ctx, "berm", use_k_order=True)


def berm_no_k_order(ctx: RunContext) -> None:
    student(ctx, "berm_no_k_order", use_k_order=False)


def student(ctx: RunContext, name: str, use_k_order: bool) -> None:
    """BERM (or its no-k-order ablation) distilled from the deployed teacher's scores plus the grades."""
    vocab = Vocab.load(ctx.layout.vocab)
    model = Berm(BermConfig(vocab_size=len(vocab), use_k_order=use_k_order, use_cosine=ctx.profile.use_cosine,
                            use_tuned_query=ctx.profile.query_encoder, word_init=ctx.profile.word_init))
    done = _distil(ctx, model, vocab)
    log.info("%s: dev Spearman with the teacher %.3f", name, done.agreement)
    model.save(ctx.layout.student(name), done.record, vocab)


def berm_o(ctx: RunContext) -> None:
    """BERM-O distilled from BERM's scores, then the serving artifact (ONNX + precomputed contexts)."""
    vocab = Vocab.load(ctx.layout.vocab)
    teacher_model = Berm.load(ctx.layout.berm)

    def berm_scores(group):
        with torch.inference_mode():
            return teacher_model(group)["score"]

    model = BermO(BermOConfig(vocab_size=len(vocab), use_cosine=ctx.profile.use_cosine,
                              use_tuned_query=ctx.profile.query_encoder, word_init=ctx.profile.word_init))
    done = _distil(ctx, model, vocab, berm_scores, hard_label_weight=0.0)
    model.save(ctx.layout.berm_o, done.record, vocab)

    def gap(built: Path) -> dict:  # on the built artifact, before the swap: serving/ changes once
        return {"onnx_vs_torch_max_abs_diff": _onnx_gap(ctx, built, done.scorer)}

    build_artifact(ctx.layout.serving, model, vocab, done.builder.sampler.graph, ctx.query_store, ctx.item_store,
                   ctx.titles, query_texts={q: ctx.texts[q] for q in ctx.train_q}, per_path=ctx.profile.per_path,
                   seed=ctx.profile.seed, extra={**done.record, "trained_depth": ctx.profile.label_k},
                   bi_encoder=done.builder.bi_encoder, tuned_encoder=ctx.tuned_encoder, check=gap)
    log.info("BERM-O: dev Spearman with the teacher %.3f; ONNX vs torch max |diff| %.2e", done.agreement,
             ServingManifest.read(ctx.layout.serving).onnx_vs_torch_max_abs_diff)


def _onnx_gap(ctx: RunContext, folder: Path, scorer: Scorer) -> float:
    """The ONNX path against the torch path on held-out queries: same inputs, same scores (the
    largest absolute difference over 20 dev queries' candidates)."""
    online = OnlineReranker.load(folder)
    dev = LabeledPairs.load(ctx.layout.dev_labels).by_query()
    gap = 0.0
    for q in list(dev)[:20]:
        ids = list(dev[q])
        bm25 = [dev[q][p][0] for p in ids]
        out = online.rerank(ctx.texts[q], [Candidate(p, b, i + 1, ctx.titles[p]) for i, (p, b) in enumerate(zip(ids, bm25))])
        gap = max(gap, float(np.abs(np.array([s.score for s in out.scored]) - scorer(ctx.texts[q], ids, bm25)).max()))
    return gap


@dataclass
class Distilled:
    """A student after `_distil`: its manifest record, and how it scores (for checks)."""

    record: dict  # the run's identity, the graph's source, the distillation config and training record, agreement
    agreement: float  # mean per-query Spearman with the deployed teacher on dev
    builder: ContextBuilder  # over the whole click graph, with the zero-shot bi-encoder
    scorer: Scorer


def _distil(ctx: RunContext, model, vocab: Vocab, target_of=None, **config: object) -> Distilled:
    """Train a student from its MiniLM word vectors (word_vectors.py) on the train groups (targets:
    the deployed teacher's scores, or `target_of(group)`): from its linear start
    (reranker/training/linear_start.py) when the profile says so, keeping the epoch with the best dev
    NDCG@10 when it says so; then its agreement with the teacher on dev. `config`: DistillConfig
    fields beyond the profile's."""
    start_word_vectors(model, vocab, cache=ctx.layout.word_vectors)
    distill_config = DistillConfig(epochs=ctx.profile.student_epochs, seed=ctx.profile.seed, **config,
                                   listwise_weight=ctx.profile.listwise_weight,
                                   listwise_temperature=ctx.profile.listwise_temperature)
    torch.manual_seed(distill_config.seed)
    groups = _train_groups(ctx, target_of)
    start = linear_start(model, groups) if ctx.profile.linear_start else None
    select = _dev_ndcg_scorer(ctx) if ctx.profile.select_epoch else None
    trained = train_student(model, groups, distill_config, select=select)
    builder = ctx.context_builder(ctx.layout.graph, load_bi_encoder())

    def scorer(text, ids, bm25):
        with torch.inference_mode():
            return model(builder.build(text, None, ids, bm25))["score"].numpy()

    agreement = _dev_agreement(ctx, scorer, lambda ids: builder.sampler.warm_items(ids, ctx.item_store))
    record = {**ctx.manifest, "graph": ctx.graph_source(), "distill_config": asdict(distill_config),
              **_training_record(trained, start), "dev_spearman_with_teacher": agreement}
    return Distilled(record, agreement, builder, scorer)


def _training_record(trained: Trained, start: list[float] | None) -> dict:
    """The manifest's account of a student's training."""
    record = {"loss_history": trained.history, "linear_start": start}
    if trained.epoch is not None:
        record |= {"dev_ndcg@10_by_epoch": trained.scores, "epoch_kept": trained.epoch}
    return record


def _train_groups(ctx: RunContext, target_of=None) -> StudentGroups:
    labels = LabeledPairs.load(ctx.layout.train_labels).by_query()
    config = Teacher.load_config(ctx.layout.teacher)
    # pseudo- and unlabeled queries are not in the query store: like test queries, they are embedded
    extra = ctx.extra_queries()
    encoder = load_bi_encoder() if extra else None
    folds = [ctx.context_builder(ctx.layout.graph_fold(fold), encoder) for fold in (0, 1)]
    if extra:
        texts = sorted(set(extra.values()))
        vectors = dict(zip(texts, embed(encoder, texts, ctx.profile.embed_batch_size, progress=False)))
        for builder in folds:
            builder.remember_query_vectors(vectors)
    if ctx.tuned_encoder is not None:  # every training query's tuned vector, in one batch
        texts = sorted({ctx.texts[q] for q in ctx.train_q} | set(extra.values()))
        tuned = dict(zip(texts, embed(ctx.tuned_encoder, texts, ctx.profile.embed_batch_size, progress=False)))
        for builder in folds:
            builder.remember_tuned_vectors(tuned)
    bm25 = {q: {p: b for p, (b, _, _) in items.items()} for q, items in labels.items()}
    items = sorted({p for candidates in bm25.values() for p in candidates})
    for builder in folds:
        builder.sampler.warm_items(items, ctx.item_store)
    return StudentGroups(ctx.train_q + sorted(extra), ctx.texts, bm25, mixed_targets(labels, config.bm25_mix, config.cosine_mix),
                         ctx.grades(ctx.train_q),
                         lambda q: folds[fold_of(q)], target_of)


def _dev_agreement(ctx: RunContext, scorer: Scorer, warm) -> float:
    """Mean per-query Spearman correlation with the deployed teacher on dev's BM25 top-N (held out)."""
    from evaluation.metrics import per_query_spearman

    dev = LabeledPairs.load(ctx.layout.dev_labels).by_query()
    config = Teacher.load_config(ctx.layout.teacher)
    targets = mixed_targets(dev, config.bm25_mix, config.cosine_mix)
    warm(sorted({p for items in dev.values() for p in items}))
    rhos = per_query_spearman((scorer(ctx.texts[q], list(items), [items[p][0] for p in items]),
                               [targets[q][p] for p in items]) for q, items in dev.items())
    return float(np.mean(rhos)) if rhos else float("nan")


def _dev_ndcg_scorer(ctx: RunContext):
    """A function of a student: its NDCG@10 over the dev queries' labelled BM25 top-N (the dev
    grades; linear gain, unjudged = 0), the same groups every call."""
    from evaluation.ndcg import ndcg_at

    dev = LabeledPairs.load(ctx.layout.dev_labels).by_query()
    builder = ctx.context_builder(ctx.layout.graph, load_bi_encoder())
    builder.sampler.warm_items(sorted({p for items in dev.values() for p in items}), ctx.item_store)
    grades = ctx.grades(ctx.dev_q)
    groups = []
    for q, items in dev.items():
        if any(g > 0 for g in grades.get(q, {}).values()):
            ids = list(items)
            groups.append((ids, grades[q], builder.build(ctx.texts[q], None, ids, [items[p][0] for p in ids])))

    def dev_ndcg(model) -> float:
        with torch.inference_mode():
            values = [ndcg_at([ids[i] for i in np.argsort(-model(batch)["score"].numpy(), kind="stable")], graded)
                      for ids, graded, batch in groups]
        return float(np.mean(values)) if values else float("nan")

    return dev_ndcg
