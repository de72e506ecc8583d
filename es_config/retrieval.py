"""The first stage: the BM25 query (es_config/query.py) run against Elasticsearch, for one query or
a batch (`msearch`), answering typed candidates (common/results.py) in BM25 order.

The CLI's `rerank`, the page, the evaluation, the pipeline, the load bench and the plugin tests
retrieve through here. `rescore` is the same search reranked inside Elasticsearch by the shopsearch
rescorer plugin (es_plugin/). Errors of the cluster itself (down, index missing, a rescore it
refuses) are the elasticsearch client's, for the caller to phrase; an answer that reports a failed
search inside a batch raises RetrievalError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from elasticsearch import Elasticsearch

from common.errors import ShopsearchError
from common.results import Candidate, Ranked
from es_config.query import TITLE_FIELD, bm25_query


class RetrievalError(ShopsearchError, RuntimeError):
    """Elasticsearch answered a batch with a failed search for one query."""


@dataclass(frozen=True)
class Retrieved:
    candidates: list[Candidate]  # BM25 order, ranks from 1
    total: int  # hits counted (up to `track_total_hits`)
    total_is_lower_bound: bool  # True: there are more than `total`


def candidates_of(hits: Sequence[Mapping]) -> list[Candidate]:
    """Elasticsearch hits, in their order, as candidates (title where `_source` carries it)."""
    return [Candidate(hit["_id"], float(hit["_score"]), rank, title=(hit.get("_source") or {}).get(TITLE_FIELD, ""))
            for rank, hit in enumerate(hits, start=1)]


def _body(text: str, size: int, product_ids: Sequence[str] | None, titles: bool) -> dict:
    return {"query": bm25_query(text, None if product_ids is None else list(product_ids)), "size": size,
            "_source": [TITLE_FIELD] if titles else False}


def search(es: Elasticsearch, alias: str, text: str, size: int, *, titles: bool = True,
           product_ids: Sequence[str] | None = None, timeout_s: float | None = None,
           track_total_hits: int | bool | None = None, preference: str | None = None) -> Retrieved:
    """BM25 top-`size` for one query; with `timeout_s` the request fails fast (no retries);
    `preference` is Elasticsearch's (e.g. "_shards:0": one shard's own list)."""
    client = es if timeout_s is None else es.options(request_timeout=timeout_s, max_retries=0)
    extra: dict = {}
    if timeout_s is not None:
        extra["timeout"] = f"{max(1, int(1000 * timeout_s))}ms"  # the shards' own budget too
    if track_total_hits is not None:
        extra["track_total_hits"] = track_total_hits
    if preference is not None:
        extra["preference"] = preference
    answer = client.search(index=alias, **_body(text, size, product_ids, titles), **extra)
    total = answer["hits"]["total"]
    return Retrieved(candidates_of(answer["hits"]["hits"]), int(total["value"]), total.get("relation") == "gte")


@dataclass(frozen=True)
class Rescored:
    """One search reranked by the plugin, each hit's part read from its structured outcome
    (`fields._shopsearch`, the plugin's `shopsearch_outcome` fetch sub-phase)."""

    ranked: list[Ranked]  # the final order; reranked=False: placed by BM25 (past the window, unscored, a fallback)
    candidates: list[Candidate]  # the same hits in BM25 order, ranks from 1
    total: int
    total_is_lower_bound: bool
    model_version: str = ""  # of the model that reranked ("" when none did)
    fallbacks: dict[str, int] = field(default_factory=dict)  # the plugin's reason ("unavailable", ...) -> hits
    unscored: tuple[str, ...] = ()  # the service's reasons for hits in the window it could not score


OUTCOME_EXT = "shopsearch_outcome"  # the search ext that asks the plugin for each hit's outcome
OUTCOME_FIELD = "_shopsearch"  # where each hit carries it (OutcomeFetchSubPhase.java documents the keys)
# Reasons a hit was not reranked that are not a failed call (the rest are fallback reasons).
_NOT_A_FALLBACK = {"unscored", "past_window", "not_kept"}


def _outcome(hit: Mapping) -> Mapping:
    values = (hit.get("fields") or {}).get(OUTCOME_FIELD) or [{}]
    return values[0]


def rescore(es: Elasticsearch, alias: str, text: str, size: int, window: int, *, send_text: bool = False,
            timeout_s: float | None = None, track_total_hits: int | bool | None = None) -> Rescored:
    """BM25 top-`size` for one query, each shard's top `window` reranked by the plugin; with
    `timeout_s` the request fails fast. Elasticsearch without the plugin answers 400 (ApiError)."""
    client = es if timeout_s is None else es.options(request_timeout=timeout_s, max_retries=0)
    extra: dict = {"track_total_hits": track_total_hits} if track_total_hits is not None else {}
    if timeout_s is not None:
        extra["timeout"] = f"{max(1, int(1000 * timeout_s))}ms"  # the shards' own budget too
    answer = client.search(index=alias, query=bm25_query(text), size=size, source=[TITLE_FIELD], ext={OUTCOME_EXT: {}},
                           rescore={"window_size": window, "shopsearch": {"query_text": text, "send_text": send_text}},
                           **extra)
    rows, fallbacks, unscored, version = [], {}, [], ""
    for position, hit in enumerate(answer["hits"]["hits"]):
        o = _outcome(hit)
        reranked = bool(o.get("reranked"))
        bm25 = float(o.get("bm25_score") or 0.0)
        if reranked:
            version = version or o.get("model_version", "")
            score = float(o["model_score"])
        else:
            score, reason = bm25, o.get("reason") or "not_kept"
            if reason == "unscored":
                if o.get("detail") and o["detail"] not in unscored:
                    unscored.append(o["detail"])
            elif reason not in _NOT_A_FALLBACK:
                fallbacks[reason] = fallbacks.get(reason, 0) + 1
        rows.append((hit, score, reranked, bm25, int(o.get("bm25_rank") or 0), position))
    # BM25 order: by score, ties as each shard ranked them, then as the response listed them
    by_bm25 = sorted(rows, key=lambda r: (-r[3], r[4], r[5]))
    bm25_rank = {id(r[0]): rank for rank, r in enumerate(by_bm25, start=1)}
    candidates = [Candidate(r[0]["_id"], r[3], bm25_rank[id(r[0])], title=(r[0].get("_source") or {}).get(TITLE_FIELD, ""))
                  for r in by_bm25]
    ranked = [Ranked(hit["_id"], score, rank, bm25, bm25_rank[id(hit)], reranked)
              for rank, (hit, score, reranked, bm25, _, _) in enumerate(rows, start=1)]
    total = answer["hits"]["total"]
    return Rescored(ranked, candidates, int(total["value"]), total.get("relation") == "gte", version, fallbacks,
                    tuple(unscored))


def msearch(es: Elasticsearch, alias: str, queries: Mapping[str, str], size: int | Mapping[str, int], *,
            product_ids: Mapping[str, Sequence[str]] | None = None, titles: bool = False, batch: int = 50,
            progress: Callable[[int], None] | None = None) -> dict[str, list[Candidate]]:
    """BM25 candidates per query id (id -> text), `batch` queries a request; `size` per query or one
    for all; with `product_ids`, only those products of each query are scored."""
    bodies = []
    for query_id, text in queries.items():
        ids = None if product_ids is None else product_ids[query_id]
        n = size[query_id] if isinstance(size, Mapping) else size
        bodies.append((query_id, _body(text, n, ids, titles)))
    results: dict[str, list[Candidate]] = {}
    for start in range(0, len(bodies), batch):
        chunk = bodies[start : start + batch]
        searches: list[dict] = []
        for _, body in chunk:
            searches += [{"index": alias}, body]
        response = es.msearch(searches=searches)
        for (query_id, _), answer in zip(chunk, response["responses"]):
            if "error" in answer:
                raise RetrievalError(f"search failed for query {query_id!r}: {answer['error']}")
            results[query_id] = candidates_of(answer["hits"]["hits"])
        if progress is not None:
            progress(len(chunk))
    return results
