"""BERM-O: the online model, distilled from BERM, whose click-graph context is precomputed offline.

score = zero_order + k_order + bm25, as in BERM, but lighter (32-d words, 7 kernels, 16 hidden)
and with a k-order part that splits into an offline and an online half:

- offline, per node: each path's attention depends only on the node whose neighbors are
  aggregated, e_j = v_p . tanh(W_p nb_j + U_p node_vec) + b_p * w_j, so the context vector
  c_p = sum_j a_j nb_j and the attended edge weight w_p = sum_j a_j w_j are computed once per item
  (paths I-Q, I-Q-I) and once per query (paths Q-I, Q-I-Q): `precompute_contexts`.
- online, per pair: cos(c_p, the other side's vector) (item-side paths against q_vec, query-side
  paths against i_vec), w_p and a "has neighbors" flag per path -> MLP -> k_order:
  `forward_online`, which is what reranker/training/export.py writes to ONNX and
  reranker/serving/onnx_runner.py runs.

Choices where the paper is silent (the rest as in reranker/models/berm.py, whose blocks are reused):
- The query side and the item side have their own attention layers (two paths each).
- c_p sums the neighbor vectors as given (not renormalised); the online cosine normalises it, and
  a node with no neighbors on a path has c_p = 0, cosine 0, w_p = 0 and has = 0.
- `has` is float32 0/1 (not bool) so the online graph takes only int64 and float32 inputs.
- With `use_k_order=False` no k-order layers exist: contexts come back as zeros and k_order is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from reranker.models.berm import (
    PathAttention,
    ZeroOrder,
    check_word_init,
    check_batch,
    cosine,
    load_weights,
    read_config,
    save_checkpoint,
)
from reranker.text import Vocab

MODEL_VERSION = "berm-o-2"  # 2: the 0-order part reads the bi-encoder cosine
SIDES = {"query": slice(0, 2), "item": slice(2, 4)}  # which contract paths each side aggregates


@dataclass
class BermOConfig:
    vocab_size: int
    word_dim: int = 32
    kernels: int = 7
    hidden: int = 16  # k-order MLP: 3 * 4 paths -> hidden -> 1
    use_k_order: bool = True
    use_cosine: bool = True  # 0-order reads cos(q_vec, i_vec), as in BERM
    use_tuned_query: bool = False  # 0-order also reads cos(t_vec, i_vec), as in BERM
    vec_dim: int = 384  # D
    attn_dim: int = 16  # A, the width of each side's path attention
    word_init: str = "random"  # one of WORD_INITS, as in BERM
    model_version: str = MODEL_VERSION

    def __post_init__(self) -> None:
        check_word_init(self.word_init)


class BermO(nn.Module):
    name = "berm_o"
    paths = 4  # Q-I, Q-I-Q (query side), I-Q, I-Q-I (item side)

    def __init__(self, config: BermOConfig) -> None:
        super().__init__()
        self.config = config
        self.zero_order = ZeroOrder(config.vocab_size, config.word_dim, config.kernels, config.use_cosine,
                                    config.use_tuned_query)
        if config.use_k_order:
            self.query_attention = PathAttention(2, config.vec_dim, config.vec_dim, config.attn_dim, 1)
            self.item_attention = PathAttention(2, config.vec_dim, config.vec_dim, config.attn_dim, 1)
            self.k_mlp = nn.Sequential(nn.Linear(3 * self.paths, config.hidden), nn.ReLU(),
                                       nn.Linear(config.hidden, 1))
        self.bm25_affine = nn.Linear(1, 1)
        with torch.no_grad():
            self.bm25_affine.weight.fill_(1.0)
            self.bm25_affine.bias.zero_()

    # -- offline half ---------------------------------------------------------------------------

    def _contexts(self, node_vec: torch.Tensor, nb_vec: torch.Tensor, nb_w: torch.Tensor,
                  nb_mask: torch.Tensor, side: str) -> tuple[torch.Tensor, ...]:
        # node_vec [M, D], nb_vec [M, 2, K, D], nb_w / nb_mask [M, 2, K]
        if side not in SIDES:
            raise ValueError(f"side must be 'item' or 'query', got {side!r}")
        if nb_vec.dim() != 4 or nb_vec.shape[1] != 2 or nb_vec.shape[3] != self.config.vec_dim:
            raise ValueError(f"nb_vec must be [M, 2, K, {self.config.vec_dim}] (one side's two paths), "
                             f"got {tuple(nb_vec.shape)}")
        m, _, k, d = nb_vec.shape
        if not self.config.use_k_order:
            zeros = node_vec.new_zeros
            return zeros(m, 2, d), zeros(m, 2), zeros(m, 2), zeros(m, 2, k)
        layer = self.query_attention if side == "query" else self.item_attention
        attention = layer(nb_vec, nb_w, nb_mask, node_vec)  # [M, 2, K]
        ctx = torch.einsum("mpk,mpkd->mpd", attention, nb_vec)  # [M, 2, D]
        ctx_w = (attention * nb_w).sum(-1)  # [M, 2]
        has = nb_mask.any(-1).to(ctx.dtype)  # [M, 2]
        return ctx, ctx_w, has, attention

    def precompute_contexts(self, node_vec: torch.Tensor, nb_vec: torch.Tensor, nb_w: torch.Tensor,
                            nb_mask: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per node: context vectors [M, 2, D], attended edge weights [M, 2], has-flags [M, 2] (float).

        side "query": node_vec are queries and the two paths are Q-I, Q-I-Q; side "item": items, I-Q, I-Q-I.
        """
        ctx, ctx_w, has, _ = self._contexts(node_vec, nb_vec, nb_w, nb_mask, side)
        return ctx, ctx_w, has

    # -- online half ----------------------------------------------------------------------------

    def _parts(self, q_tokens, i_tokens, q_vec, i_vec, q_ctx, q_ctx_w, q_has, i_ctx, i_ctx_w, i_has, bm25,
               t_vec=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        zero_order = self.zero_order(q_tokens, i_tokens, q_vec, i_vec, t_vec)  # [N]
        if self.config.use_k_order:
            q_cos = cosine(q_ctx, i_vec.unsqueeze(1))  # [N, 2]
            q_side = torch.stack([q_cos, q_ctx_w.expand_as(q_cos), q_has.expand_as(q_cos)], dim=-1)  # [N, 2, 3]
            i_side = torch.stack([cosine(i_ctx, q_vec.unsqueeze(1)), i_ctx_w, i_has], dim=-1)  # [N, 2, 3]
            feats = torch.cat([q_side, i_side], dim=1).flatten(1)  # [N, 4 * 3], paths in contract order
            k_order = self.k_mlp(feats).squeeze(-1)  # [N]
        else:
            k_order = torch.zeros_like(zero_order)
        bm25_part = self.bm25_affine(bm25.unsqueeze(-1)).squeeze(-1)  # [N]
        return zero_order, k_order, bm25_part

    def forward_online(self, q_tokens: torch.Tensor, i_tokens: torch.Tensor, q_vec: torch.Tensor,
                       i_vec: torch.Tensor, q_ctx: torch.Tensor, q_ctx_w: torch.Tensor, q_has: torch.Tensor,
                       i_ctx: torch.Tensor, i_ctx_w: torch.Tensor, i_has: torch.Tensor, bm25: torch.Tensor,
                       t_vec: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(score, zero_order, k_order), [N] each, from tokens, vectors and precomputed contexts
        (`t_vec`, the tuned query encoder's vector, for a model that reads it)."""
        zero_order, k_order, bm25_part = self._parts(q_tokens, i_tokens, q_vec, i_vec, q_ctx, q_ctx_w, q_has,
                                                     i_ctx, i_ctx_w, i_has, bm25, t_vec)
        return zero_order + k_order + bm25_part, zero_order, k_order

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training path: the contract batch, contexts computed on the fly; same outputs as BERM."""
        check_batch(batch, self.paths, self.config.vec_dim, self.config.use_tuned_query)
        nb_vec, nb_w, nb_mask = batch["nb_vec"], batch["nb_w"], batch["nb_mask"]
        q = SIDES["query"]
        i = SIDES["item"]
        q_ctx, q_ctx_w, q_has, q_att = self._contexts(batch["q_vec"], nb_vec[:, q], nb_w[:, q], nb_mask[:, q], "query")
        i_ctx, i_ctx_w, i_has, i_att = self._contexts(batch["i_vec"], nb_vec[:, i], nb_w[:, i], nb_mask[:, i], "item")
        zero_order, k_order, bm25_part = self._parts(
            batch["q_tokens"], batch["i_tokens"], batch["q_vec"], batch["i_vec"],
            q_ctx, q_ctx_w, q_has, i_ctx, i_ctx_w, i_has, batch["bm25"], batch.get("t_vec"))
        return {"score": zero_order + k_order + bm25_part, "zero_order": zero_order, "k_order": k_order,
                "bm25": bm25_part, "attention": torch.cat([q_att, i_att], dim=1)}  # attention [N, 4, K]

    # -- checkpoints ----------------------------------------------------------------------------

    def save(self, folder: Path, extra: dict | None = None, vocab: Vocab | None = None) -> None:
        """Writes berm_o.pt, berm_o_config.json, berm_o_manifest.json (model version + `extra`), vocab.json."""
        save_checkpoint(self, folder, self.name, extra, vocab)

    @classmethod
    def load(cls, folder: Path) -> "BermO":
        folder = Path(folder)
        model = cls(read_config(BermOConfig, folder / f"{cls.name}_config.json"))
        load_weights(model, folder / f"{cls.name}.pt")
        return model
