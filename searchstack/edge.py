"""What every command line of the project shares (`shopsearch`, `python -m bench`): the consoles,
and the edge where a known failure becomes one line and an exit code."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import typer
from elasticsearch import ApiError, TransportError
from rich.console import Console

from common.errors import ShopsearchError
from indexer.records import Catalog
from searchstack import app as stackapp
from searchstack.app import Format, SplitChoice
from searchstack.settings import Settings

console = Console()
err_console = Console(stderr=True)

# Every library error derives from ShopsearchError; the Elasticsearch client's own errors are the
# one family from outside that a user can cause (a cluster down, a bad request) and act on.
EXPECTED_ERRORS = (ShopsearchError, ApiError, TransportError)


def one_line_errors(func):
    """At the edge, a known failure becomes one line on stderr and exit code 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):  # a command's own exit code, not an error to report
            raise
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


def read_catalog(settings: Settings, fmt: Format, path: Path | None, strict: bool = False,
                 out: Console | None = None, err: Console | None = None) -> Catalog:
    """The app layer's catalog, shown: a spinner, a summary line and the skipped-row report."""
    out, err = out or console, err or err_console
    path = stackapp.catalog_path(settings, Format(fmt), path)
    with out.status(f"reading {Format(fmt).value} catalog from {path}"):
        catalog = stackapp.read_catalog(settings, fmt, path, strict=strict)
    out.print(stackapp.catalog_summary(catalog, path))
    if catalog.bad_rows:
        err.print(f"[yellow]skipped {len(catalog.bad_rows)} malformed row(s)[/yellow]; first: {catalog.bad_rows[0]}")
    return catalog


def current_split(settings: Settings, catalog: Catalog, out: Console | None = None) -> SplitChoice:
    """The app layer's split, saying when a new one was written."""
    choice = stackapp.current_split(settings, catalog)
    if choice.written:
        (out or console).print(f"wrote split {choice.split.split_id} to {choice.path}")
    return choice


def print_evaluation(evaluation, out: Console) -> None:
    """The pipeline's evaluate stage (reranker.training.checks.Evaluation): table, tests, timings."""
    from evaluation.report import print_significance, print_speed, print_table

    print_table(evaluation.result, out)
    print_significance(evaluation.tests, out)
    print_speed(evaluation.speed, out)

