"""Teacher training pieces: the group loss and the training groups (no model download involved)."""

from __future__ import annotations

import pytest
import torch

from indexer.records import Judgment, Query
from reranker.models.teacher import minmax
from reranker.training.teacher_train import GroupRankLoss, TeacherTrainConfig, build_groups
from tests.conftest import SMALL_PRODUCTS, make_catalog


def test_group_loss_prefers_the_right_order() -> None:
    loss = GroupRankLoss(min_gap=0.3, pointwise_weight=0.2, max_gain=2.0)
    gains, weights = torch.tensor([2.0, 1.0, 0.0]), torch.ones(3)
    right = loss(torch.tensor([3.0, 0.0, -3.0]), gains, weights)
    wrong = loss(torch.tensor([-3.0, 0.0, 3.0]), gains, weights)
    assert right < wrong


def test_group_loss_rejects_mismatched_shapes() -> None:
    loss = GroupRankLoss(0.3, 0.2, 2.0)
    with pytest.raises(ValueError) as err:
        loss(torch.zeros(3), torch.zeros(2), torch.ones(3))
    assert str(err.value) == "logits, gains and weights must be 1-d of one length, got (3,), (2,), (3,)"


def test_groups_hold_judged_products_and_unjudged_negatives() -> None:
    catalog = make_catalog(SMALL_PRODUCTS)
    catalog.queries = {"q1": Query("q1", "cordless drill")}
    catalog.judgments = [Judgment("q1", "p1", 2.0), Judgment("q1", "p2", 1.0), Judgment("q1", "p6", 0.5)]
    bm25 = {"q1": {p: 10.0 - i for i, (p, _) in enumerate(SMALL_PRODUCTS)}}
    config = TeacherTrainConfig(max_judged=4, random_negatives=1, bm25_negatives=2, bm25_negative_from_rank=3)
    groups = build_groups(catalog, ["q1"], bm25, config)
    assert len(groups) == 1
    group = groups[0]
    assert group.product_ids[:3] == ["p6", "p2", "p1"]  # judged, least relevant first
    negatives = group.product_ids[3:]
    assert len(negatives) == 3 and not set(negatives) & {"p1", "p2", "p6"}
    assert group.gains[3:] == [0.0, 0.0, 0.0]
    assert group.weights[3:5] == [0.5, 0.5]  # deep BM25 negatives are soft
    assert group.titles[0] == "Drill Bit Set for Wood and Metal (29-Piece)"
    assert build_groups(catalog, ["q1"], bm25, config) == groups  # seeded


def test_minmax_scales_each_list_to_unit_range() -> None:
    assert minmax([2.0, 4.0, 3.0]).tolist() == [0.0, 1.0, 0.5]
    assert minmax([5.0, 5.0]).tolist() == [0.0, 0.0]
