"""A query encoder distilled from the deployed teacher: the MiniLM bi-encoder's query side, fine-tuned
so that `scale * cos(query vector, item vector)` orders each query's candidates as the teacher does.

Why: the students read the zero-shot bi-encoder's cosine, which knows generic similarity but not
this shop's notion of relevance, and their word embeddings cannot learn that from a few thousand
queries. The pretrained Transformer can (Margin-MSE bi-encoders, arXiv 2010.02666; query-encoder
distillation, 2306.11550); it runs online once per new query anyway.

Choices:
- Item vectors stay fixed (the catalog's zero-shot vectors): the FAISS stores, the click graph's
  stand-ins and every precomputed item context stay valid, and only a query is encoded online.
  The tuned encoder is a second query encoder beside the zero-shot one, whose vectors the
  query-side stores and stand-ins keep using; the students read its cosine as a feature of its own.
- Loss per query group: listwise KL(softmax(target) || softmax(scale * cos)) plus Margin-MSE on
  `margin_pairs` random partners per candidate; targets are the deployed teacher's scores times 4,
  as the students get them (`student_data.mixed_targets`). `scale` is learned (log-parametrised).
- Early stop on dev: the dev queries' listwise KL to the teacher after each epoch; the best epoch's
  weights are kept (epoch 0, the zero-shot encoder, included), `patience` epochs without a better one stop.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from reranker.training.export import MeanPooled

log = logging.getLogger(__name__)


@dataclass
class QueryEncoderConfig:
    epochs: int = 6
    lr: float = 3e-5
    scale_lr: float = 1e-2
    batch_queries: int = 32
    listwise_weight: float = 1.0
    margin_weight: float = 1.0
    margin_pairs: int = 4
    init_scale: float = 20.0  # cosines live in a narrow band: 20 spreads them over the targets' range
    patience: int = 2
    max_tokens: int = 32  # queries are short; longer ones are cut
    seed: int = 13


@dataclass
class QueryGroup:
    """One query's candidates: its text, the items' fixed unit vectors [n, D], the teacher's targets [n]."""

    text: str
    items: np.ndarray
    target: np.ndarray


@dataclass
class QueryEncoderResult:
    history: list[float] = field(default_factory=list)  # mean train loss per epoch
    dev_history: list[float] = field(default_factory=list)  # dev listwise KL after each epoch (index 0: zero-shot)
    best_epoch: int = 0  # 0: no epoch beat the zero-shot encoder on dev
    scale: float = 0.0


class QueryTower(nn.Module):
    """The bi-encoder's transformer with its mean pooling and L2 normalisation, plus a learned scale."""

    def __init__(self, transformer: nn.Module, tokenizer, init_scale: float, max_tokens: int) -> None:
        super().__init__()
        # the same pooling the exported encoder runs at serving time
        self.encoder, self.tokenizer, self.max_tokens = MeanPooled(transformer), tokenizer, max_tokens
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def forward(self, texts: list[str]) -> torch.Tensor:
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                 return_tensors="pt")
        return self.encoder(**encoded)  # [B, D], unit length


def group_loss(scores: torch.Tensor, target: torch.Tensor, config: QueryEncoderConfig,
               generator: torch.Generator | None) -> torch.Tensor:
    """Listwise KL plus Margin-MSE for one query's candidates (scores, target: [n]); 0 for n < 2.
    `generator` None: the listwise term only (the deterministic dev loss)."""
    if scores.dim() != 1 or scores.shape != target.shape:
        raise ValueError(f"scores and target must be 1-d of one length, got {tuple(scores.shape)}, {tuple(target.shape)}")
    n = scores.shape[0]
    if n < 2:
        return scores.sum() * 0.0
    loss = config.listwise_weight * F.kl_div(F.log_softmax(scores, -1), F.log_softmax(target, -1),
                                             log_target=True, reduction="sum")
    if generator is not None and config.margin_weight:
        first = torch.arange(n).repeat_interleave(config.margin_pairs)  # [n * m]
        # a partner other than itself: an offset in 1..n-1
        second = (first + torch.randint(1, n, first.shape, generator=generator)) % n
        loss = loss + config.margin_weight * F.mse_loss(scores[first] - scores[second], target[first] - target[second])
    return loss


def _batch_loss(tower: QueryTower, groups: list[QueryGroup], config: QueryEncoderConfig,
                generator: torch.Generator | None) -> torch.Tensor:
    vectors = tower([g.text for g in groups])  # [B, D]
    scale = tower.log_scale.exp()
    losses = [group_loss(scale * (torch.from_numpy(g.items) @ vectors[b]), torch.from_numpy(g.target), config,
                         generator) for b, g in enumerate(groups)]
    return torch.stack(losses).mean()


@torch.inference_mode()
def dev_loss(tower: QueryTower, groups: list[QueryGroup], config: QueryEncoderConfig) -> float:
    """Mean listwise KL to the teacher over dev groups (eval mode, no sampling)."""
    tower.eval()
    total = 0.0
    for start in range(0, len(groups), config.batch_queries):
        part = groups[start:start + config.batch_queries]
        total += _batch_loss(tower, part, config, None).item() * len(part)
    return total / max(1, len(groups))


def train_query_encoder(bi_encoder, train: list[QueryGroup], dev: list[QueryGroup], config: QueryEncoderConfig,
                        progress: bool = True):
    """A tuned copy of the sentence-transformers `bi_encoder` (left as it is) and the training record."""
    if not train:
        raise ValueError("no training groups for the query encoder")
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    tuned = copy.deepcopy(bi_encoder)
    tower = QueryTower(tuned[0].auto_model, tuned.tokenizer, config.init_scale, config.max_tokens)
    optimizer = torch.optim.AdamW([{"params": list(tower.encoder.transformer.parameters()), "lr": config.lr},
                                   {"params": [tower.log_scale], "lr": config.scale_lr}], weight_decay=0.01)
    generator = torch.Generator().manual_seed(config.seed)
    result = QueryEncoderResult()
    best = dev_loss(tower, dev, config) if dev else float("inf")
    result.dev_history.append(best)
    best_state = copy.deepcopy(tower.state_dict())
    order = list(range(len(train)))
    since_best = 0
    for epoch in range(1, config.epochs + 1):
        random.Random(config.seed + epoch).shuffle(order)
        steps = [order[s:s + config.batch_queries] for s in range(0, len(order), config.batch_queries)]
        tower.train()
        total = 0.0
        for step in tqdm(steps, desc=f"query encoder epoch {epoch}/{config.epochs}", disable=not progress,
                         leave=False):
            loss = _batch_loss(tower, [train[i] for i in step], config, generator)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(tower.parameters(), 1.0)
            optimizer.step()
            total += loss.item()
        result.history.append(total / len(steps))
        current = dev_loss(tower, dev, config) if dev else -float(epoch)
        result.dev_history.append(current)
        log.info("query encoder epoch %d/%d: train loss %.4f, dev KL %.4f (zero-shot %.4f)", epoch, config.epochs,
                 result.history[-1], current, result.dev_history[0])
        if current < best:
            best, result.best_epoch, since_best = current, epoch, 0
            best_state = copy.deepcopy(tower.state_dict())
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    tower.load_state_dict(best_state)
    tower.eval()
    result.scale = float(tower.log_scale.detach().exp())
    return tuned, result


def save_query_encoder(encoder, folder: Path) -> None:
    """The tuned sentence-transformers model, loadable with `load_query_encoder`."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    encoder.save(str(folder))


def load_query_encoder(folder: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")
