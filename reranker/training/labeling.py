"""Teacher labeling: score many unlabeled (query, product) pairs to build the distillation set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from reranker.models.teacher import Teacher
from reranker.models.teacher_onnx import OnnxTeacher


@dataclass
class LabeledPairs:
    """Column arrays: one row per (query, product) pair, with BM25, the teacher's logit and the
    zero-shot bi-encoder's cosine (what the deployed teacher mixes, see `deployed_score`)."""

    query_ids: np.ndarray  # str
    product_ids: np.ndarray  # str
    bm25: np.ndarray  # float32
    teacher: np.ndarray  # float32 logits
    cosine: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.query_ids)

    def save(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, query_ids=self.query_ids, product_ids=self.product_ids, bm25=self.bm25, teacher=self.teacher,
                            cosine=self.cosine)

    @classmethod
    def load(cls, path: Path) -> "LabeledPairs":
        with np.load(path, allow_pickle=False) as data:
            return cls(data["query_ids"], data["product_ids"], data["bm25"], data["teacher"], data["cosine"])

    def by_query(self) -> dict[str, dict[str, tuple[float, float, float]]]:
        """query id -> product id -> (bm25, teacher, cosine)."""
        out: dict[str, dict[str, tuple[float, float, float]]] = {}
        for q, p, b, t, c in zip(self.query_ids.tolist(), self.product_ids.tolist(), self.bm25.tolist(),
                                 self.teacher.tolist(), self.cosine.tolist()):
            out.setdefault(q, {})[p] = (b, t, c)
        return out


def label_candidates(
    teacher: Teacher | OnnxTeacher,
    query_texts: dict[str, str],
    candidates: dict[str, dict[str, float]],
    titles: dict[str, str],
    query_vectors: dict[str, np.ndarray],
    item_vectors: dict[str, np.ndarray],
    chunk: int = 4096,
) -> LabeledPairs:
    """Teacher logits and bi-encoder cosines (from the given unit vectors, by query and product id)
    for every (query, candidate) pair; `candidates` maps query -> product -> BM25."""
    qids, pids, bm25 = [], [], []
    for q, items in candidates.items():
        for p, score in items.items():
            qids.append(q), pids.append(p), bm25.append(score)
    logits = np.zeros(len(qids), dtype=np.float32)
    with tqdm(total=len(qids), desc="teacher labeling", unit="pair") as bar:
        for start in range(0, len(qids), chunk):
            stop = min(start + chunk, len(qids))
            logits[start:stop] = teacher.predict(
                [query_texts[q] for q in qids[start:stop]], [titles[p] for p in pids[start:stop]]
            )
            bar.update(stop - start)
    cosine = np.array([float(query_vectors[q] @ item_vectors[p]) for q, p in zip(qids, pids)], dtype=np.float32)
    return LabeledPairs(np.array(qids, dtype=str), np.array(pids, dtype=str), np.array(bm25, dtype=np.float32),
                        logits, cosine)
