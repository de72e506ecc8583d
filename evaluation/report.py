"""The evaluation tables, as printed and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evaluation.runner import EvalResult


def print_table(result: EvalResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(
        f"[bold]{result.dataset}[/bold], {result.side} queries of split {result.split_id}: "
        f"{result.evaluable} evaluated ({result.queries - result.evaluable} without any positive grade left out). "
        "NDCG uses linear gain (ranx ndcg); MRR and Recall count gain >= 1 as relevant."
    )
    for title, section in (
        (f"End to end: each ranker reorders BM25's top-{result.depth} over the whole catalog, "
         f"unjudged items = gain 0 (perfect reorder: NDCG@10 {result.ceiling_ndcg10:.4f})", "end_to_end"),
        ("Rerank-judged: each ranker orders the query's judged products only", "rerank_judged"),
    ):
        columns = list(getattr(result.rows[0], section))
        table = Table(title=title, title_justify="left")
        table.add_column("ranker")
        for column in columns:
            table.add_column(column, justify="right")
        if section == "end_to_end":
            table.add_column("ms/100 cand.", justify="right")
        for row in result.rows:
            values = getattr(row, section)
            cells = [f"{values[c]:.0f}" if c == "clear pairs" else f"{values[c]:.4f}" for c in columns]
            if section == "end_to_end":
                cells.append(f"{row.ms_per_100:.3f}")
            table.add_row(row.name, *cells)
        console.print(table)


def print_significance(tests: dict[str, dict[str, dict[str, float]]], console: Console | None = None) -> None:
    """p-values of paired t-tests; * marks p < 0.05."""
    console = console or Console()
    labels = sorted({label for row in tests.values() for versus in row.values() for label in versus})
    columns = sorted({versus for row in tests.values() for versus in row})
    table = Table(title="Paired t-test p-values per query (ranx compare); * = p < 0.05", title_justify="left")
    table.add_column("ranker")
    for versus in columns:
        for label in labels:
            table.add_column(f"{versus}: {label}", justify="right")
    for name, row in tests.items():
        cells = []
        for versus in columns:
            for label in labels:
                p = row.get(versus, {}).get(label)
                cells.append("-" if p is None else f"{p:.3g}{'*' if p < 0.05 else ''}")
        table.add_row(name, *cells)
    console.print(table)


def write_json(result: EvalResult, path: Path, extra: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**result.to_json(), **(extra or {})}, indent=2))


def print_speed(speed: dict[str, dict[str, float]], console: Console | None = None) -> None:
    """Scoring time per 100 candidates and the teacher's time over each model's, measured in one run."""
    console = console or Console()
    table = Table(title="Scoring time per 100 candidates (same run, same machine)", title_justify="left")
    for column in ("ranker", "ms, new query", "teacher / model", "ms, repeated query", "teacher / model"):
        table.add_column(column, justify="left" if column == "ranker" else "right")
    for name, v in speed.items():
        table.add_row(name, f"{v['ms_per_100_first']:.2f}", f"{v['teacher_over_model_first']:.0f}x",
                      f"{v['ms_per_100_repeat']:.2f}", f"{v['teacher_over_model_repeat']:.0f}x")
    console.print(table)
