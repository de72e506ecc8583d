"""The teacher cross-encoder through ONNX Runtime: offline scoring at several hundred pairs a second.

The pipeline scores hundreds of thousands of pairs with the teacher (teacher_mix's dev labels, the
distillation set, the evaluation's teacher row). Through torch that was most of a run's time; the
same graph under ONNX Runtime is ~2x faster with the same logits, and its dynamic int8 copy ~3x
(2,048 Home Depot pairs, 2 threads: torch 221 pairs/s, fp32 417, int8 673).
The graphs are BERT-fused (one Attention node per layer; reranker/training/export.py `fuse_bert`):
the unfused SDPA trace ran ~50 small ops a layer.

Files in a teacher folder, written by reranker/training/export.py (`export_teacher`):
`teacher.fp32.onnx`, `teacher.int8.onnx`, and `onnx.json`, the teacher_mix stage's guard: which
of the two the later stages use and the dev figures that chose it (reranker/training/int8_guard.py).
`OnnxTeacher` keeps `Teacher.predict`'s contract: same tokenizer and max_length, batches of similar
token length, raw logits in input order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from common.errors import ShopsearchError
from common.settings import OnnxThreads
from reranker.models.teacher import Teacher, TeacherConfig
from reranker.serving.onnx_runner import open_session

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "logits"
GRAPHS = {"fp32": "teacher.fp32.onnx", "int8": "teacher.int8.onnx"}
CHOICE_FILE = "onnx.json"


class TeacherOnnxError(ShopsearchError, FileNotFoundError):
    """A teacher folder without what ONNX scoring needs: the trained teacher, its graphs, or the
    guard's choice between them."""


def offline_threads() -> OnnxThreads:
    """Every core for one session: offline scoring runs one big job at a time (serving, by
    contrast, runs many small requests on one thread each)."""
    return OnnxThreads(intra_threads=os.cpu_count() or 1, inter_threads=1)


def chosen_precision(folder: Path) -> str:
    """"int8" or "fp32": what the guard chose for this teacher (its `onnx.json`)."""
    path = Path(folder) / CHOICE_FILE
    if not path.is_file():
        raise TeacherOnnxError(f"{path}: no ONNX choice for this teacher; the teacher_mix stage writes it "
                               f"(remove teacher_mix from stages.json and run the pipeline again)")
    return json.loads(path.read_text())["chosen"]


class OnnxTeacher:
    """`Teacher.predict` on an exported graph: (queries, titles) -> float32 logits in input order."""

    def __init__(self, path: Path, tokenizer, config: TeacherConfig, precision: str,
                 threads: OnnxThreads | None = None) -> None:
        if not Path(path).is_file():
            raise TeacherOnnxError(f"{path}: no such teacher graph (reranker/training/export.py writes it)")
        self.session = open_session(path, threads or offline_threads())
        self.tokenizer, self.config, self.precision = tokenizer, config, precision
        self.name = f"teacher cross-encoder (ONNX {precision})"

    @classmethod
    def load(cls, folder: Path, precision: str | None = None, threads: OnnxThreads | None = None) -> "OnnxTeacher":
        """The teacher in `folder` through its `precision` graph (default: the guard's choice)."""
        from transformers import AutoTokenizer

        folder = Path(folder)
        precision = precision or chosen_precision(folder)
        return cls(folder / GRAPHS[precision], AutoTokenizer.from_pretrained(folder), Teacher.load_config(folder),
                   precision, threads)

    def predict(self, queries: list[str], titles: list[str]) -> np.ndarray:
        """Raw logits for many pairs, in input order, in batches of similar token length (as
        `Teacher.predict`). Each pair is tokenised once; a batch is padded here, in numpy."""
        out = np.zeros(len(queries), dtype=np.float32)
        if not queries:
            return out
        encoded = self.tokenizer(queries, titles, truncation=True, max_length=self.config.max_length)
        ids, types = encoded["input_ids"], encoded["token_type_ids"]
        lengths = np.array([len(row) for row in ids])
        order = np.argsort(lengths, kind="stable")
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(order), self.config.batch_size):
            rows = order[start:start + self.config.batch_size]
            width = int(lengths[rows].max())
            input_ids = np.full((len(rows), width), pad, dtype=np.int64)
            token_types = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for j, i in enumerate(rows):  # right padding, as the tokenizer pads
                input_ids[j, :lengths[i]] = ids[i]
                token_types[j, :lengths[i]] = types[i]
                mask[j, :lengths[i]] = 1
            feed = dict(zip(INPUTS, (input_ids, mask, token_types)))
            out[rows] = self.session.run([OUTPUT], feed)[0]
        return out
