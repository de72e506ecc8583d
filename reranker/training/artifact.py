"""Building the BERM-O serving artifact (the folder reranker/serving/online.py serves; its files are
listed there): the model's ONNX exports, the bi-encoder's, the click graph, the FAISS stores, and
every known item's tokens, precomputed context and most-attended neighbors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from common.artifacts import ARTIFACT_FORMAT, ServingManifest
from indexer.embeddings import load_bi_encoder
from indexer.faiss_store import VectorStore
from indexer.graph import ClickGraph
from reranker.graph.context import ContextBuilder
from reranker.graph.neighbors import ITEM_PATHS, NeighborSampler
from reranker.models.berm_o import BermO
from reranker.serving.online import TUNED_FOLDER, top_neighbors
from reranker.text import MAX_QUERY_TOKENS, MAX_TITLE_TOKENS, Vocab
from reranker.training.export import export_context_onnx, export_onnx, export_text_encoder

log = logging.getLogger(__name__)


@torch.inference_mode()
def build_artifact(
    folder: Path,
    model: BermO,
    vocab: Vocab,
    graph: ClickGraph,
    query_store: VectorStore,
    item_store: VectorStore,
    titles: dict[str, str],
    *,
    query_texts: dict[str, str] | None = None,
    per_path: int = 5,
    max_query_tokens: int = MAX_QUERY_TOKENS,
    max_title_tokens: int = MAX_TITLE_TOKENS,
    seed: int = 13,
    extra: dict | None = None,
    chunk: int = 2048,
    progress: bool = True,
    bi_encoder=None,
    tuned_encoder=None,
    check: Callable[[Path], dict] | None = None,
) -> Path:
    """Write a serving artifact for `model` into `folder` (built aside, then swapped in whole).

    `bi_encoder` is the sentence-transformers model that made the stores' vectors (loaded when not
    given); its ONNX export embeds new queries and items at serving time. A model that reads the
    tuned query encoder's cosine needs `tuned_encoder` (exported into `query_encoder/`). `extra` are
    more fields of the manifest (common/artifacts.py: ServingManifest, unknown ones refused).
    `check(built folder)` runs on the complete artifact before the swap, and the fields it returns
    join the manifest, so a watcher of `folder` sees one change."""
    from tqdm import tqdm

    folder = Path(folder)
    ServingManifest.refuse_unknown(extra or {}, f"{folder}: extra")  # before the minutes of building
    tmp = folder.with_name(folder.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.eval()
    model.save(tmp, extra, vocab)
    export_onnx(model, tmp / "pair.onnx")
    if model.config.use_k_order:
        export_context_onnx(model, tmp / "query_ctx.onnx", "query")
        export_context_onnx(model, tmp / "item_ctx.onnx", "item")
    export_text_encoder(bi_encoder or load_bi_encoder(), tmp)
    if model.config.use_tuned_query:
        if tuned_encoder is None:
            raise ValueError("this model reads the tuned query encoder's cosine: pass tuned_encoder")
        export_text_encoder(tuned_encoder, tmp / TUNED_FOLDER)
    graph.save(tmp / "graph.json")
    query_store.save(tmp, "query_store")
    item_store.save(tmp, "item_store")

    sampler = NeighborSampler(graph, per_path=per_path, seed=seed)
    builder = ContextBuilder(sampler, vocab, query_store, item_store, {}, None, per_path=per_path)
    ids = [pid for pid in item_store.ids if pid in titles]
    d = item_store.dim
    tokens = np.zeros((len(ids), max_title_tokens), dtype=np.int32)
    ctx = np.zeros((len(ids), 2, d), dtype=np.float16)
    ctx_w = np.zeros((len(ids), 2), dtype=np.float32)
    has = np.zeros((len(ids), 2), dtype=np.float32)
    neighbors: dict[str, list[list]] = {}
    for start in tqdm(range(0, len(ids), chunk), desc="item contexts", unit="chunk", disable=not progress):
        part = ids[start : start + chunk]
        vecs = item_store.vectors_of(part)
        filled = [builder.fill_with_ids(paths, ITEM_PATHS)
                  for paths in sampler.item_paths_many(part, vecs, item_store)]
        nb_vec = torch.from_numpy(np.stack([f[0] for f in filled]))
        nb_w = torch.from_numpy(np.stack([f[1] for f in filled]))
        nb_mask = torch.from_numpy(np.stack([f[2] for f in filled]))
        c, w, h, attention = model._contexts(torch.from_numpy(vecs), nb_vec, nb_w, nb_mask, "item")
        ctx[start : start + len(part)] = c.numpy().astype(np.float16)
        ctx_w[start : start + len(part)] = w.numpy()
        has[start : start + len(part)] = h.numpy()
        for row, pid in enumerate(part):
            encoded = vocab.encode(titles[pid], max_title_tokens)
            tokens[start + row, : len(encoded)] = encoded
            neighbors[pid] = [[n.path, n.node_id, n.attention]  # on disk as JSON rows
                              for n in top_neighbors(ITEM_PATHS, filled[row][3], attention[row].numpy())]
        sampler.clear_cache()  # the cache would hold every item's sample; each item is visited once
    np.savez(tmp / "items.npz", ids=np.array(ids), tokens=tokens, ctx=ctx, ctx_w=ctx_w, has=has)
    (tmp / "item_neighbors.json").write_text(json.dumps(neighbors))
    texts = query_texts or {q: q for q in graph.queries}
    (tmp / "query_ids.json").write_text(json.dumps({text: q for q, text in texts.items() if graph.has_query(q)}))
    digest = hashlib.sha256((tmp / "pair.onnx").read_bytes() + (tmp / "items.npz").read_bytes()).hexdigest()[:12]
    manifest = ServingManifest.from_dict({
        "format": ARTIFACT_FORMAT,
        "model": "BERM-O",
        "model_version": model.config.model_version,
        "use_k_order": model.config.use_k_order,
        "use_tuned_query": model.config.use_tuned_query,
        "per_path": per_path, "seed": seed,
        "max_query_tokens": max_query_tokens, "max_title_tokens": max_title_tokens,
        "items": len(ids), "graph_queries": len(graph.queries), "graph_edges": graph.num_edges,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **(extra or {}),
        "artifact_id": digest,
    }, where=f"{folder}: extra")
    manifest.write(tmp)
    if check is not None:
        manifest = dataclasses.replace(manifest, **check(tmp))
        manifest.write(tmp)
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    log.info("serving artifact %s: %d items, model %s", folder, len(ids), manifest.model_version)
    return folder
