"""`shopsearch upgrade` (searchstack/upgrade.py): a model trained later rolls into the running
replicas only when its dev check beats the served model's; the demo's link follows it."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from reranker.client import Candidate, RerankClient
from searchstack.demo import start_replicas, start_upgrade
from searchstack.settings import Settings
from searchstack.stack import Stack
from searchstack.upgrade import dev_ndcg, link_current, roll_in_if_better, served_artifact
from tests.shop_page import ARTIFACT_QUERIES, TITLES
from tests.test_cli import shopsearch
from tests.test_stack import free_consecutive_ports
from tests.tiny_artifact import build_tiny_artifact

SERVED = "BERM-O (ONNX)"


def with_dev_check(artifact: Path, ndcg: float) -> Path:
    """The artifact with a dev check whose served model scored `ndcg` (as the pipeline records it)."""
    path = artifact / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["dev_check"] = {"served": SERVED, "served_is_better": True, "models": {SERVED: {"ndcg@10": ndcg}}}
    path.write_text(json.dumps(manifest, indent=1))
    return artifact


def version_of(artifact: Path) -> str:
    manifest = json.loads((artifact / "manifest.json").read_text())
    return f"{manifest['model_version']}+{manifest['artifact_id']}"


def served_versions(target: str, calls: int = 8) -> set[str]:
    with RerankClient(target) as client:
        client.wait_serving(30)
        return {client.rerank("cordless drill", [Candidate(pid, 9.0 - i, i + 1) for i, pid in enumerate(TITLES)],
                              timeout=10).model_version for _ in range(calls)}


def test_a_better_model_rolls_into_every_replica_and_a_worse_one_does_not(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    quick = with_dev_check(build_tiny_artifact(artifacts / "pipeline" / "shop-quick" / "serving", TITLES,
                                               ARTIFACT_QUERIES, seed=0), 0.40)
    worse = with_dev_check(build_tiny_artifact(tmp_path / "worse", TITLES, ARTIFACT_QUERIES, seed=1), 0.30)
    better = with_dev_check(build_tiny_artifact(artifacts / "pipeline" / "shop-full" / "serving", TITLES,
                                                ARTIFACT_QUERIES, seed=2), 0.45)
    assert dev_ndcg(better) == 0.45 and dev_ndcg(tmp_path / "nothing") == float("-inf")
    settings = Settings(artifacts_dir=artifacts, rerank_port=free_consecutive_ports(2), rerank_metrics_port=None,
                        rerank_replicas=2, stack_dir=tmp_path / "stack", upgrade_pause_s=0)
    stack = Stack(settings.stack_dir)
    try:
        target = start_replicas(settings, stack, quick, Console(file=io.StringIO()))
        link_current(settings, quick)
        assert served_versions(target) == {version_of(quick)}

        kept = roll_in_if_better(settings, worse)
        assert not kept.rolled and kept.served == quick.resolve()
        assert kept.line().startswith("kept the served model") and "0.4000" in kept.line()
        assert served_versions(target) == {version_of(quick)} and served_artifact(settings) == quick.resolve()

        judged = []  # scored on the same dev queries, the candidate loses, whatever the two recorded
        kept = roll_in_if_better(settings, better, judge=lambda served: judged.append(served) or (0.41, 0.44, 0.02, 40))
        assert judged == [quick.resolve()] and not kept.rolled
        assert kept.line().endswith("is not better on dev (0.4100 on the same 40 dev queries, p = 0.02)")
        assert served_versions(target) == {version_of(quick)}

        rolled = roll_in_if_better(settings, better)
        assert rolled.rolled and rolled.versions == (version_of(better),) * 2
        assert rolled.line() == (f"2 replica(s) now serve {version_of(better)} from {better.resolve()} "
                                 f"(dev NDCG@10 0.4500, was 0.4000)")
        assert served_versions(target) == {version_of(better)}
        assert served_artifact(settings) == better.resolve()  # a restarted demo serves it too

        again = roll_in_if_better(settings, better)  # already served: nothing to do
        assert not again.rolled

        out = io.StringIO()  # the demo does not start training the profile it already serves
        start_upgrade(settings, stack, "generic", None, Console(file=out, width=300))
        assert "already the 'full' profile's" in out.getvalue() and stack.pid("upgrade") is None
    finally:
        shopsearch("stop", "--keep-es", env={"SHOPSEARCH_STACK_DIR": str(settings.stack_dir)})


def test_upgrade_explains_itself() -> None:
    done = shopsearch("upgrade", "--help")
    assert done.returncode == 0
    assert "dev NDCG@10" in done.stdout and "--profile" in done.stdout
