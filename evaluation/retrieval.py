"""BM25 through Elasticsearch for the evaluation: top-N per query, and scores for given (judged)
products, as `Hits` dicts for the metrics (ranx). The searching itself is es_config/retrieval.py."""

from __future__ import annotations

from collections.abc import Iterable

from elasticsearch import Elasticsearch
from tqdm import tqdm

from es_config import retrieval

Hits = dict[str, dict[str, float]]  # query id -> product id -> BM25 score


def bm25_top(es: Elasticsearch, alias: str, queries: dict[str, str], size: int = 100, batch: int = 50) -> Hits:
    """BM25 top-`size` over the whole catalog for each query (id -> text)."""
    with tqdm(total=len(queries), unit="query", desc="BM25 top-N", leave=False) as bar:
        found = retrieval.msearch(es, alias, queries, size, batch=batch, progress=bar.update)
    return {q: {c.product_id: c.bm25 for c in candidates} for q, candidates in found.items()}


def bm25_for_products(
    es: Elasticsearch, alias: str, queries: dict[str, str], products: dict[str, Iterable[str]], batch: int = 50
) -> Hits:
    """BM25 scores of the given products per query; a product the query does not match scores 0."""
    ids = {q: list(products[q]) for q in queries}
    with tqdm(total=len(queries), unit="query", desc="BM25 judged", leave=False) as bar:
        found = retrieval.msearch(es, alias, queries, {q: len(ids[q]) for q in queries}, product_ids=ids,
                                  batch=batch, progress=bar.update)
    scores = {q: {c.product_id: c.bm25 for c in candidates} for q, candidates in found.items()}
    return {q: {p: scores[q].get(p, 0.0) for p in ids[q]} for q in queries}
