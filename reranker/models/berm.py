"""BERM: the student relevance model distilled from the teacher (Liu et al., EMNLP 2022 Industry).

score = zero_order + k_order + bm25, three scalars per (query, item) pair, so an explanation that
lists the three parts (and the neighbors that carried the attention) is exact.

- 0-order: the pair's own words. Word embeddings, the cosine interaction matrix between query and
  item words, K-NRM RBF kernel pooling, a linear layer.
- k-order: the pair's context in the click graph, along four metapaths ("Q-I", "Q-I-Q", "I-Q",
  "I-Q-I"). Per path, attention over the K neighbors conditioned on the pair,
  e_j = v_p . tanh(W_p nb_j + U_p [q_vec ; i_vec]) + b_p * w_j, then four attended features
  (cos to the item, cos to the query, edge weight, "has neighbors") per path into a small MLP.
- bm25: a learned affine of the normalised BM25 score.

Input contract (one dict of tensors for N pairs; P = 4 paths, K neighbors, D = 384): `q_tokens`
int64 [N, Lq], `i_tokens` int64 [N, Li] (0 pad, 1 unknown), `q_vec`, `i_vec` float32 [N, D],
`nb_vec` float32 [N, P, K, D], `nb_w` float32 [N, P, K], `nb_mask` bool [N, P, K], `bm25`
float32 [N]; with `use_tuned_query`, also `t_vec` float32 [N, D], the query's vector from the
teacher-distilled query encoder (reranker/training/query_encoder.py).

Choices where the paper is silent:
- Kernels follow K-NRM: mu = 1.0 (exact match, sigma 1e-3), then evenly spaced soft kernels from
  1 - 1/(n-1) down to -1 + 1/(n-1) (for 11: 0.9, 0.7, ..., -0.9) with sigma 0.1.
- Kernel pooling sums each query word's kernel values over the item's words and takes log1p
  (MatchZoo's K-NRM), not K-NRM's log(max(x, 1e-10)) * 0.01: the feature is bounded, >= 0, has no
  cliff at the clamp, and a query word with no match adds exactly 0. Query words are then summed.
- Unknown words (id 1) are masked like padding in the interaction matrix: two unknown words are
  not known to be the same word, and their shared embedding would fake an exact match.
- Word embeddings start N(0, 1) (`word_init="random"`) or from static vectors distilled from the
  MiniLM bi-encoder (`word_init="minilm"` or "minilm-unweighted", reranker/training/word_vectors.py, copied in by
  `ZeroOrder.init_word_vectors`); either way they are trained. The interaction is a cosine, so
  scale does not matter to the score.
- The tuned query encoder's cosine with the (fixed, zero-shot) item vector is one more input of
  the 0-order linear layer, beside the zero-shot cosine: a pair-only signal, so it belongs to the
  pair's own part and the explanation (zero_order + k_order + bm25) still adds up.
- Attention: W_p is D -> attn_dim, U_p is 2D -> attn_dim (no bias), v_p is attn_dim -> 1, b_p a
  scalar per path times the edge weight. W_p and U_p start N(0, 1/m) where m is the number of
  unit vectors they read (1 and 2), so tanh starts in its working range.
- Masked softmax: logits of padded neighbors are set to -1e9 and the weights multiplied by the
  mask, so a path with no neighbors gets all-zero weights, zero features and a "has" flag of 0.
- Cosines L2-normalise their inputs again (eps 1e-8), so a zero (padded) vector has cosine 0.
- The bm25 part starts as the identity (weight 1, bias 0).
- `use_k_order=False` builds no k-order layers and returns k_order = 0 and attention = 0 (the
  ablation "BERM without k-order context").
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reranker.text import PAD_ID, UNK_ID, Vocab

log = logging.getLogger(__name__)

MODEL_VERSION = "berm-2"  # 2: the 0-order part reads the bi-encoder cosine
COSINE_INIT = 4.0
PATHS = ("Q-I", "Q-I-Q", "I-Q", "I-Q-I")
BATCH_KEYS = ("q_tokens", "i_tokens", "q_vec", "i_vec", "nb_vec", "nb_w", "nb_mask", "bm25")
TUNED_KEY = "t_vec"  # the tuned query encoder's vector, in batches of models that read it
_MASKED_LOGIT = -1e9
NORM_EPS = 1e-8  # as F.normalize's eps: a zero vector has cosine 0 with anything
# how a student's word embeddings start (its config's word_init): N(0, 1), or MiniLM's static vectors
# with model2vec's frequency weights or without them (reranker/training/word_vectors.py)
WORD_INITS = ("random", "minilm", "minilm-unweighted")

# ----------------------------------------------------------------------------------------------
# building blocks (shared with BERM-O)


def check_batch(batch: dict[str, torch.Tensor], paths: int, dim: int, tuned: bool = False) -> tuple[int, int]:
    """Validate a contract batch (with `tuned`, its `t_vec` too); returns (N, K). Raises ValueError
    naming the first bad tensor."""
    missing = [key for key in (*BATCH_KEYS, *((TUNED_KEY,) if tuned else ())) if key not in batch]
    if missing:
        raise ValueError(f"batch is missing keys {missing}")
    n = batch["q_tokens"].shape[0] if batch["q_tokens"].dim() == 2 else -1
    k = batch["nb_mask"].shape[2] if batch["nb_mask"].dim() == 3 else -1
    specs = {  # key: (dtype, shape with -1 for a free length, shape as written in the contract)
        "q_tokens": (torch.int64, (n, -1), "[N, Lq]"),
        "i_tokens": (torch.int64, (n, -1), "[N, Li]"),
        "q_vec": (torch.float32, (n, dim), "[N, D]"),
        "i_vec": (torch.float32, (n, dim), "[N, D]"),
        "nb_vec": (torch.float32, (n, paths, k, dim), "[N, P, K, D]"),
        "nb_w": (torch.float32, (n, paths, k), "[N, P, K]"),
        "nb_mask": (torch.bool, (n, paths, k), "[N, P, K]"),
        "bm25": (torch.float32, (n,), "[N]"),
    }
    if tuned:
        specs[TUNED_KEY] = (torch.float32, (n, dim), "[N, D]")
    for key, (dtype, shape, written) in specs.items():
        tensor = batch[key]
        ok = tensor.dtype == dtype and tensor.dim() == len(shape)
        ok = ok and all(want == -1 or got == want for got, want in zip(tensor.shape, shape))
        if not ok or n < 0 or k < 0:
            expected = ", ".join("?" if s == -1 else str(s) for s in shape)
            raise ValueError(f"{key} must be {str(dtype).removeprefix('torch.')} {written} = [{expected}], "
                             f"got {str(tensor.dtype).removeprefix('torch.')} {tuple(tensor.shape)}")
    return n, k


def kernel_mus(n_kernels: int) -> list[float]:
    """K-NRM kernel centres: 1.0 (exact match), then n-1 soft kernels evenly spaced in (-1, 1)."""
    if n_kernels < 2:
        raise ValueError(f"kernels must be >= 2 (exact match plus soft kernels), got {n_kernels}")
    bin_size = 2.0 / (n_kernels - 1)
    return [1.0] + [1.0 - bin_size / 2 - i * bin_size for i in range(n_kernels - 1)]


def kernel_sigmas(n_kernels: int) -> list[float]:
    return [1e-3] + [0.1] * (n_kernels - 1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine along the last dim, broadcasting; 0 where either side is a zero vector.

    The dot product over the two norms, not the product of normalised copies (F.normalize): the
    same value, but the exported graph divides [N] numbers instead of two [N, D] arrays.
    """
    return (a * b).sum(-1) / (_norm(a) * _norm(b))


def _norm(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=-1).clamp_min(NORM_EPS)


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim of the real entries; an all-masked row gives all zeros (no NaN)."""
    weights = torch.softmax(logits.masked_fill(~mask, _MASKED_LOGIT), dim=-1)
    return weights * mask.to(weights.dtype)


class KernelPooling(nn.Module):
    """RBF kernels over an interaction matrix -> one soft-match count per kernel."""

    def __init__(self, n_kernels: int) -> None:
        super().__init__()
        self.register_buffer("mu", torch.tensor(kernel_mus(n_kernels)), persistent=False)  # [R]
        self.register_buffer("sigma", torch.tensor(kernel_sigmas(n_kernels)), persistent=False)  # [R]

    def forward(self, sim: torch.Tensor, q_mask: torch.Tensor, i_mask: torch.Tensor) -> torch.Tensor:
        # sim [N, Lq, Li], q_mask [N or 1, Lq], i_mask [N, Li] (float 0/1) -> [N, R]
        # Kernels lead ([R, N, Lq, Li]) and the 1/(2 sigma^2) is a product: with R innermost each
        # element-wise op broadcast over 7 numbers at a time: for 100 served candidates these ops took
        # ~3 ms of the graph against ~0.5 ms now (ONNX Runtime's profiler, one thread).
        mu = self.mu.view(-1, 1, 1, 1)
        scale = (-0.5 / self.sigma**2).view(-1, 1, 1, 1)
        kernels = torch.exp((sim.unsqueeze(0) - mu) ** 2 * scale) * i_mask[None, :, None, :]  # [R, N, Lq, Li]
        per_word = torch.log1p(kernels.sum(-1))  # [R, N, Lq]
        return (per_word * q_mask.unsqueeze(0)).sum(-1).transpose(0, 1)  # [N, R]


class ZeroOrder(nn.Module):
    """The pair's own text: embeddings -> cosine interaction matrix -> kernel pooling, and (with
    `use_cosine`) the pretrained bi-encoder's cosine of the query and item vectors -> linear.

    The cosine carries what the pretrained encoder knows about the pair (synonyms, colours, units),
    which word embeddings trained from scratch on a few thousand queries cannot learn. Its weight
    starts at COSINE_INIT, about the span of the distillation targets, so it counts from step one.
    """

    def __init__(self, vocab_size: int, word_dim: int, n_kernels: int, use_cosine: bool = False,
                 use_tuned: bool = False) -> None:
        super().__init__()
        self.use_cosine, self.use_tuned = use_cosine, use_tuned
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=PAD_ID)
        self.pool = KernelPooling(n_kernels)
        self.out = nn.Linear(n_kernels + int(use_cosine) + int(use_tuned), 1)
        with torch.no_grad():  # the cosines come last: [kernels..., zero-shot cosine, tuned cosine]
            for column in range(n_kernels, n_kernels + int(use_cosine) + int(use_tuned)):
                self.out.weight[0, column] = COSINE_INIT

    def init_word_vectors(self, vectors: np.ndarray | torch.Tensor) -> None:
        """Start the word embeddings from `vectors` [vocab_size, word_dim] (still trainable); the
        padding row stays zero."""
        vectors = torch.as_tensor(np.asarray(vectors), dtype=self.embed.weight.dtype)
        want = tuple(self.embed.weight.shape)
        if tuple(vectors.shape) != want:
            raise ValueError(f"word vectors must be [vocab_size, word_dim] = [{want[0]}, {want[1]}], "
                             f"got {tuple(vectors.shape)}")
        if not torch.isfinite(vectors).all():
            raise ValueError("word vectors must be finite (they hold NaN or inf)")
        with torch.no_grad():
            self.embed.weight.copy_(vectors)
            self.embed.weight[PAD_ID] = 0.0

    def interaction(self, q_tokens: torch.Tensor, i_tokens: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cosine matrix [N, Lq, Li] (0 at masked cells) and the word masks [N, Lq], [N, Li]."""
        q_mask = ((q_tokens != PAD_ID) & (q_tokens != UNK_ID)).float()  # [N or 1, Lq]
        i_mask = ((i_tokens != PAD_ID) & (i_tokens != UNK_ID)).float()  # [N, Li]
        # normalised and masked word by word before the product (fewer element-wise ops on [N, Lq, Li])
        q = self.embed(q_tokens)
        q = q * (q_mask / _norm(q)).unsqueeze(-1)  # [N or 1, Lq, E]
        i = self.embed(i_tokens)
        i = i * (i_mask / _norm(i)).unsqueeze(-1)  # [N, Li, E]
        return torch.matmul(q, i.transpose(1, 2)), q_mask, i_mask  # [N, Lq, Li]; one query row broadcasts

    def features(self, q_tokens: torch.Tensor, i_tokens: torch.Tensor) -> torch.Tensor:
        """Kernel features [N, R]; feature 0 counts exact word matches (log1p per query word)."""
        sim, q_mask, i_mask = self.interaction(q_tokens, i_tokens)
        return self.pool(sim, q_mask, i_mask)

    def forward(self, q_tokens: torch.Tensor, i_tokens: torch.Tensor, q_vec: torch.Tensor | None = None,
                i_vec: torch.Tensor | None = None, t_vec: torch.Tensor | None = None) -> torch.Tensor:
        feats = [self.features(q_tokens, i_tokens)]  # [N, R]
        if self.use_cosine:
            if q_vec is None or i_vec is None:
                raise ValueError("this 0-order part reads the bi-encoder cosine: pass q_vec and i_vec")
            feats.append(cosine(q_vec, i_vec).unsqueeze(-1))  # [N, 1]
        if self.use_tuned:
            if t_vec is None or i_vec is None:
                raise ValueError("this 0-order part reads the tuned query encoder's cosine: pass t_vec and i_vec")
            feats.append(cosine(t_vec, i_vec).unsqueeze(-1))  # [N, 1]; one query row broadcasts
        return self.out(torch.cat(feats, dim=-1) if len(feats) > 1 else feats[0]).squeeze(-1)  # [N]


class PathAttention(nn.Module):
    """Per-path additive attention over K neighbors, conditioned on one vector per row.

    e_j = v_p . tanh(W_p nb_j + U_p cond) + b_p * w_j, masked softmax over j.
    """

    def __init__(self, paths: int, vec_dim: int, cond_dim: int, attn_dim: int, cond_vectors: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(paths, vec_dim, attn_dim))  # unit-norm inputs: N(0, 1)
        self.U = nn.Parameter(torch.randn(paths, cond_dim, attn_dim) / cond_vectors**0.5)
        self.v = nn.Parameter(torch.empty(paths, attn_dim).uniform_(-attn_dim**-0.5, attn_dim**-0.5))
        self.b = nn.Parameter(torch.zeros(paths))

    def forward(self, nb_vec: torch.Tensor, nb_w: torch.Tensor, nb_mask: torch.Tensor,
                cond: torch.Tensor) -> torch.Tensor:
        # nb_vec [N, P, K, D], nb_w [N, P, K], nb_mask [N, P, K], cond [N, C] -> weights [N, P, K]
        keys = torch.einsum("npkd,pda->npka", nb_vec, self.W)  # [N, P, K, A]
        query = torch.einsum("nc,pca->npa", cond, self.U)  # [N, P, A]
        hidden = torch.tanh(keys + query.unsqueeze(2))  # [N, P, K, A]
        logits = torch.einsum("npka,pa->npk", hidden, self.v) + self.b[:, None] * nb_w  # [N, P, K]
        return masked_softmax(logits, nb_mask)


# ----------------------------------------------------------------------------------------------
# checkpoint helpers (shared with BERM-O): weights + config JSON + manifest, optionally the vocab


def save_checkpoint(model: nn.Module, folder: Path, name: str, extra: dict | None, vocab: Vocab | None) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / f"{name}.pt")
    (folder / f"{name}_config.json").write_text(json.dumps(asdict(model.config), indent=1))
    manifest = {"model": name, "model_version": model.config.model_version, **(extra or {})}
    (folder / f"{name}_manifest.json").write_text(json.dumps(manifest, indent=1))
    if vocab is not None:
        vocab.save(folder / "vocab.json")
    log.info("saved %s to %s", name, folder)


def check_word_init(word_init: str) -> None:
    if word_init not in WORD_INITS:
        raise ValueError(f"word_init must be one of {', '.join(WORD_INITS)}, got {word_init!r}")


def read_config(config_cls: type, path: Path):
    """The dataclass stored at `path`; unknown keys are errors."""
    data = json.loads(Path(path).read_text())
    unknown = sorted(set(data) - {f.name for f in fields(config_cls)})
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}")
    return config_cls(**data)


def load_weights(model: nn.Module, path: Path) -> None:
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()


# ----------------------------------------------------------------------------------------------
# the model


@dataclass
class BermConfig:
    vocab_size: int
    word_dim: int = 64
    kernels: int = 11
    hidden: int = 32  # k-order MLP: 4 * paths -> hidden -> 1
    paths: int = 4
    use_k_order: bool = True
    use_cosine: bool = True  # 0-order reads cos(q_vec, i_vec); False is the word-only ablation
    use_tuned_query: bool = False  # 0-order also reads cos(t_vec, i_vec), the tuned query encoder's
    vec_dim: int = 384  # D, the bi-encoder dimension of q_vec, i_vec and nb_vec
    attn_dim: int = 32  # A, the width of the path attention
    word_init: str = "random"  # how the word embeddings started, one of WORD_INITS
    model_version: str = MODEL_VERSION

    def __post_init__(self) -> None:
        check_word_init(self.word_init)


class Berm(nn.Module):
    name = "berm"

    def __init__(self, config: BermConfig) -> None:
        super().__init__()
        self.config = config
        self.zero_order = ZeroOrder(config.vocab_size, config.word_dim, config.kernels, config.use_cosine,
                                    config.use_tuned_query)
        if config.use_k_order:
            self.path_attention = PathAttention(config.paths, config.vec_dim, 2 * config.vec_dim,
                                                config.attn_dim, cond_vectors=2)
            self.k_mlp = nn.Sequential(nn.Linear(4 * config.paths, config.hidden), nn.ReLU(),
                                       nn.Linear(config.hidden, 1))
        self.bm25_affine = nn.Linear(1, 1)
        with torch.no_grad():
            self.bm25_affine.weight.fill_(1.0)
            self.bm25_affine.bias.zero_()

    def k_order(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """k-order part [N] and the attention weights [N, P, K]."""
        q_vec, i_vec, nb_vec = batch["q_vec"], batch["i_vec"], batch["nb_vec"]
        nb_w, nb_mask = batch["nb_w"], batch["nb_mask"]
        pair = torch.cat([q_vec, i_vec], dim=-1)  # [N, 2D]
        attention = self.path_attention(nb_vec, nb_w, nb_mask, pair)  # [N, P, K]
        cos_i = cosine(nb_vec, i_vec[:, None, None, :])  # [N, P, K]
        cos_q = cosine(nb_vec, q_vec[:, None, None, :])  # [N, P, K]
        feats = torch.stack([
            (attention * cos_i).sum(-1),  # [N, P]
            (attention * cos_q).sum(-1),
            (attention * nb_w).sum(-1),
            nb_mask.any(-1).to(attention.dtype),
        ], dim=-1)  # [N, P, 4]
        return self.k_mlp(feats.flatten(1)).squeeze(-1), attention  # [N], [N, P, K]

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """score, zero_order, k_order, bm25: [N] each (score = the sum of the three); attention [N, P, K]."""
        n, k = check_batch(batch, self.config.paths, self.config.vec_dim, self.config.use_tuned_query)
        zero_order = self.zero_order(batch["q_tokens"], batch["i_tokens"], batch["q_vec"], batch["i_vec"],
                                     batch.get("t_vec"))  # [N]
        if self.config.use_k_order:
            k_order, attention = self.k_order(batch)
        else:
            k_order = torch.zeros_like(zero_order)
            attention = zero_order.new_zeros(n, self.config.paths, k)
        bm25 = self.bm25_affine(batch["bm25"].unsqueeze(-1)).squeeze(-1)  # [N]
        score = zero_order + k_order + bm25
        return {"score": score, "zero_order": zero_order, "k_order": k_order, "bm25": bm25,
                "attention": attention}

    def save(self, folder: Path, extra: dict | None = None, vocab: Vocab | None = None) -> None:
        """Writes berm.pt, berm_config.json, berm_manifest.json (model version + `extra`), vocab.json."""
        save_checkpoint(self, folder, self.name, extra, vocab)

    @classmethod
    def load(cls, folder: Path) -> "Berm":
        """The model saved in `folder`, in eval mode."""
        folder = Path(folder)
        model = cls(read_config(BermConfig, folder / f"{cls.name}_config.json"))
        load_weights(model, folder / f"{cls.name}.pt")
        return model
