"""The teacher scores pairs in batches of similar length and answers in the order it was asked."""

from __future__ import annotations

import dataclasses

import numpy as np

from reranker.models.teacher import Teacher

TITLES = [
    "cordless drill",
    "20 volt max lithium ion cordless brushless compact drill driver kit with two batteries and a charger bag",
    "hammer",
    "outdoor led flood light with motion sensor in bronze finish, 3000 lumen, dusk to dawn",
    "paint roller",
    "stainless steel kitchen sink faucet with pull down sprayer and soap dispenser",
    "nail",
]


def test_predict_answers_in_input_order_what_each_pair_scores_alone() -> None:
    teacher = Teacher.from_base()
    # a batch of 2 over pairs whose lengths zig-zag: sorting moves every pair
    teacher.config = dataclasses.replace(teacher.config, batch_size=2)
    queries = ["drill"] * len(TITLES)
    scored = teacher.predict(queries, TITLES)
    alone = np.array([teacher.predict([q], [t])[0] for q, t in zip(queries, TITLES)])
    assert scored.dtype == np.float32 and scored.shape == (len(TITLES),)
    np.testing.assert_allclose(scored, alone, atol=1e-5)
    assert len(set(np.round(alone, 4))) == len(TITLES)  # distinct scores, so a shuffled answer would show
    assert teacher.predict([], []).shape == (0,)
