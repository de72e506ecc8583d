"""The deployed teacher's score: cross-encoder logits mixed with BM25 and the bi-encoder cosine."""

from __future__ import annotations

import numpy as np
import pytest

from reranker.models.teacher import deployed_score
from reranker.training.student_data import mixed_targets


def test_no_mixing_keeps_the_cross_encoders_order() -> None:
    logits = np.array([0.3, -1.0, 2.5])
    score = deployed_score(logits, np.array([9.0, 1.0, 5.0]), None, 0.0, 0.0)
    assert np.argsort(score).tolist() == np.argsort(logits).tolist()
    assert score.min() == 0.0 and score.max() == 1.0


def test_mixed_targets_golden() -> None:
    # (bm25, logit, cosine) per product; each column min-max scaled within the query
    by_query = {"q": {"a": (1.0, 2.0, 0.5), "b": (3.0, 0.0, 0.1), "c": (2.0, 1.0, 0.9)}}
    targets = mixed_targets(by_query, bm25_mix=0.3, cosine_mix=0.2)
    # a: 0.5*1 + 0.3*0 + 0.2*0.5; b: 0 + 0.3*1 + 0; c: 0.5*0.5 + 0.3*0.5 + 0.2*1; times 4
    assert targets["q"] == pytest.approx({"a": 2.4, "b": 1.2, "c": 2.4})


def test_a_cosine_mix_without_cosines_is_an_error() -> None:
    with pytest.raises(ValueError, match="cosine"):
        deployed_score(np.array([1.0, 2.0]), np.array([1.0, 2.0]), None, 0.2, 0.3)
