"""The one shape of a ranked item, from the Elasticsearch hit to the page row (no heavy imports).

    Candidate   a first-stage (BM25) hit: what the reranker is asked to order
    Neighbor    a graph neighbor that carried attention in the reranker's explanation
    Explanation the reranker's score split into its parts, with the neighbors
    Ranked      a candidate in the reranked order (score, rank, BM25 score and rank, explanation)

Only the proto boundary (reranker/client.py, the gRPC server) converts these to and from messages.
"""

from __future__ import annotations

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
