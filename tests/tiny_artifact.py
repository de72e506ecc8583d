"""A small but real BERM-O serving artifact in seconds, for tests and benches."""

from __future__ import annotations

from pathlib import Path

import torch

from indexer.embeddings import embed, load_bi_encoder
from indexer.faiss_store import VectorStore
from indexer.graph import ClickGraph
from reranker.models.berm_o import BermO, BermOConfig
from reranker.text import Vocab, tokenize
from reranker.training.artifact import build_artifact


def build_tiny_artifact(folder: Path, titles: dict[str, str], queries: list[str] | None = None, seed: int = 0,
                        tuned_encoder=None, check=None, trained_depth: int | None = None) -> Path:
    """Untrained BERM-O weights, real bi-encoder vectors, FAISS stores and a click graph that joins
    each query to the titles sharing its words (weight = share of the query's words found). With a
    `tuned_encoder` (a sentence-transformers model), the model reads its query cosine too; `check` is
    build_artifact's (run on the built folder before the swap); `trained_depth` goes to the manifest
    as the pipeline writes it (the labels' BM25 depth)."""
    if not titles:
        raise ValueError("a tiny artifact needs at least one product title")
    ids = list(titles)
    if queries is None:  # pseudo-queries: the first two words of some titles
        queries = sorted({" ".join(tokenize(titles[pid])[:2]) for pid in ids[:: max(1, len(ids) // 50)]} - {""})
    words = {pid: set(tokenize(titles[pid])) for pid in ids}
    edges = []
    for q in queries:
        q_words = set(tokenize(q))
        for pid in ids:
            share = len(q_words & words[pid]) / max(1, len(q_words))
            if share > 0:
                edges.append((q, pid, round(share, 4)))
    graph = ClickGraph.from_edges(edges)
    encoder = load_bi_encoder()
    item_store = VectorStore.build(ids, embed(encoder, [titles[pid] for pid in ids], progress=False))
    query_store = VectorStore.build(queries, embed(encoder, queries, progress=False))
    vocab = Vocab.build([*titles.values(), *queries], min_count=1)
    torch.manual_seed(seed)
    model = BermO(BermOConfig(vocab_size=len(vocab), use_tuned_query=tuned_encoder is not None))
    return build_artifact(folder, model, vocab, graph, query_store, item_store, titles, seed=seed,
                          extra={"profile": "tiny", **({"trained_depth": trained_depth} if trained_depth else {})},
                          progress=False, bi_encoder=encoder, tuned_encoder=tuned_encoder, check=check)
