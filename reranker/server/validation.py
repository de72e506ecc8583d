"""Checks a Rerank request and turns it into the model's candidates, or says exactly what is wrong.

Every message names the offending field (and candidate, by index and id) so a client in any
language can fix its request from the status text alone; the servicer sends it as
INVALID_ARGUMENT. The limits are the settings' (`settings.rerank.limits`).
"""

from __future__ import annotations

import math
import operator

from common.errors import ShopsearchError
from common.results import Candidate
from common.settings import Limits


class InvalidRequest(ShopsearchError, ValueError):
    """A request the service will not score; the message is one line, for the client."""


_FIELDS = operator.attrgetter("item_id", "bm25_score", "bm25_rank", "text")


def parse_request(request, limits: Limits) -> tuple[str, list[Candidate]]:
    """(query, candidates) from a pb.RerankRequest; raises InvalidRequest. A candidate without
    `bm25_rank` (0, proto3's unset) is ranked by its position in the list (1 = first)."""
    query = request.query.strip()
    if not query:
        raise InvalidRequest("query is empty")
    if len(query) > limits.max_query_chars:
        raise InvalidRequest(f"query has {len(query)} characters; the maximum is {limits.max_query_chars}")
    n = len(request.candidates)
    if n == 0:
        raise InvalidRequest("no candidates to rerank")
    if n > limits.max_candidates:
        raise InvalidRequest(f"{n} candidates; this server takes at most {limits.max_candidates} per request")
    # One walk over the candidates reads every field (each protobuf element read makes a wrapper:
    # four walks cost three times one), then the columns are checked in bulk; only a list that fails
    # a check is walked again, to name the first offender.
    ids, scores, given_ranks, texts = zip(*map(_FIELDS, request.candidates))
    if "" in ids:
        raise InvalidRequest(f"candidates[{ids.index('')}]: item_id is empty")
    if len(set(ids)) != n:
        seen: dict[str, int] = {}
        for index, item_id in enumerate(ids):
            if item_id in seen:
                raise InvalidRequest(f"duplicate item_id {item_id!r} (candidates[{seen[item_id]}] and candidates[{index}])")
            seen[item_id] = index
    if max(map(len, texts)) > limits.max_text_chars:
        index = next(i for i, t in enumerate(texts) if len(t) > limits.max_text_chars)
        raise InvalidRequest(f"candidates[{index}] ({ids[index]!r}): text has {len(texts[index])} characters; "
                             f"the maximum is {limits.max_text_chars}")
    if not all(map(math.isfinite, scores)):
        index = next(i for i, v in enumerate(scores) if not math.isfinite(v))
        raise InvalidRequest(f"candidates[{index}] ({ids[index]!r}): bm25_score is {scores[index]}, not a finite number")
    # proto3 cannot tell 0 from unset: a client that sends no rank means the list's own order
    ranks = [rank or index for index, rank in enumerate(given_ranks, start=1)]
    return query, list(map(Candidate, ids, scores, ranks, [t or None for t in texts]))
