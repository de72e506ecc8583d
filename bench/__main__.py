"""`python -m bench`: benchmarks that print figures and ratios measured in one run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from searchstack.cli import Format, one_line_errors
from searchstack.settings import load_settings

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()


@app.callback()
def main() -> None:
    """Benchmarks; each prints a table and can write JSON."""


@app.command()
@one_line_errors
def indexing(
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.home_depot,
    path: Annotated[Optional[Path], typer.Option(help="Catalog path (defaults as in `shopsearch index`).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
    es_url: Annotated[Optional[str], typer.Option("--es-url")] = None,
) -> None:
    """Indexing throughput (products/s) for the full catalog, and its ratio to a plain bulk load."""
    from bench.indexing import as_dict, bench_indexing
    from indexer.bulk_index import connect
    from searchstack.cli import read_catalog

    settings = load_settings(es_url=es_url)
    began = time.perf_counter()
    catalog = read_catalog(settings, fmt, path)
    read_s = time.perf_counter() - began
    result = bench_indexing(connect(settings.resolved_es_url), catalog, read_s, settings.bulk_chunk_size)
    table = Table(title=f"Indexing {result.products:,} products ({fmt.value})", title_justify="left")
    for column in ("stage", "seconds", "products/s"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    table.add_row("read catalog", f"{result.read_s:.2f}", f"{result.read_products_per_s:,.0f}")
    table.add_row("baseline: plain bulk, standard analyzer", f"{result.baseline_s:.2f}", f"{result.baseline_products_per_s:,.0f}")
    table.add_row("shopsearch index --rebuild (hunspell, alias, count check)", f"{result.project_s:.2f}", f"{result.project_products_per_s:,.0f}")
    console.print(table)
    console.print(f"project / baseline throughput ratio: {result.project_vs_baseline:.2f}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(as_dict(result), indent=2))
        console.print(f"wrote {json_path}")


app()
