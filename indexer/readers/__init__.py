"""Catalog readers, one module per source format, all producing the same `Catalog`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from indexer.readers import generic, home_depot, wands
from indexer.records import Catalog, CatalogError, RowErrors

READERS: dict[str, Callable[[Path, RowErrors], Catalog]] = {
    "home-depot": home_depot.read,
    "generic": generic.read,
    "wands": wands.read,
}


def load_catalog(fmt: str, path: Path, *, strict: bool = False) -> Catalog:
    """Read a catalog; malformed rows are collected in `catalog.bad_rows` (or raise when strict)."""
    if fmt not in READERS:
        raise CatalogError(f"unknown catalog format {fmt!r}; choose one of {', '.join(READERS)}")
    if not Path(path).exists():
        raise CatalogError(f"{path}: not found")
    return READERS[fmt](Path(path), RowErrors(strict=strict))
