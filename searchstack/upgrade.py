"""`shopsearch upgrade` and `shopsearch demo --upgrade`: a bigger profile trained in the background,
rolled into the running replicas when its dev check beats the served model's.

Why: the demo's quick profile trains in minutes, and its teacher is not significantly better than
BM25 on the test queries; the full profile needs about an hour of a 2-core machine. The demo should
not wait for it, and nobody should have to come back and swap models by hand: the replicas reload
one at a time (reranker/rolling.py) while the page keeps searching.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.artifacts import MANIFEST, ServingManifest
from searchstack.settings import Settings

UPGRADE = "upgrade"  # the background training's name among the stack's processes (searchstack/stack.py)


def dev_ndcg(artifact: Path | None) -> float:
    """The served model's dev NDCG@10 recorded in an artifact's dev check (-inf when it has none)."""
    if artifact is None or not (Path(artifact) / MANIFEST).is_file():
        return float("-inf")
    check = ServingManifest.read(artifact).dev_check or {}
    value = check.get("models", {}).get(check.get("served", ""), {}).get("ndcg@10")
    return float(value) if value is not None else float("-inf")


def served_artifact(settings: Settings) -> Path | None:
    """What the demo serves: the `<artifacts>/serving` link's target (None when there is no link)."""
    link = settings.artifacts_dir / "serving"
    return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None


# (candidate's NDCG@10, served's, paired p, dev queries) on one set of dev queries
Judge = Callable[[Path], tuple[float, float, float, int]]


@dataclass(frozen=True)
class Upgrade:
    """What `roll_in_if_better` found and did."""

    candidate: Path
    served: Path | None
    candidate_dev: float
    served_dev: float
    rolled: bool  # the replicas reloaded the candidate (and the link points at it)
    versions: tuple[str, ...] = ()  # each replica's model version after the reload
    p: float | None = None  # paired, when both were scored on the same dev queries
    queries: int = 0  # those dev queries (0: each model's own recorded dev check)

    def line(self) -> str:
        """One line for the user."""
        shown = "none" if math.isinf(self.served_dev) else f"{self.served_dev:.4f}"
        on = f" on the same {self.queries} dev queries, p = {self.p:.2g}" if self.queries else ""
        if not self.rolled:
            return (f"kept the served model ({self.served}, dev NDCG@10 {shown}): {self.candidate} is not better "
                    f"on dev ({self.candidate_dev:.4f}{on})")
        return (f"{len(self.versions)} replica(s) now serve {self.versions[-1]} from {self.candidate} "
                f"(dev NDCG@10 {self.candidate_dev:.4f}, was {shown}{on})")


def link_current(settings: Settings, artifact: Path) -> Path:
    """`<artifacts>/serving` -> the artifact the demo serves (docker-compose's reranker serves that path)."""
    link = settings.artifacts_dir / "serving"
    target = os.path.relpath(artifact.resolve(), settings.artifacts_dir.resolve())
    if link.is_symlink() and os.readlink(link) == target:
        return link
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        return link  # a real folder someone put there: theirs, left alone
    link.symlink_to(target, target_is_directory=True)
    return link


def roll_in_if_better(settings: Settings, candidate: Path, judge: Judge | None = None) -> Upgrade:
    """Reload `candidate` (a serving artifact) on each of the demo's replicas in turn and point the
    `<artifacts>/serving` link at it, when its dev NDCG@10 beats the served artifact's: both scored
    on the same dev queries by `judge` when given (the candidate's run does it: `shopsearch upgrade`),
    else each one's recorded dev check.

    Raises reranker.rolling.RollingReloadError when a replica does not take it (the link then still
    names the old model, so a restarted demo serves what the replicas served)."""
    from reranker.rolling import replica_addresses, rolling_reload

    candidate = Path(candidate).resolve()
    served = served_artifact(settings)
    if served is not None and served != candidate and judge is not None:
        ours, theirs, p, queries = judge(served)
        found = Upgrade(candidate, served, ours, theirs, rolled=False, p=p, queries=queries)
    else:
        found = Upgrade(candidate, served, dev_ndcg(candidate), dev_ndcg(served), rolled=False)
    if served == candidate or not found.candidate_dev > found.served_dev:
        return found
    steps = rolling_reload(replica_addresses(settings.resolved_rerank_target), str(candidate),
                           pause_s=settings.upgrade_pause_s)
    link_current(settings, candidate)
    return dataclasses.replace(found, rolled=True, versions=tuple(step.model_version for step in steps))
