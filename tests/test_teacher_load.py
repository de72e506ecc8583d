"""Loading the teacher's base checkpoint (installed with the package, not downloaded) stays quiet."""

from __future__ import annotations

import logging

import pytest

from reranker.models.teacher import Teacher


def test_the_expected_new_head_prints_no_load_report(capfd: pytest.CaptureFixture[str]) -> None:
    teacher = Teacher.from_base()
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "MISSING" not in err and "Loading weights" not in err
    assert teacher.model.classifier.out_features == 1  # the new head is there, to be trained
    # the quieting is only for that load: later reports still reach the user
    assert logging.getLogger("transformers.modeling_utils").filters == []
