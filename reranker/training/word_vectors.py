"""Static word vectors for the students' word embeddings, distilled from all-MiniLM-L6-v2.

The 0-order part of BERM and BERM-O (reranker/models/berm.py `ZeroOrder`) matches query and title
words by the cosine of their embeddings. Trained from scratch on a few thousand queries those
embeddings know little; started from these vectors they already know that "drills" is near "drill"
and "white" near "black" (both colours), and training refines them.

The method is model2vec's distillation (MinishLab, github.com/MinishLab/model2vec,
`model2vec/distill/distillation.py` and `inference.py`, v0.10), step by step:
1. Each vocabulary word through the model as its own text, `[CLS] subwords [SEP]`; the word's
   vector is the mean of the last hidden states over all of those tokens (model2vec's MEAN pooling,
   which counts [CLS] and [SEP] too). Batches of similar token length, run by ONNX Runtime.
2. PCA to the student's word dimension: the eigenvectors of the covariance (float64), each
   component's sign fixed so its largest-magnitude score is positive (model2vec's
   `_pca_fit_transform`; without the sign fix a PCA is only determined up to sign).
3. Zipf/SIF weighting: the word of rank r (0 = most frequent) gets weight a / (a + p_r) with
   p_r proportional to 1 / (r + 2) and a = 1e-4 (model2vec's `compute_weights`). model2vec takes the
   rank from the tokenizer's order; our `Vocab` holds words most frequent first, so here it is the
   real frequency rank.

Choices of our own:
- Not the `model2vec` package itself: its distill path needs `skeletoken` (another tokenizer
  stack, not a dependency of the package), forwards the model's whole 30k subword vocabulary beside
  ours, and maps the result to its own tokenizer rather than to our word ids. The three steps above
  are a few lines of transformers, ONNX Runtime and numpy.
- The forward passes (step 1, nearly all the time) depend only on the words, so they are cached in
  an npz next to vocab.json keyed by a digest of the words; BERM (64-d) and BERM-O (32-d) share them
  and each takes its own PCA and weights (steps 2 and 3, 0.5 s of CPU for 13k words).
- Scale: the interaction is a cosine, so a row's length changes no score, but Adam's step size is
  absolute, so the known rows are scaled together to a root-mean-square of 1 per coordinate, the
  scale of the N(0, 1) initialisation the students' learning rate was tuned with. The SIF weights
  keep their relative effect: frequent words (short rows) turn quickly towards what the training
  data says about them, rare words (long rows) keep the model's prior longer. How short: on Home
  Depot's vocabulary (13,181 words, 64 dims) "white" (rank 6) gets a row of length 0.06 and
  "vanity" (rank 33) 0.34 against a median of 7.9, so a few Adam steps at lr 2e-3 can turn them
  anywhere. model2vec weights for mean-pooling sentences, where frequent words should count less;
  a cosine interaction has no such use for them, hence `sif_coefficient=None` (the students'
  `word_init="minilm-unweighted"`), which keeps every row at its PCA length (median 7.9, "white"
  7.2).
- Rows 0 (padding) and 1 (unknown) are zero; the students mask both.
- Deterministic: no sampling anywhere, a stable length sort, the model in eval mode, the same
  batches every time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from reranker.text import PAD_ID, UNK_ID, Vocab

log = logging.getLogger(__name__)

METHOD = "minilm-mean-pooled-1"  # enters the cache key: a change of step 1 invalidates old caches
SIF_COEFFICIENT = 1e-4  # model2vec's default
MAX_WORD_TOKENS = 16  # subword tokens per word, [CLS] and [SEP] included; our words are short
BATCH_SIZE = 256  # words per forward pass (model2vec's batch)
RESERVED = max(PAD_ID, UNK_ID) + 1  # padding and unknown (ids 0 and 1) come before the known words


def vocab_digest(vocab: Vocab) -> str:
    """What the pooled vectors depend on: the words in id order and the method."""
    return hashlib.sha256(json.dumps([METHOD, MAX_WORD_TOKENS, vocab.words]).encode()).hexdigest()[:16]


def pooled_word_vectors(vocab: Vocab, model_path: Path | None = None, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Step 1: float32 [len(vocab.words), H], one mean-pooled MiniLM output per known word."""
    from transformers import AutoTokenizer

    if model_path is None:
        from reranker.models.teacher import base_model_path

        model_path = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    session, hidden = _mean_pooled_session(Path(model_path))
    if not vocab.words:
        return np.zeros((0, hidden), dtype=np.float32)
    ids = tokenizer(vocab.words, add_special_tokens=True, truncation=True, max_length=MAX_WORD_TOKENS)["input_ids"]
    order = np.argsort([len(row) for row in ids], kind="stable")  # similar lengths share a batch
    out = np.zeros((len(ids), hidden), dtype=np.float32)
    pad = tokenizer.pad_token_id or 0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(ids[r]) for r in rows)
        input_ids = np.full((len(rows), width), pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for j, r in enumerate(rows):
            input_ids[j, :len(ids[r])] = ids[r]
            mask[j, :len(ids[r])] = 1
        out[rows] = session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
    return np.nan_to_num(out)


def _mean_pooled_session(model_path: Path):
    """The model with model2vec's mean pooling as an ONNX Runtime session (in memory), and H.

    ONNX Runtime, not torch: on this 2-core machine it ran the same forward passes in 0.4x torch's
    CPU time (2,197 words: 4.9 s against 12.9 s, largest difference 2e-6); the export costs ~3 s.
    Threads: torch's intra-op count, as the rest of training uses.
    """
    import io
    import warnings

    import onnxruntime as ort
    import torch
    from torch import nn
    from transformers import AutoModel

    class MeanPooled(nn.Module):
        def __init__(self, transformer: nn.Module) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            states = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=torch.zeros_like(input_ids)).last_hidden_state  # [B, T, H]
            weights = attention_mask.to(states.dtype) / attention_mask.sum(1, keepdim=True).to(states.dtype)
            return torch.bmm(weights[:, None, :], states).squeeze(1)  # [B, H], the mean over real tokens

    transformer = AutoModel.from_pretrained(str(model_path)).eval()
    example = (torch.tensor([[101, 7020, 102]]), torch.ones(1, 3, dtype=torch.long))
    graph = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(MeanPooled(transformer), example, graph, dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["pooled"],
                          dynamic_axes={"input_ids": {0: "n", 1: "length"}, "attention_mask": {0: "n", 1: "length"},
                                        "pooled": {0: "n"}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])
    return session, int(transformer.config.hidden_size)


def cached_pooled_word_vectors(vocab: Vocab, cache: Path) -> np.ndarray:
    """Step 1 through an npz cache keyed by `vocab_digest`: computed once per vocabulary."""
    cache = Path(cache)
    digest = vocab_digest(vocab)
    if cache.is_file():
        with np.load(cache) as data:
            if str(data["digest"]) == digest:
                return data["pooled"]
        log.info("word vector cache %s is for another vocabulary: recomputing", cache)
    pooled = pooled_word_vectors(vocab)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, digest=np.array(digest), pooled=pooled)
    tmp.replace(cache)  # a half-written cache never looks valid
    return pooled


def pca(x: np.ndarray, dim: int) -> np.ndarray:
    """Step 2: [n, H] -> [n, dim] scores on the top `dim` principal components, signs fixed."""
    x = x.astype(np.float64)
    centred = x - x.mean(axis=0)
    eigvals, eigvecs = np.linalg.eigh(centred.T @ centred / max(len(x) - 1, 1))
    components = eigvecs[:, ::-1][:, :dim]  # eigh sorts ascending
    scores = centred @ components
    signs = np.sign(scores[np.abs(scores).argmax(axis=0), np.arange(dim)])
    return scores * np.where(signs == 0, 1.0, signs)


def sif_weights(n: int, sif_coefficient: float) -> np.ndarray:
    """Step 3: a / (a + p_r), p_r proportional to 1 / (r + 2), r = 0 for the most frequent word."""
    inv_rank = 1.0 / np.arange(2, n + 2)
    proba = inv_rank / inv_rank.sum()
    return sif_coefficient / (sif_coefficient + proba)


def static_word_vectors(vocab: Vocab, dim: int, sif_coefficient: float | None = SIF_COEFFICIENT,
                        cache: Path | None = None) -> np.ndarray:
    """float32 [len(vocab), dim], rows 0 and 1 zero, for `ZeroOrder.init_word_vectors`.

    `cache` (an .npz path, e.g. next to vocab.json) keeps the model's forward passes for the next
    call with the same vocabulary; `sif_coefficient=None` skips the frequency weighting.
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if sif_coefficient is not None and not 0 < sif_coefficient < 1:
        raise ValueError(f"sif_coefficient must be in (0, 1) or None, got {sif_coefficient}")
    pooled = cached_pooled_word_vectors(vocab, cache) if cache is not None else pooled_word_vectors(vocab)
    if dim > pooled.shape[1] or dim >= max(len(pooled), 1):
        raise ValueError(f"dim {dim} needs more than {dim} known words and at most {pooled.shape[1]} "
                         f"dimensions, got {len(pooled)} words")
    known = pca(pooled, dim)
    if sif_coefficient is not None:
        known = known * sif_weights(len(known), sif_coefficient)[:, None]
    known = known / np.sqrt(np.mean(known**2))  # RMS 1, the scale of the N(0, 1) init (see above)
    vectors = np.zeros((len(vocab), dim), dtype=np.float32)
    vectors[RESERVED:] = known
    return vectors


def start_word_vectors(model, vocab: Vocab, cache: Path | None = None) -> None:
    """Start a student's (Berm, BermO) word embeddings as its config's `word_init` says: "minilm"
    copies in `static_word_vectors` at the model's word_dim, "minilm-unweighted" the same without
    the frequency weights, "random" keeps the N(0, 1) init."""
    config = model.config
    if len(vocab) != config.vocab_size:
        raise ValueError(f"vocabulary has {len(vocab)} ids, the model {config.vocab_size}")
    if config.word_init in ("minilm", "minilm-unweighted"):
        sif = SIF_COEFFICIENT if config.word_init == "minilm" else None
        model.zero_order.init_word_vectors(static_word_vectors(vocab, config.word_dim, sif, cache=cache))
        log.info("%s word embeddings start from MiniLM (%s, %d x %d)", type(model).__name__, config.word_init,
                 len(vocab), config.word_dim)
