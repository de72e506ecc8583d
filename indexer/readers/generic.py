"""Reader for the project's own catalog format (see docs/catalog-format.md).

A folder holding `products`, `queries`, `labels` and optionally `logs`, each as `.jsonl` or
`.csv` (UTF-8, header row). Labels and log lines that name an unknown query or product are
reported as malformed rows, never silently dropped.
"""

from __future__ import annotations

import math

from pathlib import Path

from indexer.readers.tabular import find_table, iter_rows
from indexer.records import Catalog, CatalogError, Judgment, LogEvent, Product, Query, RowErrors


def read(path: Path, errors: RowErrors) -> Catalog:
    folder = Path(path)
    if not folder.is_dir():
        raise CatalogError(f"{folder}: expected a folder with products, queries and labels files")
    catalog = Catalog(name=folder.name)
    products_file = find_table(folder, "products")
    for line, row in iter_rows(products_file, ("product_id", "title"), errors):
        product_id, title = row["product_id"].strip(), " ".join(row["title"].split())
        if not product_id or not title:
            errors.report(products_file, line, "empty product_id or title")
        elif product_id in catalog.products:
            errors.report(products_file, line, f"duplicate product_id {product_id!r}")
        else:
            catalog.products[product_id] = Product(
                product_id, title,
                brand=row.get("brand", "").strip() or None,
                category=row.get("category", "").strip() or None,
                description=row.get("description", "").strip() or None,
            )
    queries_file = find_table(folder, "queries")
    for line, row in iter_rows(queries_file, ("query_id", "query"), errors):
        query_id, text = row["query_id"].strip(), " ".join(row["query"].split())
        if not query_id or not text:
            errors.report(queries_file, line, "empty query_id or query")
        elif query_id in catalog.queries:
            errors.report(queries_file, line, f"duplicate query_id {query_id!r}")
        else:
            catalog.queries[query_id] = Query(query_id, text)
    labels_file = find_table(folder, "labels")
    judged: set[tuple[str, str]] = set()
    for line, row in iter_rows(labels_file, ("query_id", "product_id", "grade"), errors):
        pair = _known_pair(catalog, row, labels_file, line, errors)
        grade = _number(row["grade"], float, labels_file, line, "grade", errors)
        if pair is None or grade is None:
            continue  # already reported
        if pair in judged:  # a second grade for a pair would count it twice in every metric
            errors.report(labels_file, line, f"duplicate label for ({pair[0]!r}, {pair[1]!r}); the first is kept")
        else:
            judged.add(pair)
            catalog.judgments.append(Judgment(*pair, grade))
    logs_file = find_table(folder, "logs", optional=True)
    if logs_file is not None:
        for line, row in iter_rows(logs_file, ("query_id", "product_id", "clicks", "impressions"), errors):
            pair = _known_pair(catalog, row, logs_file, line, errors)
            clicks = _number(row["clicks"], int, logs_file, line, "clicks", errors)
            impressions = _number(row["impressions"], int, logs_file, line, "impressions", errors)
            if pair is None or clicks is None or impressions is None:
                continue
            if clicks > impressions:
                errors.report(logs_file, line, f"clicks ({clicks}) exceed impressions ({impressions})")
                continue
            catalog.logs.append(LogEvent(*pair, clicks, impressions))
    catalog.bad_rows = errors.rows
    return catalog


def _known_pair(catalog: Catalog, row: dict, file: Path, line: int, errors: RowErrors):
    query_id, product_id = row["query_id"].strip(), row["product_id"].strip()
    if query_id not in catalog.queries:
        errors.report(file, line, f"unknown query_id {query_id!r}")
    elif product_id not in catalog.products:
        errors.report(file, line, f"unknown product_id {product_id!r}")
    else:
        return query_id, product_id
    return None


def _number(raw: str, kind: type, file: Path, line: int, name: str, errors: RowErrors):
    try:
        value = kind(raw.strip())
    except ValueError:
        errors.report(file, line, f"{name} {raw!r} is not {'an integer' if kind is int else 'a number'}")
        return None
    if not math.isfinite(value):
        errors.report(file, line, f"{name} {raw!r} is not a finite number")
        return None
    if value < 0:
        errors.report(file, line, f"{name} {value} is negative")
        return None
    return value
