"""Bulk-index a catalog into Elasticsearch behind an alias, with a final count check.

Document id = product id, so re-indexing the same catalog overwrites instead of duplicating.
`rebuild` writes a fresh versioned index and swaps the alias to it atomically, so searches never
see a half-built index.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from elasticsearch import ApiError, Elasticsearch, TransportError, helpers
from tqdm import tqdm

from common.errors import ShopsearchError
from es_config import MAPPING_VERSION, index_body
from indexer.records import Catalog

log = logging.getLogger(__name__)


class ClusterUnavailable(ShopsearchError):
    pass


class IndexingError(ShopsearchError):
    pass


@dataclass(frozen=True)
class IndexReport:
    alias: str
    index: str
    source_count: int
    doc_count: int
    failed: int
    seconds: float
    skipped: bool = False  # the alias already held this exact catalog
    rebuilt: bool = False

    @property
    def products_per_s(self) -> float:
        return self.source_count / self.seconds if self.seconds and not self.skipped else 0.0


def connect(url: str, timeout_s: float = 10.0, request_timeout_s: float = 60.0, retries: int = 2) -> Elasticsearch:
    """A client for `url`, checked with a cluster-health call (this distribution has no `GET /`)."""
    es = Elasticsearch(url, request_timeout=request_timeout_s, max_retries=retries, retry_on_timeout=True)
    try:
        es.options(request_timeout=timeout_s, max_retries=0).cluster.health()
    except (TransportError, ApiError) as err:
        raise ClusterUnavailable(
            f"cannot reach Elasticsearch at {url} ({type(err).__name__}); "
            "start it with `shopsearch es start` or set SHOPSEARCH_ES_URL"
        ) from None
    return es


def alias_target(es: Elasticsearch, alias: str) -> str | None:
    if not es.indices.exists_alias(name=alias):
        if es.indices.exists(index=alias):
            raise IndexingError(f"{alias!r} is a concrete index, not an alias; delete it or choose another alias")
        return None
    targets = list(es.indices.get_alias(name=alias))
    if len(targets) != 1:
        raise IndexingError(f"alias {alias!r} points at {len(targets)} indexes, expected one")
    return targets[0]


def index_meta(es: Elasticsearch, index: str) -> dict:
    mapping = es.indices.get_mapping(index=index)[index]["mappings"]
    return mapping.get("_meta", {})


def index_catalog(
    es: Elasticsearch,
    catalog: Catalog,
    alias: str,
    *,
    rebuild: bool = False,
    force: bool = False,
    chunk_size: int = 1000,
    max_retries: int = 3,  # a chunk's rejected (429) documents, retried with backoff
    progress: bool = True,
) -> IndexReport:
    began = time.monotonic()
    fingerprint = catalog.fingerprint()
    current = alias_target(es, alias)
    meta = index_meta(es, current) if current else {}
    same_mapping = meta.get("mapping_version") == MAPPING_VERSION
    if current and same_mapping and not (rebuild or force) and meta.get("fingerprint") == fingerprint:
        count = es.count(index=current)["count"]
        if count == len(catalog.products):
            return IndexReport(alias, current, len(catalog.products), count, 0, time.monotonic() - began, skipped=True)

    new_index = rebuild or current is None or not same_mapping
    target = f"{alias}-{time.strftime('%Y%m%d-%H%M%S')}-{MAPPING_VERSION}" if new_index else current
    if new_index:
        if es.indices.exists(index=target):
            target += f"-{int(time.time() * 1000) % 1000:03d}"
        # No refreshes while loading: faster, and the alias does not point here yet anyway.
        body = index_body({"catalog": catalog.name, "fingerprint": fingerprint})
        body["settings"]["refresh_interval"] = "-1"
        es.indices.create(index=target, **body)

    actions = (
        {"_index": target, "_id": product.product_id, "_source": product.to_document()}
        for product in catalog.products.values()
    )
    failed = 0
    with tqdm(total=len(catalog.products), unit="product", desc=f"indexing {target}", disable=not progress) as bar:
        for ok, item in helpers.streaming_bulk(
            es, actions, chunk_size=chunk_size, raise_on_error=False, max_retries=max_retries
        ):
            if not ok:
                failed += 1
                if failed <= 5:
                    log.error("failed to index %s", item)
            bar.update(1)

    es.indices.put_settings(index=target, settings={"refresh_interval": "1s"})
    es.indices.refresh(index=target)
    count = es.count(index=target)["count"]
    if failed or count != len(catalog.products):
        raise IndexingError(
            f"count check failed for {target}: {count} documents for {len(catalog.products)} products "
            f"in the source ({failed} failed); the alias {alias!r} was left unchanged"
            + ("" if new_index else "; run with --rebuild to start from an empty index")
        )
    if new_index:
        actions_ = [{"add": {"index": target, "alias": alias}}]
        if current:
            actions_.insert(0, {"remove": {"index": current, "alias": alias}})
        es.indices.update_aliases(actions=actions_)
        if current:
            es.indices.delete(index=current)
    else:
        es.indices.put_mapping(index=target, meta={**meta, "fingerprint": fingerprint, "catalog": catalog.name})
    return IndexReport(alias, target, len(catalog.products), count, failed, time.monotonic() - began,
                       rebuilt=new_index)
