"""`shopsearch`: run the local Elasticsearch node, index a catalog, split queries, evaluate, demo."""

from __future__ import annotations

import functools
import logging
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from elasticsearch import ApiError, TransportError
from rich.console import Console

from es_config.local_node import LocalNode, NodeError
from indexer.bulk_index import ClusterUnavailable, IndexingError, connect, index_catalog
from indexer.readers import load_catalog
from indexer.readers.wands import download as download_wands
from indexer.records import Catalog, CatalogError
from indexer.splits import QuerySplit, SplitError, load_split, save_split, split_path, split_queries
from searchstack.settings import Settings, load_settings

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
es_app = typer.Typer(help="The local Elasticsearch node (Elastic's distribution zip, no Docker).", no_args_is_help=True)
app.add_typer(es_app, name="es")
console = Console()
err_console = Console(stderr=True)

EXPECTED_ERRORS = (NodeError, CatalogError, ClusterUnavailable, IndexingError, SplitError, ApiError, TransportError)


class Format(str, Enum):
    home_depot = "home-depot"
    generic = "generic"
    wands = "wands"


def one_line_errors(func):
    """At the edge, a known failure becomes one line on stderr and exit code 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
        try:
            return func(*args, **kwargs)
        except EXPECTED_ERRORS as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            if isinstance(err, (ApiError, TransportError)):
                message = f"Elasticsearch request failed: {message}"
            err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as err:  # a bug, not a user error: still one line unless asked for more
            if os.environ.get("SHOPSEARCH_DEBUG"):
                raise
            err_console.print(
                f"[red]internal error:[/red] {type(err).__name__}: {err} (set SHOPSEARCH_DEBUG=1 for the traceback)",
                highlight=False, soft_wrap=True,
            )
            raise typer.Exit(2) from None

    return wrapper


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Catalog format.")]
PathOpt = Annotated[
    Optional[Path],
    typer.Option(help="Catalog path: home-depot train.csv, a generic-format folder, or the WANDS folder. "
                      "Defaults: SHOPSEARCH_HOME_DEPOT_PATH, SHOPSEARCH_WANDS_DIR (downloaded once)."),
]
UrlOpt = Annotated[Optional[str], typer.Option("--es-url", help="Use this cluster instead of the local node.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Stop at the first malformed row instead of skipping it.")]


def read_catalog(settings: Settings, fmt: Format, path: Path | None, strict: bool = False) -> Catalog:
    if path is None:
        if fmt is Format.generic:
            raise CatalogError("the generic format needs --path (a folder; see docs/catalog-format.md)")
        path = settings.home_depot_path if fmt is Format.home_depot else download_wands(settings.wands_dir)
    with console.status(f"reading {fmt.value} catalog from {path}"):
        catalog = load_catalog(fmt.value, path, strict=strict)
    console.print(
        f"read {len(catalog.products):,} products, {len(catalog.queries):,} queries, "
        f"{len(catalog.judgments):,} judgments, {len(catalog.logs):,} log lines from {path}"
    )
    if catalog.bad_rows:
        err_console.print(f"[yellow]skipped {len(catalog.bad_rows)} malformed row(s)[/yellow]; first: {catalog.bad_rows[0]}")
    return catalog


def current_split(settings: Settings, catalog: Catalog) -> QuerySplit:
    """The saved split for this dataset if it matches the data and seed; otherwise a new one."""
    path = split_path(settings.artifacts_dir, catalog.name)
    if path.exists():
        split = load_split(path)
        if (split.data_fingerprint, split.seed, split.dev_fraction, split.test_fraction) == (
            catalog.fingerprint(), settings.split_seed, settings.split_dev_fraction, settings.split_test_fraction
        ):
            return split
    split = split_queries(catalog, settings.split_seed, settings.split_dev_fraction, settings.split_test_fraction)
    save_split(split, settings.artifacts_dir)
    console.print(f"wrote split {split.split_id} to {path}")
    return split


# -- es ---------------------------------------------------------------------------------------------
PortOpt = Annotated[Optional[int], typer.Option(help="HTTP port (default: SHOPSEARCH_ES_PORT or 9200).")]


@es_app.command("start")
@one_line_errors
def es_start(port: PortOpt = None, heap: Annotated[Optional[str], typer.Option(help="JVM heap, e.g. 1g.")] = None) -> None:
    """Fetch (once), configure and start the node; waits until it is healthy."""
    node = LocalNode.from_settings(load_settings(es_port=port, es_heap=heap))
    with console.status(f"starting Elasticsearch on {node.url}"):
        result = node.start()
    if result.already_running:
        console.print(f"Elasticsearch is already running on {result.url}; nothing to do")
    else:
        console.print(f"Elasticsearch is up on {result.url} (started in {result.seconds:.1f} s)")


@es_app.command("stop")
@one_line_errors
def es_stop(port: PortOpt = None) -> None:
    """Stop the node started by `shopsearch es start`."""
    node = LocalNode.from_settings(load_settings(es_port=port))
    console.print("stopped" if node.stop() else f"no node of this project is running on port {node.port}")


@es_app.command("status")
@one_line_errors
def es_status(port: PortOpt = None) -> None:
    """Say whether the node runs, and its cluster health. Exit code 1 when it is not running."""
    status = LocalNode.from_settings(load_settings(es_port=port)).status()
    if not status.running:
        console.print(f"not running ({status.url})")
        raise typer.Exit(1)
    console.print(f"running on {status.url}, pid {status.pid}, health {status.health or 'not answering'}")


# -- index / split / eval -----------------------------------------------------------------------------
@app.command()
@one_line_errors
def index(
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    rebuild: Annotated[bool, typer.Option(help="Build a fresh versioned index and swap the alias to it.")] = False,
    force: Annotated[bool, typer.Option(help="Re-index even when the alias already holds this catalog.")] = False,
    strict: StrictOpt = False,
    es_url: UrlOpt = None,
) -> None:
    """Bulk-index a catalog behind the products alias, then check the count against the source."""
    settings = load_settings(es_url=es_url)
    catalog = read_catalog(settings, fmt, path, strict)
    es = connect(settings.resolved_es_url)
    report = index_catalog(es, catalog, settings.index_alias, rebuild=rebuild, force=force,
                           chunk_size=settings.bulk_chunk_size)
    if report.skipped:
        console.print(f"alias {report.alias!r} -> {report.index} already holds this catalog ({report.doc_count:,} products); nothing to do")
    else:
        console.print(
            f"indexed {report.source_count:,} products into {report.index} (alias {report.alias!r}) in "
            f"{report.seconds:.1f} s, {report.products_per_s:,.0f} products/s; count check passed ({report.doc_count:,})"
        )


@app.command()
@one_line_errors
def split(
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    seed: Annotated[Optional[int], typer.Option(help="Split seed (default: SHOPSEARCH_SPLIT_SEED).")] = None,
    strict: StrictOpt = False,
) -> None:
    """Split the catalog's queries into train / dev / test and save it under the artifacts folder."""
    settings = load_settings(split_seed=seed)
    catalog = read_catalog(settings, fmt, path, strict)
    result = current_split(settings, catalog)
    console.print(
        f"split {result.split_id} (seed {result.seed}): {len(result.train):,} train, {len(result.dev):,} dev, "
        f"{len(result.test):,} test queries -> {split_path(settings.artifacts_dir, catalog.name)}"
    )


@app.command("eval")
@one_line_errors
def evaluate(
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    side: Annotated[str, typer.Option(help="Which queries: test or dev.")] = "test",
    depth: Annotated[int, typer.Option(min=10, help="BM25 candidates per query, end to end.")] = 100,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the results here.")] = None,
    es_url: UrlOpt = None,
) -> None:
    """BM25 (and a random-order reference) on held-out queries: end to end and rerank-judged."""
    from evaluation.rankers import BM25Ranker, RandomRanker
    from evaluation.report import print_table, write_json
    from evaluation.runner import evaluate_rankers

    settings = load_settings(es_url=es_url)
    catalog = read_catalog(settings, fmt, path)
    query_split = current_split(settings, catalog)
    es = connect(settings.resolved_es_url)
    result = evaluate_rankers(
        es, settings.index_alias, catalog, query_split.side(side), [BM25Ranker(), RandomRanker()],
        side=side, split_id=query_split.split_id, depth=depth,
    )
    print_table(result, console)
    if json_path:
        write_json(result, json_path)
        console.print(f"wrote {json_path}")


@app.command()
@one_line_errors
def demo(
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
) -> None:
    """The whole local stack on embedded defaults: start Elasticsearch, index, split, print BM25 figures."""
    settings = load_settings()
    if settings.es_url is None:
        es_start(port=None, heap=None)
    index(fmt=fmt, path=path, rebuild=False, force=False, strict=False, es_url=None)
    evaluate(fmt=fmt, path=path, side="test", depth=100,
             json_path=settings.artifacts_dir / "eval" / f"{fmt.value}-bm25.json", es_url=None)


@app.command()
@one_line_errors
def pipeline(
    profile: Annotated[str, typer.Option(help="quick (minutes: demo, CI) or full (the headline numbers).")] = "quick",
    until: Annotated[Optional[str], typer.Option(help="Stop after this stage.")] = None,
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    es_url: UrlOpt = None,
) -> None:
    """Teacher fine-tune, labeling, graph, FAISS, BERM, BERM-O and evaluation, as restartable stages."""
    from reranker.training.pipeline import PROFILES, Pipeline

    if profile not in PROFILES:
        raise CatalogError(f"unknown profile {profile!r}; choose {' or '.join(PROFILES)}")
    settings = load_settings(es_url=es_url)
    catalog = read_catalog(settings, fmt, path)
    query_split = current_split(settings, catalog)
    es = connect(settings.resolved_es_url)
    index_catalog(es, catalog, settings.index_alias, chunk_size=settings.bulk_chunk_size)
    run = Pipeline(catalog, query_split, es, settings.index_alias, PROFILES[profile], settings.artifacts_dir / "pipeline")
    run.run(until=until)
    console.print("stage wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in run.timings.items()))


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
