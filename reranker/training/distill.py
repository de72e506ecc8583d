"""Distill a student (BERM from the teacher, BERM-O from BERM) on per-query groups of candidates.

A group is one query's candidates: the contract tensors of reranker/models/berm.py for its n pairs,
plus `target` float32 [n] (the teacher's logit, or BERM's score when distilling BERM-O) and
optionally `gain` float32 [n] (human grades, NaN where unlabeled).

loss = MSE(score, target)
     + margin_weight * MarginMSE(score_i - score_j, target_i - target_j)   over random pairs in a group
     + hard_label_weight * RankNet(score_i - score_j)                     over labeled pairs in a group
                                                                           with gain_i - gain_j >= min_gain_gap
     + listwise_weight * KL(softmax(target / T) || softmax(score / T))     per group, averaged over groups

Choices where the paper is silent:
- MarginMSE pairs: every candidate of a group with at least two candidates is paired with
  `margin_pairs` partners drawn uniformly (with replacement) from the rest of its group, afresh
  each step, from torch's seeded generator.
- RankNet uses every ordered labeled pair of a group whose gains differ by >= min_gain_gap
  (unweighted, log(1 + exp(-(s_i - s_j))), averaged); a step without such pairs adds 0.
- The listwise KL is the distillation loss of Hinton et al. on each query's candidate list: it
  weighs the top of the list (where NDCG is decided) more than the pointwise and pairwise terms
  do. T = `listwise_temperature`, chosen on dev; it is multiplied by T^2 (Hinton's correction, so
  the gradient scale does not depend on T). Groups with one candidate add 0.
- Each epoch visits the groups in a new seeded order, `batch_queries` groups a step; the groups of
  a step are concatenated into one batch with the token ids padded (0) to the step's longest query
  and title (and the neighbor lists to the longest K, masked). Adam, gradient norm clipped at
  `grad_clip` (0 = off). The reported epoch loss is the mean of its steps' losses.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from reranker.models.berm import BATCH_KEYS, TUNED_KEY, check_batch

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    epochs: int
    lr: float = 2e-3
    batch_queries: int = 16  # groups (queries) per step
    margin_weight: float = 1.0
    hard_label_weight: float = 0.5
    seed: int = 13
    margin_pairs: int = 4  # random partners per candidate for MarginMSE
    min_gain_gap: float = 0.5  # RankNet uses labeled pairs at least this far apart
    grad_clip: float = 5.0  # max gradient norm, 0 = no clipping
    listwise_weight: float = 0.0  # listwise KL to the targets per group (0 = off)
    listwise_temperature: float = 1.0


# ----------------------------------------------------------------------------------------------
# losses


def _shapes(*tensors: torch.Tensor) -> str:
    return ", ".join(str(tuple(t.shape)) for t in tensors)


def _check_1d(names: str, *tensors: torch.Tensor) -> None:
    if any(t.dim() != 1 for t in tensors) or len({t.shape[0] for t in tensors}) != 1:
        raise ValueError(f"{names} must be 1-d of one length, got {_shapes(*tensors)}")


class ScoreMSELoss(nn.Module):
    """Pointwise MSE between the student's scores and the targets."""

    def forward(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_1d("scores and targets", scores, targets)
        return F.mse_loss(scores, targets)


class MarginMSELoss(nn.Module):
    """MSE between score margins and target margins over given index pairs (i, j)."""

    def forward(self, scores: torch.Tensor, targets: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        _check_1d("scores and targets", scores, targets)
        if pairs.dtype != torch.int64 or pairs.dim() != 2 or pairs.shape[1] != 2:
            raise ValueError(f"pairs must be int64 [M, 2], got {str(pairs.dtype).removeprefix('torch.')} "
                             f"{tuple(pairs.shape)}")
        if pairs.numel() and (pairs.min() < 0 or pairs.max() >= scores.shape[0]):
            raise ValueError(f"pairs index out of range for {scores.shape[0]} scores")
        if pairs.shape[0] == 0:
            return scores.sum() * 0.0
        i, j = pairs[:, 0], pairs[:, 1]
        return F.mse_loss(scores[i] - scores[j], targets[i] - targets[j])


class RankNetLoss(nn.Module):
    """Pairwise logistic loss on labeled pairs of one group whose gains differ by >= min_gap."""

    def __init__(self, min_gap: float = 0.5) -> None:
        super().__init__()
        self.min_gap = min_gap

    def forward(self, scores: torch.Tensor, gains: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        _check_1d("scores, gains and groups", scores, gains, groups)
        if groups.dtype != torch.int64:
            raise ValueError(f"groups must be int64, got {str(groups.dtype).removeprefix('torch.')}")
        labeled = ~torch.isnan(gains)
        gap = gains[:, None] - gains[None, :]  # [N, N], NaN where either is unlabeled
        use = (groups[:, None] == groups[None, :]) & labeled[:, None] & labeled[None, :]
        use = use & (torch.nan_to_num(gap, nan=0.0) >= self.min_gap)  # i better than j
        if not bool(use.any()):
            return scores.sum() * 0.0
        diff = scores[:, None] - scores[None, :]  # [N, N]
        return F.softplus(-diff[use]).mean()


class ListwiseKLLoss(nn.Module):
    """Mean over groups of T^2 * KL(softmax(targets / T) || softmax(scores / T)) within each group."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, scores: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        _check_1d("scores, targets and groups", scores, targets, groups)
        if groups.dtype != torch.int64:
            raise ValueError(f"groups must be int64, got {str(groups.dtype).removeprefix('torch.')}")
        t = self.temperature
        same = groups[:, None] == groups[None, :]  # [N, N]
        sizes = same.sum(1)  # [N], the size of each row's group
        # log-softmax within each group: logsumexp over the row's group members
        def log_softmax(values: torch.Tensor) -> torch.Tensor:
            grid = (values / t)[None, :].expand(len(values), -1).masked_fill(~same, float("-inf"))
            return values / t - torch.logsumexp(grid, dim=1)

        log_p, log_q = log_softmax(targets), log_softmax(scores)
        per_item = log_p.exp() * (log_p - log_q)  # [N]
        used = sizes > 1
        if not bool(used.any()):
            return scores.sum() * 0.0
        per_group = torch.zeros(int(groups.max()) + 1, dtype=scores.dtype).index_add(0, groups[used], per_item[used])
        n_groups = int(torch.unique(groups[used]).numel())
        return t * t * per_group.sum() / n_groups


def sample_pairs(groups: torch.Tensor, per_item: int) -> torch.Tensor:
    """[M, 2] pairs (i, j), j != i from i's group; groups must be sorted ids 0..G-1 (as `collate` makes)."""
    if groups.numel() and bool((groups[1:] < groups[:-1]).any()):
        raise ValueError("groups must be sorted")
    sizes = torch.bincount(groups)  # [G]
    starts = torch.cumsum(sizes, 0) - sizes  # [G]
    n = sizes[groups]  # [N]
    anchors = torch.arange(groups.shape[0])[n > 1].repeat(per_item)  # [M]
    n_a, start_a = n[anchors], starts[groups[anchors]]
    offset = 1 + (torch.rand(anchors.shape[0]) * (n_a - 1)).long().clamp(max=n_a - 2)  # in [1, n - 1]
    partners = start_a + (anchors - start_a + offset) % n_a
    return torch.stack([anchors, partners], dim=1)


class DistillLoss(nn.Module):
    """MSE + margin_weight * MarginMSE (random in-group pairs) + hard_label_weight * RankNet
    + listwise_weight * listwise KL."""

    def __init__(self, config: DistillConfig) -> None:
        super().__init__()
        self.config = config
        self.mse, self.margin, self.ranknet = ScoreMSELoss(), MarginMSELoss(), RankNetLoss(config.min_gain_gap)
        self.listwise = ListwiseKLLoss(config.listwise_temperature)

    def forward(self, scores: torch.Tensor, targets: torch.Tensor, gains: torch.Tensor,
                groups: torch.Tensor) -> torch.Tensor:
        _check_1d("scores, targets, gains and groups", scores, targets, gains, groups)
        loss = self.mse(scores, targets)
        if self.config.margin_weight:
            pairs = sample_pairs(groups, self.config.margin_pairs)
            loss = loss + self.config.margin_weight * self.margin(scores, targets, pairs)
        if self.config.hard_label_weight:
            loss = loss + self.config.hard_label_weight * self.ranknet(scores, gains, groups)
        if self.config.listwise_weight:
            loss = loss + self.config.listwise_weight * self.listwise(scores, targets, groups)
        return loss


# ----------------------------------------------------------------------------------------------
# batches


@dataclass
class StepBatch:
    batch: dict[str, torch.Tensor]  # the contract tensors of all pairs of the step
    target: torch.Tensor  # [N]
    gain: torch.Tensor  # [N], NaN where unlabeled
    group: torch.Tensor  # [N] int64, the group's position in the step


def check_group(group: dict[str, torch.Tensor], index: int) -> int:
    """Validate one training group; returns its number of candidates."""
    missing = [key for key in (*BATCH_KEYS, "target") if key not in group]
    if missing:
        raise ValueError(f"group {index}: missing keys {missing}")
    try:
        n, _ = check_batch(group, group["nb_vec"].shape[1], group["q_vec"].shape[-1])
    except ValueError as err:
        raise ValueError(f"group {index}: {err}") from None
    for key in ("target", "gain"):
        value = group.get(key)
        if value is not None and (value.dtype != torch.float32 or tuple(value.shape) != (n,)):
            raise ValueError(f"group {index}: {key} must be float32 [{n}], got "
                             f"{str(value.dtype).removeprefix('torch.')} {tuple(value.shape)}")
    return n


def _pad(tensor: torch.Tensor, dim: int, size: int, value: float | bool = 0) -> torch.Tensor:
    if tensor.shape[dim] == size:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = size - tensor.shape[dim]
    return torch.cat([tensor, tensor.new_full(shape, value)], dim=dim)


def collate(groups: list[dict[str, torch.Tensor]]) -> StepBatch:
    """Concatenate groups into one batch, padding Lq, Li (and K) to the longest in the step."""
    lq = max(g["q_tokens"].shape[1] for g in groups)
    li = max(g["i_tokens"].shape[1] for g in groups)
    k = max(g["nb_mask"].shape[2] for g in groups)
    pad_dims = {"q_tokens": (1, lq), "i_tokens": (1, li), "nb_vec": (2, k), "nb_w": (2, k), "nb_mask": (2, k)}
    batch = {}
    # the tuned query encoder's vectors travel with the groups of a model that reads them
    keys = (*BATCH_KEYS, TUNED_KEY) if all(TUNED_KEY in g for g in groups) else BATCH_KEYS
    for key in keys:
        dim, size = pad_dims.get(key, (0, None))
        parts = [g[key] if size is None else _pad(g[key], dim, size) for g in groups]
        batch[key] = torch.cat(parts, dim=0)
    sizes = [g["q_tokens"].shape[0] for g in groups]
    target = torch.cat([g["target"] for g in groups])
    gain = torch.cat([g["gain"] if "gain" in g else torch.full((n,), float("nan")) for g, n in zip(groups, sizes)])
    group = torch.repeat_interleave(torch.arange(len(groups)), torch.tensor(sizes))
    return StepBatch(batch, target, gain, group)


# ----------------------------------------------------------------------------------------------
# training and scoring


@dataclass
class Trained:
    """What `train_student` did: the mean loss of each epoch and, with a `select` score, that score
    before training (epoch 0) and after each epoch, and the epoch whose weights the model kept."""

    history: list[float]
    scores: list[float] = field(default_factory=list)
    epoch: int | None = None


def train_student(model: nn.Module, groups: Sequence[dict[str, torch.Tensor]], config: DistillConfig,
                  progress: bool = True, select: Callable[[nn.Module], float] | None = None) -> Trained:
    """Train `model` (BERM or BERM-O) in place on `groups`. With `select` (higher is better, e.g. dev
    NDCG@10; called in eval mode), the model ends with the weights of the best epoch, the weights it
    started with (epoch 0) included."""
    if not groups:
        raise ValueError("no training groups")
    result = Trained([])
    best_state = None
    if select is not None:
        model.eval()
        result.scores.append(float(select(model)))
        result.epoch, best_state = 0, copy.deepcopy(model.state_dict())
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    loss_fn = DistillLoss(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    name = getattr(model, "name", type(model).__name__)
    order = list(range(len(groups)))
    history: list[float] = []
    model.train()
    for epoch in range(config.epochs):
        random.shuffle(order)
        steps = [order[s : s + config.batch_queries] for s in range(0, len(order), config.batch_queries)]
        total = 0.0
        for step in tqdm(steps, desc=f"{name} epoch {epoch + 1}/{config.epochs}", disable=not progress,
                         leave=False):
            # groups may be built lazily (a Sequence), so each is checked when first used
            built = [groups[i] for i in step]
            for i, group in zip(step, built):
                check_group(group, i)
            sb = collate(built)
            loss = loss_fn(model(sb.batch)["score"], sb.target, sb.gain, sb.group)
            optimizer.zero_grad()
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            total += loss.item()
        history.append(total / len(steps))
        log.info("%s epoch %d/%d: loss %.4f", name, epoch + 1, config.epochs, history[-1])
        if select is not None:
            model.eval()
            result.scores.append(float(select(model)))
            if result.scores[-1] > result.scores[result.epoch]:
                result.epoch, best_state = epoch + 1, copy.deepcopy(model.state_dict())
            log.info("%s epoch %d: selection score %.4f", name, epoch + 1, result.scores[-1])
            model.train()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.history = history
    return result


@torch.inference_mode()
def score_groups(model: nn.Module, groups: Sequence[dict[str, torch.Tensor]], batch_queries: int = 64
                 ) -> list[np.ndarray]:
    """The model's scores for each group's candidates (eval mode, batched), e.g. BERM-O's targets."""
    model.eval()
    out: list[np.ndarray] = []
    for start in range(0, len(groups), batch_queries):
        chunk = [groups[i] for i in range(start, min(start + batch_queries, len(groups)))]
        sb = collate([{**g, "target": torch.zeros(g["q_tokens"].shape[0])} for g in chunk])
        scores = model(sb.batch)["score"].numpy()
        sizes = [g["q_tokens"].shape[0] for g in chunk]
        out.extend(np.split(scores, np.cumsum(sizes)[:-1]))
    return out
