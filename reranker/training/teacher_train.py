"""Fine-tune the teacher cross-encoder on the train split's grades (see reranker/models/teacher.py).

Restartable: the model, optimizer and step are checkpointed every `checkpoint_every` steps, and a
run that finds a checkpoint continues from it with the same seeded order of groups.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from indexer.records import Catalog
from reranker.models.teacher import Teacher

log = logging.getLogger(__name__)


@dataclass
class TeacherTrainConfig:
    epochs: int = 1
    lr: float = 3e-5
    # The one-logit head is new (random) on the bi-encoder checkpoint; at the encoder's rate it barely
    # moves in the few hundred steps a small shop's labels give, so it may learn at its own rate.
    head_lr: float | None = None  # None: the same as lr
    warmup_fraction: float = 0.06
    groups_per_step: int = 4
    max_judged: int = 4  # judged products per group (the most and least relevant kept first)
    random_negatives: int = 1
    bm25_negatives: int = 2
    bm25_negative_from_rank: int = 30
    bm25_negative_weight: float = 0.5
    min_gain_gap: float = 0.3
    pointwise_weight: float = 0.2
    max_queries: int | None = None  # a sample of train queries, for quick profiles
    checkpoint_every: int = 200
    seed: int = 13


@dataclass
class Group:
    query: str
    product_ids: list[str]
    titles: list[str]
    gains: list[float]
    weights: list[float]


def build_groups(
    catalog: Catalog, query_ids: list[str], bm25_top: dict[str, dict[str, float]], config: TeacherTrainConfig
) -> list[Group]:
    """One training group per train query: judged products plus random and deep-BM25 negatives."""
    rng = random.Random(config.seed)
    grades = catalog.judgments_by_query()
    all_products = sorted(catalog.products)
    query_ids = [q for q in sorted(query_ids) if q in grades]
    if config.max_queries is not None:
        query_ids = sorted(rng.sample(query_ids, min(config.max_queries, len(query_ids))))
    groups = []
    for q in query_ids:
        judged = sorted(grades[q].items(), key=lambda item: item[1])
        if len(judged) > config.max_judged:  # keep the extremes: they carry the clearest pairs
            rng.shuffle(middle := judged[1:-1])
            judged = [judged[0], judged[-1], *middle[: config.max_judged - 2]]
        ids = [p for p, _ in judged]
        gains = [g for _, g in judged]
        weights = [1.0] * len(ids)
        deep = [p for p in list(bm25_top.get(q, {}))[config.bm25_negative_from_rank :] if p not in grades[q]]
        for p in rng.sample(deep, min(config.bm25_negatives, len(deep))):
            ids.append(p), gains.append(0.0), weights.append(config.bm25_negative_weight)
        while len(ids) < len(judged) + config.bm25_negatives + config.random_negatives:
            p = rng.choice(all_products)
            if p not in grades[q] and p not in ids:
                ids.append(p), gains.append(0.0), weights.append(1.0)
        titles = [catalog.products[p].title for p in ids]
        groups.append(Group(catalog.queries[q].text, ids, titles, gains, weights))
    return groups


class GroupRankLoss(torch.nn.Module):
    """RankNet over the pairs of one group whose gains differ by >= min_gap, plus pointwise BCE."""

    def __init__(self, min_gap: float, pointwise_weight: float, max_gain: float) -> None:
        super().__init__()
        self.min_gap, self.pointwise_weight, self.max_gain = min_gap, pointwise_weight, max_gain

    def forward(self, logits: torch.Tensor, gains: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if not (logits.shape == gains.shape == weights.shape) or logits.dim() != 1:
            raise ValueError(
                f"logits, gains and weights must be 1-d of one length, got {tuple(logits.shape)}, "
                f"{tuple(gains.shape)}, {tuple(weights.shape)}"
            )
        gap = gains[:, None] - gains[None, :]  # [n, n]: > 0 where row should outrank column
        pair_w = (gap >= self.min_gap).float() * gap * weights[:, None] * weights[None, :]
        diff = logits[:, None] - logits[None, :]
        pairwise = (pair_w * torch.nn.functional.softplus(-diff)).sum() / pair_w.sum().clamp(min=1e-6)
        pointwise = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, gains / self.max_gain, weight=weights
        )
        return pairwise + self.pointwise_weight * pointwise


def train_teacher(
    teacher: Teacher, groups: list[Group], config: TeacherTrainConfig, checkpoint_dir: Path, max_gain: float = 2.0
) -> list[float]:
    """Fine-tune in place; returns the mean loss of each logged window. Resumes from checkpoint_dir."""
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    order = []
    for epoch in range(config.epochs):
        perm = list(range(len(groups)))
        random.Random(config.seed + epoch).shuffle(perm)
        order += perm
    steps = [order[i : i + config.groups_per_step] for i in range(0, len(order), config.groups_per_step)]
    head = [p for n, p in teacher.model.named_parameters() if n.startswith("classifier.")]
    body = [p for n, p in teacher.model.named_parameters() if not n.startswith("classifier.")]
    optimizer = torch.optim.AdamW([{"params": body, "lr": config.lr},
                                   {"params": head, "lr": config.head_lr or config.lr}], weight_decay=0.01)
    warmup = max(1, int(config.warmup_fraction * len(steps)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (len(steps) - s) / max(1, len(steps) - warmup)))
    )
    loss_fn = GroupRankLoss(config.min_gain_gap, config.pointwise_weight, max_gain)
    start = 0
    state_path = Path(checkpoint_dir) / "train_state.pt"
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        teacher.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["step"]
        log.info("resuming teacher training at step %d of %d", start, len(steps))
    teacher.model.train()
    history, window = [], []
    bar = tqdm(range(start, len(steps)), initial=start, total=len(steps), desc="teacher fine-tune", unit="step")
    for step in bar:
        batch = [groups[i] for i in steps[step]]
        queries = [g.query for g in batch for _ in g.product_ids]
        logits = teacher.logits(queries, [title for g in batch for title in g.titles])
        loss, offset = 0.0, 0
        for g in batch:
            n = len(g.product_ids)
            loss = loss + loss_fn(logits[offset : offset + n], torch.tensor(g.gains), torch.tensor(g.weights))
            offset += n
        loss = loss / len(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(teacher.model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        window.append(loss.item())
        if len(window) == 50:
            history.append(sum(window) / len(window))
            bar.set_postfix(loss=f"{history[-1]:.4f}")
            window = []
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < len(steps):
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
            torch.save({"model": teacher.model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "step": step + 1}, state_path)
    if window:
        history.append(sum(window) / len(window))
    teacher.model.eval()
    state_path.unlink(missing_ok=True)
    return history


def config_json(config: TeacherTrainConfig) -> str:
    return json.dumps(asdict(config), sort_keys=True)
