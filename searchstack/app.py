"""The application layer: what the commands do, as functions that return values and raise the
error family (common.errors.ShopsearchError). No console here: `cli.py`, `demo.py` and `bench/`
call these and print what they return.

    catalog_path -> read_catalog -> current_split
    start_node / stop_node (the local Elasticsearch node), connect, index
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from elasticsearch import Elasticsearch

from es_config.local_node import LocalNode, StartResult
from indexer.bulk_index import IndexReport, connect, index_catalog
from indexer.readers import load_catalog
from indexer.readers.wands import download as download_wands
from indexer.records import Catalog, CatalogError
from indexer.splits import QuerySplit, load_split, save_split, split_path, split_queries
from searchstack.settings import Settings


class Format(str, Enum):
    home_depot = "home-depot"
    generic = "generic"
    wands = "wands"


def catalog_path(settings: Settings, fmt: Format, path: Path | None) -> Path:
    """The catalog's path: `path`, else the format's default (WANDS is downloaded once)."""
    if path is not None:
        return path
    if fmt is Format.generic:
        raise CatalogError("the generic format needs --path (a folder; see docs/catalog-format.md)")
    return settings.home_depot_path if fmt is Format.home_depot else download_wands(settings.wands_dir)


def read_catalog(settings: Settings, fmt: Format, path: Path | None, strict: bool = False) -> Catalog:
    """The catalog; malformed rows are skipped and listed in `catalog.bad_rows` (strict: raised)."""
    return load_catalog(Format(fmt).value, catalog_path(settings, Format(fmt), path), strict=strict)


def catalog_summary(catalog: Catalog, path: Path) -> str:
    return (f"read {len(catalog.products):,} products, {len(catalog.queries):,} queries, "
            f"{len(catalog.judgments):,} judgments, {len(catalog.logs):,} log lines from {path}")


@dataclass(frozen=True)
class SplitChoice:
    split: QuerySplit
    path: Path
    written: bool  # a new split was made and saved (no saved one matched the data and seed)


def current_split(settings: Settings, catalog: Catalog) -> SplitChoice:
    """The saved split for this dataset if it matches the data and seed; otherwise a new one, saved."""
    path = split_file(settings, catalog)
    if path.exists():
        split = load_split(path)
        if (split.data_fingerprint, split.seed, split.dev_fraction, split.test_fraction) == (
            catalog.fingerprint(), settings.split_seed, settings.split_dev_fraction, settings.split_test_fraction
        ):
            return SplitChoice(split, path, written=False)
    split = split_queries(catalog, settings.split_seed, settings.split_dev_fraction, settings.split_test_fraction)
    save_split(split, settings.artifacts_dir)
    return SplitChoice(split, path, written=True)


def split_file(settings: Settings, catalog: Catalog) -> Path:
    return split_path(settings.artifacts_dir, catalog.name)


def local_node(settings: Settings) -> LocalNode:
    return LocalNode.from_settings(settings)


def start_node(settings: Settings) -> StartResult:
    """Fetch (once), configure and start the local node of these settings; waits until it is healthy."""
    return local_node(settings).start()


def node_started_message(result: StartResult) -> str:
    if result.already_running:
        return f"Elasticsearch is already running on {result.url}; nothing to do"
    return f"Elasticsearch is up on {result.url} (started in {result.seconds:.1f} s)"


def connect_es(settings: Settings) -> Elasticsearch:
    """A client of the settings' cluster (raises ClusterUnavailable when it does not answer)."""
    return connect(settings.resolved_es_url, request_timeout_s=settings.es_request_timeout_s,
                   retries=settings.es_request_retries)


def index(settings: Settings, catalog: Catalog, es: Elasticsearch | None = None, rebuild: bool = False,
          force: bool = False) -> IndexReport:
    """Bulk-index the catalog behind the settings' alias, with the count check."""
    return index_catalog(es if es is not None else connect_es(settings), catalog, settings.index_alias,
                         rebuild=rebuild, force=force, chunk_size=settings.bulk_chunk_size,
                         max_retries=settings.bulk_max_retries)
