"""The gRPC request checks (reranker/server/validation.py) on real protobuf messages."""

from __future__ import annotations

import pytest

from reranker.rpc.stubs import pb
from common.settings import Limits
from reranker.server.validation import InvalidRequest, parse_request


def request(*candidates: tuple[str, float, int]) -> "pb.RerankRequest":
    return pb.RerankRequest(query="cordless drill", candidates=[
        pb.Candidate(item_id=i, bm25_score=s, bm25_rank=r) for i, s, r in candidates])


def test_a_candidate_without_a_rank_takes_its_position_in_the_list() -> None:
    # a foreign client that never sets bm25_rank (proto3 sends 0): the list's own order
    _, candidates = parse_request(request(("p1", 9.0, 0), ("p2", 7.5, 0), ("p3", 7.0, 0)), Limits())
    assert [(c.product_id, c.bm25, c.bm25_rank) for c in candidates] == [("p1", 9.0, 1), ("p2", 7.5, 2), ("p3", 7.0, 3)]


def test_a_given_rank_is_kept() -> None:
    _, candidates = parse_request(request(("p1", 9.0, 4), ("p2", 7.5, 0)), Limits())
    assert [c.bm25_rank for c in candidates] == [4, 2]


def test_bad_input_still_names_the_candidate() -> None:
    with pytest.raises(InvalidRequest, match=r"^candidates\[1\] \('p2'\): bm25_score is nan, not a finite number$"):
        parse_request(request(("p1", 9.0, 0), ("p2", float("nan"), 0)), Limits())
