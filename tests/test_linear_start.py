"""The students' linear start (reranker/training/linear_start.py) and the epoch kept by a dev score
(`train_student(select=...)`)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reranker.models.berm import Berm, BermConfig
from reranker.models.berm_o import BermO, BermOConfig
from reranker.training.distill import DistillConfig, train_student
from reranker.training.linear_start import linear_start

V, D, P, K = 32, 384, 4, 3


def groups(count: int, seed: int, n: int = 10, tuned: bool = False) -> list[dict[str, torch.Tensor]]:
    """target = 2 bm25 + 3 cos(q, i) (+ 1.5 cos(t, i)) + a per-query offset the fit must ignore."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        q_vec = F.normalize(torch.randn(D, generator=g), dim=0)
        t_vec = F.normalize(torch.randn(D, generator=g), dim=0)
        # items spread around the query so the cosines vary within a group
        i_vec = F.normalize(q_vec + t_vec * torch.rand(n, 1, generator=g) + torch.randn(n, D, generator=g) * 0.05, dim=-1)
        bm25 = torch.rand(n, generator=g)
        target = 2 * bm25 + 3 * (i_vec @ q_vec) + 10 * torch.rand(1, generator=g)
        group = {
            "q_tokens": torch.randint(2, V, (n, 2), generator=g), "i_tokens": torch.randint(2, V, (n, 5), generator=g),
            "q_vec": q_vec.repeat(n, 1), "i_vec": i_vec, "nb_vec": F.normalize(torch.randn(n, P, K, D, generator=g), dim=-1),
            "nb_w": torch.rand(n, P, K, generator=g), "nb_mask": torch.ones(n, P, K, dtype=torch.bool), "bm25": bm25,
        }
        if tuned:
            group["t_vec"] = t_vec.repeat(n, 1)
            target = target + 1.5 * (i_vec @ t_vec)
        out.append({**group, "target": target.float()})
    return out


def berm(**overrides) -> Berm:
    torch.manual_seed(1)
    return Berm(BermConfig(vocab_size=V, **overrides))


def berm_o(**overrides) -> BermO:
    torch.manual_seed(2)
    return BermO(BermOConfig(vocab_size=V, **overrides))


def centred(values: torch.Tensor) -> torch.Tensor:
    return values - values.mean()


@pytest.mark.parametrize("make", [berm, berm_o], ids=["berm", "berm_o"])
@pytest.mark.parametrize("tuned", [False, True], ids=["zero-shot", "tuned"])
def test_linear_start_fits_bm25_and_the_cosines_with_words_and_graph_silent(make, tuned: bool) -> None:
    train = groups(30, seed=3, tuned=tuned)
    model = make(use_tuned_query=tuned)
    weights = linear_start(model, train)
    assert weights == pytest.approx([2.0, 3.0, 1.5] if tuned else [2.0, 3.0], abs=1e-3)
    model.eval()
    with torch.no_grad():
        for group in groups(5, seed=4, tuned=tuned):  # held out: the start ranks as its targets do
            out = model(group)
            assert torch.count_nonzero(out["k_order"]) == 0
            torch.testing.assert_close(centred(out["score"]), centred(group["target"]), atol=1e-3, rtol=0)


def test_linear_start_refuses_no_groups() -> None:
    with pytest.raises(ValueError, match="no training groups"):
        linear_start(berm(), [])


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_the_epoch_with_the_best_selection_score_is_kept_the_start_included() -> None:
    train = groups(8, seed=5)
    config = DistillConfig(epochs=3, batch_queries=4, lr=1e-2)

    start = berm()
    before = parameters(start)
    worsening = iter([1.0, 0.5, 0.4, 0.3])  # the start scores best
    kept = train_student(start, train, config, progress=False, select=lambda model: next(worsening))
    assert (kept.epoch, kept.scores, len(kept.history)) == (0, [1.0, 0.5, 0.4, 0.3], 3)
    for name, value in parameters(start).items():
        torch.testing.assert_close(value, before[name])

    peak = berm()
    scores = iter([0.1, 0.2, 0.9, 0.3])  # epoch 2 scores best
    kept = train_student(peak, train, config, progress=False, select=lambda model: next(scores))
    assert kept.epoch == 2
    last = berm()
    train_student(last, train, DistillConfig(epochs=2, batch_queries=4, lr=1e-2), progress=False)
    for name, value in parameters(peak).items():  # same seed, same data: epoch 2's weights
        torch.testing.assert_close(value, parameters(last)[name])
