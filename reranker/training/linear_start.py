"""The students' linear start: before distillation, BERM or BERM-O becomes the best linear fit of its
targets on the inputs that need no training (normalised BM25 and the bi-encoder cosines), with the
word-kernel and k-order parts silent; distillation then learns what the words and the graph add.

Why: the deployed teacher is mostly BM25 plus the bi-encoder cosine (quick's dev mix: BM25 0.4,
cosine 0.4, cross-encoder 0.2), and students started from random weights lost that part of its gain
on held-out queries (quick test: teacher +0.018 NDCG@10 over BM25, BERM-O +0.001, while
min-max BM25 + cosine alone gives +0.018). Started here, a student begins where that hybrid is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from reranker.models.berm import TUNED_KEY, cosine

RIDGE = 1e-6  # of the mean feature variance: keeps the solve defined when a column is constant


def linear_features(model: nn.Module, group: dict[str, torch.Tensor]) -> torch.Tensor:
    """[N, C] the inputs the model weighs linearly: normalised BM25, then (as the model reads them)
    the zero-shot cosine and the tuned query encoder's cosine."""
    zero_order = model.zero_order
    cols = [group["bm25"]]
    if zero_order.use_cosine:
        cols.append(cosine(group["q_vec"], group["i_vec"]))
    if zero_order.use_tuned:
        cols.append(cosine(group[TUNED_KEY], group["i_vec"]))
    return torch.stack(cols, dim=-1)


@torch.no_grad()
def linear_start(model: nn.Module, groups: Sequence[dict[str, torch.Tensor]], max_groups: int = 400) -> list[float]:
    """Set `model`'s BM25 and cosine weights to the least-squares fit of the groups' targets (each
    query centred: the ranking losses ignore a per-query shift) and silence its word kernels and
    k-order part; returns the fitted weights [bm25, cosine..., ]. Uses up to `max_groups` groups,
    evenly spread. Raises ValueError when there are no groups."""
    if not len(groups):
        raise ValueError("no training groups")
    picks = np.unique(np.linspace(0, len(groups) - 1, min(len(groups), max_groups)).round().astype(int))
    xs, ys = [], []
    for index in picks.tolist():
        group = groups[index]
        x = linear_features(model, group).double()
        y = group["target"].double()
        xs.append(x - x.mean(0))
        ys.append(y - y.mean())
    x, y = torch.cat(xs), torch.cat(ys)
    gram = x.T @ x
    ridge = RIDGE * float(gram.diagonal().mean()) + 1e-12
    weights = torch.linalg.solve(gram + ridge * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
    model.bm25_affine.weight.fill_(float(weights[0]))
    model.bm25_affine.bias.zero_()
    out = model.zero_order.out
    kernels = out.weight.shape[1] - (x.shape[1] - 1)
    out.weight[0, :kernels] = 0.0  # the word kernels start silent
    out.weight[0, kernels:] = weights[1:].to(out.weight.dtype)
    out.bias.zero_()
    if hasattr(model, "k_mlp"):  # so does the k-order part (its last layer; the rest keeps its init)
        model.k_mlp[-1].weight.zero_()
        model.k_mlp[-1].bias.zero_()
    return [float(w) for w in weights]
