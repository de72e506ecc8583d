"""Paired significance tests between evaluation rows, through ranx `compare` (paired Student's t)."""

from __future__ import annotations

from ranx import compare

from evaluation import metrics
from evaluation.runner import EvalResult

# (setting, label, ranx metric): the rows' per-query scores are compared on these.
TESTED = (
    ("end_to_end", "e2e ndcg@10", "ndcg@10"),
    ("end_to_end", "e2e mrr@10", metrics.END_TO_END_METRICS["mrr@10"]),
    ("rerank_judged", "judged ndcg@10", "ndcg@10"),
)


def paired_tests(
    result: EvalResult, baselines: list[str], pairs: list[tuple[str, str]] = (), stat_test: str = "student"
) -> dict[str, dict[str, dict[str, float]]]:
    """p-values: row name -> "vs <baseline>" -> metric label -> p. Every row is tested against each
    baseline (not itself); `pairs` add single (row, other row) tests, such as a model and its ablation."""
    queries = metrics.evaluable_queries(result.grades)
    qrels = metrics.to_qrels(result.grades, queries)
    out: dict[str, dict[str, dict[str, float]]] = {row.name: {} for row in result.rows}
    for setting in ("end_to_end", "rerank_judged"):
        runs = [
            metrics.to_run(row.e2e_scores if setting == "end_to_end" else row.judged_scores, queries, row.name)
            for row in result.rows
        ]
        tested = [(label, metric) for s, label, metric in TESTED if s == setting]
        report = compare(qrels, runs, metrics=[m for _, m in tested], stat_test=stat_test, max_p=0.05).to_dict()
        wanted = [(row.name, base) for row in result.rows for base in baselines if base != row.name] + list(pairs)
        for name, base in wanted:
            for label, metric in tested:
                out[name].setdefault(f"vs {base}", {})[label] = float(report[name]["comparisons"][base][metric])
    return out
