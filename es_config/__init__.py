"""The search contract: index settings and mappings, the BM25 query, and the local node."""

from es_config.index import index_body, MAPPING_VERSION
from es_config.query import bm25_query, BM25_FIELDS

__all__ = ["index_body", "MAPPING_VERSION", "bm25_query", "BM25_FIELDS"]
