"""The teacher-distilled query encoder (reranker/training/query_encoder.py), on the real MiniLM
bi-encoder and a small synthetic shop whose "teacher" cares about something the zero-shot cosine
barely sees: for "X for outdoor use" queries it wants the weatherproof items first.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indexer.embeddings import embed, load_bi_encoder
from reranker.training.query_encoder import (QueryEncoderConfig, QueryGroup, group_loss, load_query_encoder,
                                             save_query_encoder, train_query_encoder)

THINGS = ["light", "speaker", "outlet", "camera", "fan", "clock", "thermometer", "switch", "extension cord",
          "string lights", "timer", "doorbell"]


@pytest.fixture(scope="module")
def bi_encoder():
    torch.set_num_threads(2)
    return load_bi_encoder()


def shop(bi_encoder) -> tuple[list[QueryGroup], list[QueryGroup]]:
    """Per thing: weatherproof and indoor titles; the teacher scores weatherproof ones 4 and the rest 0."""
    groups = []
    for thing in THINGS:
        titles = [f"weatherproof {thing} ip65", f"waterproof {thing} for patio", f"{thing} for bedroom",
                  f"indoor {thing} white", f"{thing} desk model", f"compact {thing}"]
        items = embed(bi_encoder, titles, progress=False)
        target = np.array([4.0, 4.0, 0.0, 0.0, 0.0, 0.0], dtype=np.float32)
        groups.append(QueryGroup(f"{thing} for outdoor use", items, target))
    return groups[:9], groups[9:]


def test_group_loss_is_zero_for_a_shifted_copy_and_positive_for_a_reversed_one() -> None:
    config = QueryEncoderConfig()
    target = torch.tensor([3.0, 1.0, 0.0, 2.0])
    generator = torch.Generator().manual_seed(0)
    assert group_loss(target + 5.0, target, config, generator).item() == pytest.approx(0.0, abs=1e-6)
    assert group_loss(-target, target, config, generator).item() > 1.0
    assert group_loss(torch.zeros(1), torch.zeros(1), config, generator).item() == 0.0
    with pytest.raises(ValueError, match="1-d of one length"):
        group_loss(torch.zeros(3), torch.zeros(2), config, None)


def test_tuning_learns_the_teachers_order_on_held_out_queries_and_is_deterministic(bi_encoder, tmp_path) -> None:
    train, dev = shop(bi_encoder)
    config = QueryEncoderConfig(epochs=3, batch_queries=3, lr=1e-4, patience=3, seed=5)
    before = embed(bi_encoder, [g.text for g in dev], progress=False)
    tuned, result = train_query_encoder(bi_encoder, train, dev, config, progress=False)
    # dev queries' things were never trained on: the learned notion carries over
    assert result.best_epoch > 0
    assert min(result.dev_history) < result.dev_history[0]
    vectors = embed(tuned, [g.text for g in dev], progress=False)
    for g, q in zip(dev, vectors):
        scores = g.items @ q
        assert scores[:2].mean() > scores[2:].mean()
    # the zero-shot encoder is left as it was (the stores and stand-ins keep using it)
    np.testing.assert_allclose(embed(bi_encoder, [g.text for g in dev], progress=False), before, atol=1e-6)
    # the same seed trains the same encoder
    again, result_again = train_query_encoder(bi_encoder, train, dev, config, progress=False)
    assert result_again.dev_history == result.dev_history
    np.testing.assert_allclose(embed(again, [g.text for g in dev], progress=False), vectors, atol=1e-6)
    # saved and loaded, it encodes the same
    save_query_encoder(tuned, tmp_path / "qe")
    loaded = load_query_encoder(tmp_path / "qe")
    np.testing.assert_allclose(embed(loaded, [g.text for g in dev], progress=False), vectors, atol=1e-5)


def test_no_training_groups_is_a_clear_error(bi_encoder) -> None:
    with pytest.raises(ValueError, match="no training groups"):
        train_query_encoder(bi_encoder, [], [], QueryEncoderConfig(), progress=False)
