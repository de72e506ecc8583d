"""Per-query metric values of an evaluation, for confidence intervals and win / tie / loss counts.

The means of these values are the table's figures (same ranx metrics, same evaluable queries), so
a report built from them agrees with `eval.json`'s rows.
"""

from __future__ import annotations

from ranx import evaluate

from evaluation import metrics
from evaluation.runner import EvalResult

# label -> ranx metric, per setting: the figures the report shows per query
PER_QUERY_METRICS = {"ndcg@10": "ndcg@10", "mrr@10": metrics.END_TO_END_METRICS["mrr@10"]}


def per_query_scores(result: EvalResult, query_texts: dict[str, str] | None = None) -> dict:
    """{"queries": {id: text}, "end_to_end" | "rerank_judged": {ranker: {label: {id: value}}}}
    over the evaluable queries (those with a positive grade), rounded to 6 places."""
    queries = metrics.evaluable_queries(result.grades)
    qrels = metrics.to_qrels(result.grades, queries)
    out: dict = {"queries": {q: (query_texts or {}).get(q, q) for q in queries}}
    for setting in ("end_to_end", "rerank_judged"):
        out[setting] = {}
        for row in result.rows:
            scores = row.e2e_scores if setting == "end_to_end" else row.judged_scores
            run = metrics.to_run(scores, queries, row.name)
            evaluate(qrels, run, list(PER_QUERY_METRICS.values()), return_mean=False)
            # ranx keeps each query's value on the run, by query id
            out[setting][row.name] = {label: {q: round(float(run.scores[metric][q]), 6) for q in queries}
                                      for label, metric in PER_QUERY_METRICS.items()}
    return out
