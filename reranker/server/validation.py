"""Checks a Rerank request and turns it into the model's candidates, or says exactly what is wrong.

Every message names the offending field (and candidate, by index and id) so a client in any
language can fix its request from the status text alone; the servicer sends it as
INVALID_ARGUMENT. The limits are the settings' (`settings.rerank.limits`).
"""

from __future__ import annotations

import math

from common.errors import ShopsearchError
from common.results import Candidate
from common.settings import Limits


class InvalidRequest(ShopsearchError, ValueError):
    """A request the service will not score; the message is one line, for the client."""


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
    seen: dict[str, int] = {}
    candidates = []
    for index, c in enumerate(request.candidates):
        if not c.item_id:
            raise InvalidRequest(f"candidates[{index}]: item_id is empty")
        if c.item_id in seen:
            raise InvalidRequest(f"duplicate item_id {c.item_id!r} (candidates[{seen[c.item_id]}] and candidates[{index}])")
        seen[c.item_id] = index
        if len(c.text) > limits.max_text_chars:
            raise InvalidRequest(f"candidates[{index}] ({c.item_id!r}): text has {len(c.text)} characters; "
                                 f"the maximum is {limits.max_text_chars}")
        if not math.isfinite(c.bm25_score):
            raise InvalidRequest(f"candidates[{index}] ({c.item_id!r}): bm25_score is {c.bm25_score}, not a finite number")
        # proto3 cannot tell 0 from unset: a client that sends no rank means the list's own order
        rank = int(c.bm25_rank) or index + 1
        candidates.append(Candidate(c.item_id, float(c.bm25_score), rank, c.text or None))
    return query, candidates
