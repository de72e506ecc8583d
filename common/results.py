"""The one shape of a ranked item, from the Elasticsearch hit to the page row (no heavy imports).

    Candidate   a first-stage (BM25) hit: what the reranker is asked to order
    Neighbor    a graph neighbor that carried attention in the reranker's explanation
    Explanation the reranker's score split into its parts, with the neighbors
    Ranked      a candidate in the reranked order (score, rank, BM25 score and rank, explanation)
    Reranking   a model's answer for one request: its Ranked items and the ids it could not score

Only the proto boundary (reranker/client.py, the gRPC server) converts these to and from messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def movement(bm25_rank: int, rank: int) -> int:
    """Places gained against the BM25 order (negative: moved down)."""
    return bm25_rank - rank


@dataclass(frozen=True)
class Candidate:
    product_id: str
    bm25: float
    bm25_rank: int  # 1-based
    text: str | None = None  # sent to the reranker: the title, for items the service may not know
    title: str = ""  # the product's title as Elasticsearch returned it (for display; never sent)


@dataclass(frozen=True)
class Neighbor:
    path: str  # "Q-I", "Q-I-Q" (the query's) or "I-Q", "I-Q-I" (the item's)
    node_id: str
    attention: float
    label: str = ""  # a product title or a query text, where the page knows it


@dataclass(frozen=True)
class Explanation:
    zero_order: float
    k_order: float
    bm25_part: float  # zero_order + k_order + bm25_part == score (float32 rounding)
    neighbors: tuple[Neighbor, ...] = ()


@dataclass(frozen=True)
class Ranked:
    product_id: str
    score: float
    rank: int  # 1-based, in the reranked order
    bm25: float
    bm25_rank: int
    reranked: bool  # False: the model could not score it (kept in BM25 order after the others)
    explanation: Explanation | None = None

    @property
    def movement(self) -> int:
        return movement(self.bm25_rank, self.rank)


@dataclass(frozen=True)
class Reranking:
    """A model's answer for one request (the serving protocol of reranker/server/models.py).

    Every candidate is in `scored` or in `unscored`, once. The explanation's parts are always there;
    its neighbors only when asked for (explain)."""

    scored: list[Ranked]  # in the candidates' order; each rank is its place among the scored (`ranked`)
    unscored: list[str]  # ids the model cannot score (unknown, sent without text): they follow in BM25 order
    timings_ms: dict[str, float]  # where the model's time went, by stage


def ranked(candidates: Sequence[Candidate], scores: Mapping[str, tuple[float, Explanation]]) -> list[Ranked]:
    """The scored candidates as Ranked, in the candidates' order, ranked best score first (ties: BM25
    order); a candidate without a score is left out (the model reports it as unscored)."""
    kept = [(c, scores[c.product_id]) for c in candidates if c.product_id in scores]
    order = sorted(range(len(kept)), key=lambda i: (-kept[i][1][0], kept[i][0].bm25_rank))
    rank_of = [0] * len(kept)
    for rank, i in enumerate(order, start=1):
        rank_of[i] = rank
    return [Ranked(c.product_id, score, rank, c.bm25, c.bm25_rank, True, explanation)
            for (c, (score, explanation)), rank in zip(kept, rank_of)]
