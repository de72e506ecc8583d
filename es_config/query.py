"""The BM25 query: one definition for the indexer's checks, the evaluation and the front end."""

from __future__ import annotations

TITLE_FIELD = "title"  # the _source field a candidate's text comes from (the page's, the plugin's send_text)
# the keyword field holding a product's id (= its _id): the plugin reads the window's ids from its doc
# values instead of decompressing the _id stored field (es_plugin WindowIds.java)
ID_FIELD = "product_id"

# Stemmed title carries most of the weight; the unstemmed sub-field rewards exact word forms
# (model numbers, sizes); brand and category matter when a catalog has them.
BM25_FIELDS: tuple[str, ...] = (
    "title^3",
    "title.plain^1",
    "brand.text^2",
    "category.text^1",
    "description^0.5",
)


def bm25_query(text: str, product_ids: list[str] | None = None) -> dict:
    """The `query` clause for `text`; with `product_ids`, only those products are scored."""
    match = {"multi_match": {"query": text, "fields": list(BM25_FIELDS), "type": "most_fields"}}
    if product_ids is None:
        return match
    # A filter does not change BM25 scores: judged products keep the score they get in search.
    return {"bool": {"must": [match], "filter": [{"ids": {"values": list(product_ids)}}]}}
