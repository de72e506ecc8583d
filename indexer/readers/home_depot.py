"""Reader for the Kaggle "Home Depot Product Search Relevance" train.csv (Latin-1, quoted CSV).

Products are the distinct product_uid with their titles; queries are the distinct search terms
(the term itself is the query id); each row is a judgment with gain = relevance - 1 (0..2).
"""

from __future__ import annotations

from pathlib import Path

from indexer.readers.tabular import iter_rows
from indexer.records import Catalog, Judgment, Product, Query, RowErrors

COLUMNS = ("id", "product_uid", "product_title", "search_term", "relevance")


def read(path: Path, errors: RowErrors) -> Catalog:
    path = Path(path)
    if path.is_dir():
        path = path / "train.csv"
    catalog = Catalog(name="home-depot")
    seen_pairs: set[tuple[str, str]] = set()
    for line, row in iter_rows(path, COLUMNS, errors, encoding="latin-1"):
        product_id = row["product_uid"].strip()
        title = " ".join(row["product_title"].split())
        # The raw term is the query id: the data holds distinct queries that differ only in spacing.
        query_text = row["search_term"].strip()
        if not product_id.isdigit():
            errors.report(path, line, f"product_uid {row['product_uid']!r} is not a number")
            continue
        if not title or not query_text:
            errors.report(path, line, "empty product_title or search_term")
            continue
        try:
            relevance = float(row["relevance"])
        except ValueError:
            errors.report(path, line, f"relevance {row['relevance']!r} is not a number")
            continue
        if not 1.0 <= relevance <= 3.0:
            errors.report(path, line, f"relevance {relevance} is outside 1..3")
            continue
        if (query_text, product_id) in seen_pairs:
            errors.report(path, line, f"duplicate judgment for ({query_text!r}, {product_id})")
            continue
        seen_pairs.add((query_text, product_id))
        catalog.products.setdefault(product_id, Product(product_id, title))
        catalog.queries.setdefault(query_text, Query(query_text, query_text))
        catalog.judgments.append(Judgment(query_text, product_id, round(relevance - 1.0, 4)))
    catalog.bad_rows = errors.rows
    return catalog
