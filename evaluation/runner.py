"""Run rankers over held-out queries in the two settings and collect the metrics.

- end to end: each ranker reorders BM25's top-`depth` over the whole catalog; unjudged items
  have gain 0. Reported: NDCG@10, MRR@10, Recall@`depth`, judged@10 and condensed NDCG@10.
- rerank-judged: each ranker orders the query's judged products only. Reported: NDCG@10, MRR@10
  and the accuracy on clear pairs (grades >= 1.0 apart), since grades are noisy rater means.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from elasticsearch import Elasticsearch
from tqdm import tqdm

from evaluation import metrics
from evaluation.rankers import Ranker
from evaluation.retrieval import bm25_for_products, bm25_top
from indexer.records import Catalog


@dataclass
class RankerResult:
    name: str
    end_to_end: dict[str, float]
    rerank_judged: dict[str, float]
    ms_per_100: float
    # Per-query scores, kept for significance tests between rows.
    e2e_scores: metrics.Scores = field(default_factory=dict, repr=False)
    judged_scores: metrics.Scores = field(default_factory=dict, repr=False)


@dataclass
class EvalResult:
    dataset: str
    side: str
    split_id: str
    queries: int
    evaluable: int
    depth: int
    ceiling_ndcg10: float
    rows: list[RankerResult]
    grades: metrics.Grades = field(repr=False, default_factory=dict)

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "split": {"side": self.side, "split_id": self.split_id},
            "queries": self.queries,
            "evaluable_queries": self.evaluable,
            "excluded_queries_without_positive_gain": self.queries - self.evaluable,
            "depth": self.depth,
            "conventions": {
                "ndcg": "ranx ndcg (Jarvelin-Kekalainen, linear gain)",
                "binary_relevance": f"gain >= {metrics.RELEVANT_GAIN}",
                "unjudged_items": "gain 0 (condensed NDCG drops them before the cut)",
                "clear_pairs": f"same query, gains >= {metrics.CLEAR_PAIR_GAP} apart; ties count 1/2",
            },
            "end_to_end_ceiling_ndcg@10": self.ceiling_ndcg10,
            "rows": [
                {"name": r.name, "end_to_end": r.end_to_end, "rerank_judged": r.rerank_judged, "ms_per_100": r.ms_per_100}
                for r in self.rows
            ],
        }


def _score_lists(ranker: Ranker, catalog: Catalog, texts: dict[str, str], candidates: metrics.Scores, desc: str):
    scores: metrics.Scores = {}
    seconds, scored = 0.0, 0
    for q, bm25 in tqdm(candidates.items(), desc=desc, unit="query", leave=False):
        ids = list(bm25)
        products = [catalog.products[p] for p in ids]
        began = time.perf_counter()
        values = ranker.score(texts[q], products, [bm25[p] for p in ids])
        seconds += time.perf_counter() - began
        scored += len(ids)
        if len(values) != len(ids):
            raise ValueError(f"{ranker.name} returned {len(values)} scores for {len(ids)} candidates")
        scores[q] = dict(zip(ids, map(float, values)))
    return scores, (1000.0 * seconds * 100 / scored if scored else float("nan"))


def evaluate_rankers(
    es: Elasticsearch,
    alias: str,
    catalog: Catalog,
    query_ids: list[str],
    rankers: list[Ranker],
    *,
    side: str = "test",
    split_id: str = "",
    depth: int,
) -> EvalResult:
    all_grades = catalog.judgments_by_query()
    grades = {q: all_grades[q] for q in query_ids if q in all_grades}
    texts = {q: catalog.queries[q].text for q in grades}
    evaluable = metrics.evaluable_queries(grades)
    e2e_metrics = {**metrics.END_TO_END_METRICS}
    e2e_metrics[f"recall@{depth}"] = e2e_metrics.pop("recall@100").replace("@100", f"@{depth}")

    top = bm25_top(es, alias, texts, size=depth)
    judged = bm25_for_products(es, alias, texts, grades)
    ceiling = {q: {p: grades[q].get(p, 0.0) for p in top[q]} for q in grades}
    rows = []
    for ranker in rankers:
        e2e, ms_e2e = _score_lists(ranker, catalog, texts, top, f"{ranker.name}: end to end")
        rj, _ = _score_lists(ranker, catalog, texts, judged, f"{ranker.name}: judged")
        end_to_end = metrics.ranx_metrics(grades, e2e, e2e_metrics, ranker.name)
        end_to_end["condensed ndcg@10"] = metrics.ranx_metrics(
            grades, metrics.condensed(grades, e2e), {"ndcg@10": "ndcg@10"}, ranker.name
        )["ndcg@10"]
        end_to_end["judged@10"] = metrics.judged_at(grades, e2e, 10)
        rerank = metrics.ranx_metrics(grades, rj, metrics.RERANK_METRICS, ranker.name)
        rerank["clear-pair acc"], rerank["clear pairs"] = metrics.clear_pair_accuracy(grades, rj)
        rows.append(RankerResult(ranker.name, end_to_end, rerank, ms_e2e, e2e, rj))
    ceiling_ndcg = metrics.ranx_metrics(grades, ceiling, {"ndcg@10": "ndcg@10"}, "ceiling")["ndcg@10"]
    return EvalResult(catalog.name, side, split_id, len(grades), len(evaluable), depth, ceiling_ndcg, rows, grades)
