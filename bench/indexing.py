"""Indexing throughput for a whole catalog, against a baseline measured in the same run.

Three timings over the same products: reading the catalog; bulk-indexing it into a plain index
(standard analyzer, no alias work) as the baseline; and the project's own indexing (hunspell
analyzer, versioned index, alias swap, count check). Each indexing run starts from an empty index.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from elasticsearch import Elasticsearch, helpers

from indexer.bulk_index import index_catalog
from indexer.records import Catalog

BASELINE_INDEX = "bench-baseline"
BENCH_ALIAS = "bench-products"


@dataclass
class IndexingBench:
    products: int
    read_s: float
    baseline_s: float
    project_s: float
    read_products_per_s: float
    baseline_products_per_s: float
    project_products_per_s: float
    project_vs_baseline: float  # throughput ratio; below 1 means the project's analysis costs that much


def _delete(es: Elasticsearch, pattern: str) -> None:
    for index in es.indices.get(index=pattern, allow_no_indices=True, ignore_unavailable=True):
        es.indices.delete(index=index)


def bench_indexing(es: Elasticsearch, catalog: Catalog, read_s: float, chunk_size: int = 1000) -> IndexingBench:
    n = len(catalog.products)
    _delete(es, BASELINE_INDEX)
    _delete(es, f"{BENCH_ALIAS}-*")
    es.indices.create(index=BASELINE_INDEX, settings={"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"})
    began = time.perf_counter()
    helpers.bulk(
        es,
        ({"_index": BASELINE_INDEX, "_id": p.product_id, "_source": p.to_document()} for p in catalog.products.values()),
        chunk_size=chunk_size,
    )
    es.indices.refresh(index=BASELINE_INDEX)
    baseline_s = time.perf_counter() - began

    began = time.perf_counter()
    index_catalog(es, catalog, BENCH_ALIAS, rebuild=True, chunk_size=chunk_size, progress=False)
    project_s = time.perf_counter() - began
    _delete(es, BASELINE_INDEX)
    _delete(es, f"{BENCH_ALIAS}-*")
    return IndexingBench(
        products=n, read_s=read_s, baseline_s=baseline_s, project_s=project_s,
        read_products_per_s=n / read_s, baseline_products_per_s=n / baseline_s, project_products_per_s=n / project_s,
        project_vs_baseline=(n / project_s) / (n / baseline_s),
    )


def as_dict(result: IndexingBench) -> dict:
    return asdict(result)
