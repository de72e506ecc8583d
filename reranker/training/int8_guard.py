"""The int8 guard: the teacher's int8 graph is used only where it ranks dev as its float32 graph does.

Dynamic int8 quantisation of MiniLM cross-encoders usually costs nothing measurable, and sometimes
collapses. So the teacher_mix stage scores the dev queries' BM25 top-N with both graphs and keeps
int8 only when, on those pairs,
- the deployed teacher (the mix chosen on dev with the float32 logits) loses at most
  `max_ndcg_drop` NDCG@10 (linear gain, ranx `ndcg@10`) when it reads the int8 logits, and
- the mean per-query Spearman correlation of the int8 logits with the float32 ones is at least
  `min_spearman` (queries whose logits are constant in either graph are left out),
else the float32 graph, and the record says why. The thresholds are profile settings
(reranker/training/pipeline.py: `int8_max_ndcg_drop`, `int8_min_spearman`).
The record is the teacher folder's `onnx.json`, which `OnnxTeacher.load` reads.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from evaluation import metrics
from reranker.models.teacher_onnx import CHOICE_FILE, GRAPHS, OnnxTeacher
from reranker.training.labeling import LabeledPairs
from reranker.training.student_data import mixed_targets

# query id -> product id -> (bm25, teacher logit, cosine), as LabeledPairs.by_query gives
ByQuery = dict[str, dict[str, tuple[float, float, float]]]


@dataclass(frozen=True)
class GuardThresholds:
    max_ndcg_drop: float  # the deployed teacher's dev NDCG@10, fp32 minus int8, at most this
    min_spearman: float  # mean per-query Spearman of int8 against fp32 logits, at least this


@dataclass(frozen=True)
class GuardReport:
    chosen: str  # "int8" or "fp32"
    reason: str
    ndcg_fp32: float
    ndcg_int8: float
    spearman_mean: float
    spearman_min: float
    queries: int  # queries with a defined Spearman correlation
    max_logit_shift: float  # largest |int8 - fp32| over all pairs
    bm25_mix: float
    cosine_mix: float
    max_ndcg_drop: float
    min_spearman: float


def per_query_spearman(fp32: ByQuery, int8: ByQuery) -> list[float]:
    """Spearman correlation of the two graphs' logits within each query (undefined ones left out)."""
    return metrics.per_query_spearman(([items[p][1] for p in items], [int8[q][p][1] for p in items])
                                      for q, items in fp32.items())


def decide(ndcg_fp32: float, ndcg_int8: float, spearmans: list[float], thresholds: GuardThresholds) -> tuple[str, str]:
    """("int8" or "fp32", why) from the two deployed NDCG@10s and the per-query Spearmans."""
    drop = ndcg_fp32 - ndcg_int8
    mean = float(np.mean(spearmans)) if spearmans else math.nan
    if not spearmans:
        return "fp32", "no dev query has two distinct logits in both graphs: int8 cannot be checked"
    if not drop <= thresholds.max_ndcg_drop:
        return "fp32", f"int8 costs the deployed teacher {drop:.4f} dev NDCG@10 (> {thresholds.max_ndcg_drop})"
    if not mean >= thresholds.min_spearman:
        return "fp32", f"int8 logits' mean per-query Spearman with fp32 is {mean:.4f} (< {thresholds.min_spearman})"
    return "int8", (f"int8 within the guard: dev NDCG@10 change {-drop:+.4f} (allowed -{thresholds.max_ndcg_drop}), "
                    f"mean per-query Spearman {mean:.4f} (>= {thresholds.min_spearman})")


def compare(grades: dict[str, dict[str, float]], fp32: ByQuery, int8: ByQuery, bm25_mix: float, cosine_mix: float,
            thresholds: GuardThresholds) -> GuardReport:
    """The guard on one set of pairs scored by both graphs (same queries, same products)."""
    ndcg = {}
    for name, by_query in (("fp32", fp32), ("int8", int8)):
        run = mixed_targets(by_query, bm25_mix, cosine_mix)
        ndcg[name] = metrics.ranx_metrics(grades, run, {"ndcg@10": "ndcg@10"}, f"teacher {name}")["ndcg@10"]
    rhos = per_query_spearman(fp32, int8)
    shift = max((abs(items[p][1] - int8[q][p][1]) for q, items in fp32.items() for p in items), default=0.0)
    chosen, reason = decide(ndcg["fp32"], ndcg["int8"], rhos, thresholds)
    return GuardReport(chosen, reason, float(ndcg["fp32"]), float(ndcg["int8"]),
                       float(np.mean(rhos)) if rhos else math.nan, float(min(rhos)) if rhos else math.nan, len(rhos),
                       float(shift), bm25_mix, cosine_mix, thresholds.max_ndcg_drop, thresholds.min_spearman)


def write_choice(folder: Path, report: GuardReport) -> Path:
    """The teacher folder's `onnx.json`: the chosen graph and the figures that chose it."""
    path = Path(folder) / CHOICE_FILE
    path.write_text(json.dumps({**asdict(report), "graph": GRAPHS[report.chosen]}, indent=1))
    return path


def guard_teacher(folder: Path, dev: LabeledPairs, texts: dict[str, str], titles: dict[str, str],
                  grades: dict[str, dict[str, float]], mix: tuple[float, float], thresholds: GuardThresholds
                  ) -> tuple[LabeledPairs, GuardReport]:
    """Score `dev` (pairs labelled through the teacher folder's fp32 graph) with its int8 graph, run
    the guard at the deployed mix (bm25_mix, cosine_mix), record the choice in `onnx.json`.
    Returns the chosen graph's dev labels and the report."""
    int8 = OnnxTeacher.load(folder, "int8")
    logits = int8.predict([texts[q] for q in dev.query_ids.tolist()], [titles[p] for p in dev.product_ids.tolist()])
    int8_dev = dataclasses.replace(dev, teacher=logits)
    report = compare(grades, dev.by_query(), int8_dev.by_query(), *mix, thresholds)
    write_choice(folder, report)
    return (int8_dev if report.chosen == "int8" else dev), report
