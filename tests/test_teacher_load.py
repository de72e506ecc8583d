"""Loading the teacher's base checkpoint (installed with the package, not downloaded) stays quiet."""

from __future__ import annotations

import logging

import pytest
import torch

from reranker.models.teacher import Teacher


def test_the_expected_new_head_prints_no_load_report(capfd: pytest.CaptureFixture[str]) -> None:
    teacher = Teacher.from_base()
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "MISSING" not in err and "Loading weights" not in err
    assert teacher.model.classifier.out_features == 1  # the new head is there, to be trained
    # the quieting is only for that load: later reports still reach the user
    assert logging.getLogger("transformers.modeling_utils").filters == []


def test_the_new_head_is_drawn_from_the_seed() -> None:
    first, again, other = Teacher.from_base(seed=7), Teacher.from_base(seed=7), Teacher.from_base(seed=8)
    head = first.model.classifier.weight
    assert torch.equal(head, again.model.classifier.weight)
    assert not torch.equal(head, other.model.classifier.weight)
    assert first.model.classifier.bias.abs().max().item() == 0.0
    std = first.model.config.initializer_range  # BERT's own initialisation of a new head
    assert 0.7 * std < head.std().item() < 1.3 * std
