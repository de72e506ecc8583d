"""BM25 through Elasticsearch: top-N per query, and scores for given (judged) products."""

from __future__ import annotations

from collections.abc import Iterable

from elasticsearch import Elasticsearch
from tqdm import tqdm

from es_config import bm25_query

Hits = dict[str, dict[str, float]]  # query id -> product id -> BM25 score


def _msearch(es: Elasticsearch, alias: str, bodies: list[tuple[str, dict]], batch: int, desc: str) -> Hits:
    results: Hits = {}
    with tqdm(total=len(bodies), unit="query", desc=desc, leave=False) as bar:
        for start in range(0, len(bodies), batch):
            chunk = bodies[start : start + batch]
            searches: list[dict] = []
            for _, body in chunk:
                searches += [{"index": alias}, body]
            response = es.msearch(searches=searches)
            for (query_id, _), answer in zip(chunk, response["responses"]):
                if "error" in answer:
                    raise RuntimeError(f"search failed for query {query_id!r}: {answer['error']}")
                results[query_id] = {hit["_id"]: float(hit["_score"]) for hit in answer["hits"]["hits"]}
            bar.update(len(chunk))
    return results


def bm25_top(es: Elasticsearch, alias: str, queries: dict[str, str], size: int = 100, batch: int = 50) -> Hits:
    """BM25 top-`size` over the whole catalog for each query (id -> text)."""
    bodies = [(q, {"query": bm25_query(text), "size": size, "_source": False}) for q, text in queries.items()]
    return _msearch(es, alias, bodies, batch, "BM25 top-N")


def bm25_for_products(
    es: Elasticsearch, alias: str, queries: dict[str, str], products: dict[str, Iterable[str]], batch: int = 50
) -> Hits:
    """BM25 scores of the given products per query; a product the query does not match scores 0."""
    bodies = []
    for q, text in queries.items():
        ids = list(products[q])
        bodies.append((q, {"query": bm25_query(text, ids), "size": len(ids), "_source": False}))
    hits = _msearch(es, alias, bodies, batch, "BM25 judged")
    return {q: {p: hits[q].get(p, 0.0) for p in products[q]} for q in queries}
