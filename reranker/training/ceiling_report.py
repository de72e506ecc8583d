"""How much of the teacher's judgement a student of this design can carry, read from a trained run's
own files (`shopsearch ceiling`).

A student scores with BM25, the zero-shot cosine and the teacher-tuned query encoder's cosine, plus
its word (0-order) and graph (k-order) parts. Two figures bound what the first three can reach:
- how well the tuned query encoder orders each query's candidates as the teacher does (mean
  per-query Spearman), on the queries it was trained on against held-out dev queries: a gap says
  the encoder learned those queries more than the shop's notion of relevance;
- the best dev NDCG@10 of any linear blend of the three (min-max scaled per query, as the deployed
  teacher mixes), with the weights chosen on dev itself: an upper bound, optimistic by
  construction, for a student whose word and graph parts add nothing on held-out queries.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.metrics import per_query_spearman
from evaluation.ndcg import ndcg_at
from reranker.normalize import minmax

BLEND_FEATURES = ("BM25", "zero-shot cosine", "tuned cosine")
BLEND_GRID = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass(frozen=True)
class QueryGroup:
    """One query's candidates (ids), their feature columns by name ([n] each), the deployed teacher's
    score ([n]) and the query's human grades (possibly empty: unlabelled queries have none here)."""

    ids: list[str]
    features: dict[str, np.ndarray]
    teacher: np.ndarray
    grades: dict[str, float]


@dataclass(frozen=True)
class GroupFigures:
    name: str  # "train (labelled)", "unlabelled", "dev"
    queries: int
    spearman: dict[str, float]  # feature -> mean per-query Spearman with the deployed teacher
    ndcg: dict[str, float]  # ranker (feature or "teacher") -> mean NDCG@10 over the labelled candidates


@dataclass(frozen=True)
class Ceiling:
    groups: list[GroupFigures]
    blend_ndcg: float  # the best blend's dev NDCG@10
    blend_weights: tuple[float, ...]  # its weights, in BLEND_FEATURES order

    def lines(self) -> list[str]:
        out = []
        for g in self.groups:
            rho = ", ".join(f"{name} {value:.3f}" for name, value in g.spearman.items())
            ndcg = ", ".join(f"{name} {value:.4f}" for name, value in g.ndcg.items())
            out.append(f"{g.name} ({g.queries} queries): Spearman with the teacher: {rho}")
            out.append(f"  NDCG@10 over its labelled candidates: {ndcg}")
        dev = next((g for g in self.groups if g.name == "dev"), None)
        weights = ", ".join(f"{name} {w:g}" for name, w in zip(BLEND_FEATURES, self.blend_weights))
        line = f"best blend of {', '.join(BLEND_FEATURES)} on dev (weights chosen on dev): {self.blend_ndcg:.4f} ({weights})"
        if dev is not None and {"BM25", "teacher"} <= set(dev.ndcg):
            gain = dev.ndcg["teacher"] - dev.ndcg["BM25"]
            if gain > 0:
                line += f"; keeps {(self.blend_ndcg - dev.ndcg['BM25']) / gain:.0%} of the teacher's dev gain over BM25"
        out.append(line)
        return out


def mean_spearman(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean per-query Spearman correlation of (scores, reference) pairs; queries where it is
    undefined (a constant column, fewer than two candidates) are left out."""
    values = per_query_spearman(pairs)
    return float(np.mean(values)) if values else float("nan")


def mean_ndcg(groups: Sequence[QueryGroup], score_of) -> float:
    """Mean NDCG@10 over the groups with a positive grade, each ranked by `score_of(group)` (ties: list order)."""
    values = []
    for g in groups:
        value = ndcg_at([g.ids[i] for i in np.argsort(-score_of(g), kind="stable")], g.grades)
        if value is not None:
            values.append(value)
    return float(np.mean(values)) if values else float("nan")


def group_figures(name: str, groups: Sequence[QueryGroup]) -> GroupFigures:
    features = list(groups[0].features) if groups else []
    spearman = {f: mean_spearman([(g.features[f], g.teacher) for g in groups]) for f in features}
    ndcg = {f: mean_ndcg(groups, lambda g, f=f: g.features[f]) for f in features}
    ndcg["teacher"] = mean_ndcg(groups, lambda g: g.teacher)
    return GroupFigures(name, len(groups), spearman, {k: v for k, v in ndcg.items() if np.isfinite(v)})


def best_blend(groups: Sequence[QueryGroup], features: Sequence[str] = BLEND_FEATURES,
               grid: Sequence[float] = BLEND_GRID) -> tuple[float, tuple[float, ...]]:
    """The weights over `features` (each from `grid`, not all 0) whose blend of per-query min-max
    scaled columns has the best mean NDCG@10 on `groups`; ties go to the first found."""
    scaled = [(g, np.stack([minmax(np.asarray(g.features[f], dtype=np.float64)) for f in features])) for g in groups]
    columns = {id(g): c for g, c in scaled}
    best = (-1.0, ())
    for weights in itertools.product(grid, repeat=len(features)):
        if not any(weights):
            continue
        w = np.array(weights)
        value = mean_ndcg(groups, lambda g: w @ columns[id(g)])
        if value > best[0] + 1e-12:
            best = (value, tuple(weights))
    return best


def run_ceiling(run, limit: int = 800) -> Ceiling:
    """The figures for a trained run (a reranker.training.run.RunContext whose labels and query
    encoder stages are done): up to `limit` queries of each group, drawn in the run's order."""
    from indexer.embeddings import embed
    from reranker.training.errors import PipelineError
    from reranker.models.teacher import Teacher
    from reranker.training.labeling import LabeledPairs
    from reranker.training.student_data import mixed_targets

    layout = run.layout
    if run.tuned_encoder is None or not (layout.train_labels.is_file() and layout.dev_labels.is_file()):
        raise PipelineError(f"{run.root}: no labels or no tuned query encoder yet; run the pipeline through its "
                            "query_encoder stage first (on a profile with the query encoder)")
    config = Teacher.load_config(layout.teacher)
    train = LabeledPairs.load(layout.train_labels).by_query()
    dev = LabeledPairs.load(layout.dev_labels).by_query()
    graded = run.catalog.judgments_by_query()
    chosen = {"train (labelled)": [q for q in run.train_q if q in train][:limit],
              "unlabelled": [q for q in sorted(run.unlabeled) if q in train][:limit],
              "dev": [q for q in run.dev_q if q in dev][:limit]}
    labels = {q: (dev if name == "dev" else train)[q] for name, qs in chosen.items() for q in qs}
    items = run.item_vectors({p for candidates in labels.values() for p in candidates})
    ordered = [q for qs in chosen.values() for q in qs]
    tuned = dict(zip(ordered, embed(run.tuned_encoder, [run.texts[q] for q in ordered], progress=False)))
    targets = mixed_targets(labels, config.bm25_mix, config.cosine_mix)

    def group(q: str) -> QueryGroup:
        ids = list(labels[q])
        bm25, logits, cosine = (np.array([labels[q][p][k] for p in ids]) for k in range(3))
        features = {"BM25": bm25, "zero-shot cosine": cosine,
                    "tuned cosine": np.array([float(items[p] @ tuned[q]) for p in ids]), "cross-encoder": logits}
        return QueryGroup(ids, features, np.array([targets[q][p] for p in ids]), graded.get(q, {}))

    groups = {name: [group(q) for q in qs] for name, qs in chosen.items() if qs}
    figures = [group_figures(name, gs) for name, gs in groups.items()]
    value, weights = best_blend(groups.get("dev", []))
    return Ceiling(figures, value, weights)
