"""Teacher fine-tuning: the new head may learn at its own rate (`head_lr`)."""

from __future__ import annotations

import torch

from reranker.models.teacher import Teacher
from reranker.training.teacher_train import Group, TeacherTrainConfig, train_teacher

GROUPS = [
    Group("cordless drill", ["a", "b", "c"], ["18v cordless drill kit", "garden hose 50 ft", "drill bit set"],
          [2.0, 0.0, 1.0], [1.0, 1.0, 1.0]),
    Group("white vanity", ["d", "e"], ["36 in. white bathroom vanity", "espresso vanity mirror"], [2.0, 0.5], [1.0, 1.0]),
]


def _moved(head_lr: float | None, tmp_path) -> tuple[float, float]:
    teacher = Teacher.from_base()
    head0 = teacher.model.classifier.weight.detach().clone()
    body0 = teacher.model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    config = TeacherTrainConfig(groups_per_step=1, warmup_fraction=0.0, head_lr=head_lr, checkpoint_every=100)
    torch.manual_seed(0)
    train_teacher(teacher, GROUPS, config, tmp_path / f"ckpt-{head_lr}")
    head = (teacher.model.classifier.weight - head0).abs().max().item()
    body = (teacher.model.bert.encoder.layer[0].attention.self.query.weight - body0).abs().max().item()
    return head, body


def test_head_lr_moves_the_new_head_faster_and_leaves_the_encoder_rate_alone(tmp_path) -> None:
    head_same, body_same = _moved(None, tmp_path)
    head_fast, body_fast = _moved(3e-3, tmp_path)
    assert head_fast > 10 * head_same
    assert body_fast < 2 * body_same and body_same > 0
