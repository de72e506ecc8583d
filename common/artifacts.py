"""What the training pipeline leaves on disk, as plain data: the serving artifact's manifest and the
folder layout of a pipeline run.

No heavy imports (no torch, no numpy), so the page, the demo, the report and the CLI read them
cheaply. The serving artifact's files themselves are listed in reranker/serving/online.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from common.errors import ShopsearchError

ARTIFACT_FORMAT = "shopsearch-berm-o/1"
MANIFEST = "manifest.json"  # a serving artifact's, or a teacher's


class ManifestError(ShopsearchError, ValueError):
    """A serving manifest that is not JSON, of another format, or with keys missing or unknown."""


@dataclass
class ServingManifest:
    """A serving artifact's `manifest.json`: what build_artifact and the pipeline write, one typed
    object. Reading checks `format` and refuses unknown keys; optional fields left None are not
    written (artifacts from before a field existed simply lack its key)."""

    # what build_artifact measures of the model and the artifact
    model_version: str
    use_k_order: bool
    per_path: int
    seed: int
    max_query_tokens: int
    max_title_tokens: int
    items: int  # known items, with precomputed contexts
    graph_queries: int
    graph_edges: int
    created: str
    artifact_id: str = ""  # a digest of pair.onnx and items.npz (set by build_artifact)
    format: str = ARTIFACT_FORMAT
    model: str = "BERM-O"
    use_tuned_query: bool = False  # artifacts written before the tuned query encoder have no such key
    # the run it came from (the pipeline's run identity)
    dataset: str | None = None
    data_fingerprint: str | None = None
    split_id: str | None = None
    profile: str | None = None
    # how the student was trained (the pipeline's berm_o stage)
    graph: dict | None = None  # what the click graph was built from (graph_source.json)
    distill_config: dict | None = None
    loss_history: list | None = None
    linear_start: list | None = None
    dev_ndcg10_by_epoch: list | None = dataclasses.field(default=None, metadata={"key": "dev_ndcg@10_by_epoch"})
    epoch_kept: int | None = None
    trained_depth: int | None = None  # the labels depth (BM25 top-K, `label_k`) the students were trained on
    dev_spearman_with_teacher: float | None = None
    # checks of the built artifact
    onnx_vs_torch_max_abs_diff: float | None = None  # ONNX path against torch on dev queries
    dev_check: dict | None = None  # verdicts against BM25 and the zero-shot bi-encoder on dev (verdicts.py)

    @staticmethod
    def _keys() -> dict[str, str]:
        """JSON key -> field name (a key that is no identifier is named in the field's metadata)."""
        return {f.metadata.get("key", f.name): f.name for f in dataclasses.fields(ServingManifest)}

    @classmethod
    def refuse_unknown(cls, data: dict, where: str = "manifest") -> None:
        unknown = sorted(set(data) - set(cls._keys()))
        if unknown:
            raise ManifestError(f"{where}: unknown manifest keys {', '.join(unknown)}")

    @classmethod
    def from_dict(cls, data: object, where: str = "manifest") -> "ServingManifest":
        if not isinstance(data, dict) or data.get("format") != ARTIFACT_FORMAT:
            raise ManifestError(f"{where}: not a {ARTIFACT_FORMAT} artifact")
        cls.refuse_unknown(data, where)
        keys = cls._keys()
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [key for key in required if key not in data]
        if missing:
            raise ManifestError(f"{where}: manifest lacks {', '.join(missing)}")
        return cls(**{keys[key]: value for key, value in data.items()})

    def to_dict(self) -> dict:
        """The JSON object; optional fields that are None are left out."""
        return {f.metadata.get("key", f.name): getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def read(cls, folder: Path) -> "ServingManifest":
        path = Path(folder) / MANIFEST
        try:
            data = json.loads(path.read_text())
        except ValueError as err:
            raise ManifestError(f"{path}: not JSON ({err})") from None
        except OSError as err:
            raise ManifestError(f"{path}: cannot read it ({err.strerror or err})") from None
        return cls.from_dict(data, where=str(folder))

    def write(self, folder: Path) -> Path:
        """Write `manifest.json` whole (a reader never sees half of it)."""
        path = Path(folder) / MANIFEST
        tmp = path.with_name(MANIFEST + ".writing")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)
        return path

    @property
    def version(self) -> str:
        """What a served model answers as its version: model version plus artifact id."""
        return f"{self.model_version}+{self.artifact_id}"


def model_manifest(folder: Path) -> dict:
    """The manifest of what is saved in `folder`, as written: a serving artifact's or teacher's
    `manifest.json`, else a student's `<name>_manifest.json` (a serving folder holds both; its own
    comes first); {} when there is none."""
    folder = Path(folder)
    found = [folder / MANIFEST] if (folder / MANIFEST).exists() else sorted(folder.glob("*_manifest.json"))
    return json.loads(found[0].read_text()) if found else {}


STUDENTS = ("berm", "berm_no_k_order", "berm_o")  # the students' folders in a run, trained in this order


@dataclass(frozen=True)
class RunLayout:
    """The files of a pipeline run folder (`artifacts/pipeline/<dataset>-<profile>/`), by name."""

    root: Path

    # folders
    @property
    def teacher(self) -> Path:
        return self.root / "teacher"

    @property
    def teacher_checkpoint(self) -> Path:
        return self.root / "teacher-checkpoint"

    @property
    def query_encoder(self) -> Path:
        return self.root / "query_encoder"

    @property
    def serving(self) -> Path:
        return self.root / "serving"

    def student(self, name: str) -> Path:
        """A student's folder: one of STUDENTS."""
        return self.root / name

    @property
    def berm(self) -> Path:
        return self.student("berm")

    @property
    def berm_no_k_order(self) -> Path:
        return self.student("berm_no_k_order")

    @property
    def berm_o(self) -> Path:
        return self.student("berm_o")

    # files, in the order the stages write them
    @property
    def stages(self) -> Path:
        return self.root / "stages.json"

    @property
    def bm25_top(self) -> Path:
        return self.root / "bm25_top.json"

    @property
    def dev_labels(self) -> Path:
        return self.root / "dev_labels.npz"

    @property
    def train_labels(self) -> Path:
        return self.root / "train_labels.npz"

    @property
    def pseudo_queries(self) -> Path:
        return self.root / "pseudo_queries.json"  # the labels stage's extra queries, id -> text

    @property
    def unlabeled_queries(self) -> Path:
        return self.root / "unlabeled_queries.json"

    @property
    def graph(self) -> Path:
        return self.root / "graph.json"

    def graph_fold(self, fold: int) -> Path:
        return self.root / f"graph_fold{fold}.json"

    @property
    def graph_source(self) -> Path:
        return self.root / "graph_source.json"

    @property
    def vocab(self) -> Path:
        return self.root / "vocab.json"

    @property
    def word_vectors(self) -> Path:
        return self.root / "word_vectors.npz"

    @property
    def dev_check(self) -> Path:
        return self.root / "dev_check.json"

    @property
    def eval(self) -> Path:
        return self.root / "eval.json"

    # FAISS stores, saved as VectorStore.save(root, name)
    ITEM_STORE = "item_store"
    QUERY_STORE = "query_store"
    TITLE_CACHE = "title_cache"  # every product title this run embedded
