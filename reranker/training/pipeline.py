"""The whole distillation pipeline as restartable stages, sized by a profile.

    bm25 -> teacher -> teacher_mix -> labels -> query_encoder -> graph -> faiss -> berm -> berm_o -> evaluate

Each stage writes its artifacts under `artifacts/pipeline/<dataset>-<profile>/` and records its
wall time and a config digest in `stages.json`; a re-run skips a stage whose digest is unchanged,
so an interrupted run continues where it stopped. Test queries are only touched by `evaluate`.

This module is the runner: the stage table (`STAGES`), the digest chain and the bookkeeping. What
the stages share is the run context (run.py); the stages are in teacher_stages.py,
student_stages.py and checks.py; the profiles that size them in profiles.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from reranker.training import checks, run as run_context, student_stages, teacher_stages
from reranker.training.checks import Evaluation
from reranker.training.errors import PipelineError
from reranker.training.profiles import MEASUREMENT_ONLY, STAGE_SETTINGS
from reranker.training.run import RunContext

log = logging.getLogger(__name__)

Stage = Callable[[RunContext], Evaluation | None]

# The stages in the order they run; each a function of the run context. Only `evaluate` returns
# something (its figures, for the CLI to print).
STAGES: dict[str, Stage] = {
    "bm25": teacher_stages.bm25,
    "teacher": teacher_stages.teacher,
    "teacher_mix": teacher_stages.teacher_mix,
    "labels": teacher_stages.labels,
    "query_encoder": student_stages.query_encoder,
    "graph": student_stages.graph,
    "faiss": student_stages.faiss,
    "berm": student_stages.berm,
    "berm_no_k_order": student_stages.berm_no_k_order,  # the ablation, when the profile asks for it
    "berm_o": student_stages.berm_o,
    "dev_check": checks.dev_check,
    "evaluate": checks.evaluate,
}
# the loggers that report the stages' progress (the demo shows them)
LOGGERS = (__name__, run_context.__name__, teacher_stages.__name__, student_stages.__name__, checks.__name__)


def check_stage(name: str | None) -> None:
    """Refuse a stage name that is not in the table (None: the whole pipeline)."""
    if name is not None and name not in STAGES:
        raise PipelineError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class Pipeline(RunContext):
    """A run: its context, and the stages of STAGES run in order, each skipped when up to date."""

    timings: dict[str, float] = field(default_factory=dict)
    evaluation: Evaluation | None = None  # set when this run's evaluate stage ran (not when up to date)

    def run_stage(self, name: str, digest: str, stage: Stage) -> None:
        stages = self.recorded_stages()
        if stages.get(name, {}).get("digest") == digest:
            log.info("stage %s is up to date", name)
            self.timings[name] = stages[name]["seconds"]
            return
        began = time.monotonic()
        result = stage(self)
        if result is not None:
            self.evaluation = result
        seconds = time.monotonic() - began
        stages = self.recorded_stages()
        stages[name] = {"digest": digest, "seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.layout.stages.write_text(json.dumps(stages, indent=1))
        self.timings[name] = seconds

    def stage_digest(self, name: str) -> str:
        return self.recorded_stages().get(name, {}).get("digest", "missing")

    def run(self, until: str | None = None) -> None:
        check_stage(until)
        # A stage's digest chains the one before it: redoing a stage redoes everything after it.
        settings = asdict(self.profile)
        later = {stage: {key: settings.pop(key) for key in keys} for stage, keys in STAGE_SETTINGS.items()}
        for key in MEASUREMENT_ONLY:
            settings.pop(key)
        digest = _digest(settings, self.manifest)
        for name, stage in STAGES.items():
            if name == "berm_no_k_order" and not self.profile.k_order_ablation:
                continue
            if name in later:
                digest = _digest(digest, later[name])
            digest = _digest(digest, name)
            log.info("stage %s", name)
            self.run_stage(name, digest, stage)
            if name == until:
                break
