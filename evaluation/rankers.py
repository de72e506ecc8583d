"""Rankers the evaluation can compare: anything that scores a query's candidate products.

A ranker gets the query text, the candidates (with their BM25 scores) and returns one score per
candidate, higher is better. The models of `reranker/` plug in through the same interface.
"""

from __future__ import annotations

import random
from typing import Protocol

from indexer.records import Product


class Ranker(Protocol):
    name: str

    def score(self, query: str, candidates: list[Product], bm25: list[float]) -> list[float]: ...


class BM25Ranker:
    """Keeps Elasticsearch's order: the baseline every model is compared with."""

    name = "BM25 (Elasticsearch)"

    def score(self, query: str, candidates: list[Product], bm25: list[float]) -> list[float]:
        return list(bm25)


class RandomRanker:
    """A seeded random order: the floor that shows how much headroom a setting has."""

    name = "random order (reference)"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def score(self, query: str, candidates: list[Product], bm25: list[float]) -> list[float]:
        rng = random.Random(f"{self.seed}:{query}")
        return [rng.random() for _ in candidates]
