"""The serving artifact's manifest as one typed object (common/artifacts.py): format checked,
unknown keys refused, every key the pipeline writes read back as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.artifacts import ARTIFACT_FORMAT, ManifestError, RunLayout, ServingManifest, model_manifest

# The keys of a quick run's serving manifest as the pipeline wrote it before this type existed
# (artifacts/pipeline/home-depot-quick/serving/manifest.json, values shortened), plus the later ones.
WRITTEN = {
    "format": ARTIFACT_FORMAT, "model": "BERM-O", "model_version": "berm-o-2", "use_k_order": True,
    "use_tuned_query": True, "per_path": 5, "seed": 13, "max_query_tokens": 16, "max_title_tokens": 32,
    "items": 12000, "graph_queries": 300, "graph_edges": 4100, "created": "2026-12-06T21:10:00",
    "dataset": "home-depot", "data_fingerprint": "abc", "split_id": "s1", "profile": "quick",
    "graph": {"built_from": "teacher-scored impressions", "edges": 4100},
    "distill_config": {"epochs": 5}, "loss_history": [0.9, 0.5], "dev_spearman_with_teacher": 0.61,
    "artifact_id": "f00d37f256a2", "onnx_vs_torch_max_abs_diff": 2e-6,
    "dev_check": {"served": "BERM-O (ONNX)", "served_is_better": False, "models": {}, "warnings": []},
    "linear_start": [0.1, 0.2], "dev_ndcg@10_by_epoch": [0.40, 0.42], "epoch_kept": 1, "trained_depth": 100,
}


def test_a_written_manifest_reads_back_to_the_same_json(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(WRITTEN))
    manifest = ServingManifest.read(tmp_path)
    assert manifest.dev_ndcg10_by_epoch == [0.40, 0.42] and manifest.trained_depth == 100
    assert manifest.version == "berm-o-2+f00d37f256a2"
    (tmp_path / "again").mkdir()
    manifest.write(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "manifest.json").read_text()) == WRITTEN


def test_fields_an_older_artifact_lacks_are_not_written_as_nulls() -> None:
    older = {k: v for k, v in WRITTEN.items() if k not in ("use_tuned_query", "trained_depth", "linear_start",
                                                            "dev_ndcg@10_by_epoch", "epoch_kept", "dev_check")}
    manifest = ServingManifest.from_dict(older)
    assert manifest.use_tuned_query is False and manifest.trained_depth is None
    assert manifest.to_dict() == {**older, "use_tuned_query": False}


def test_an_unknown_key_is_refused_with_its_name() -> None:
    with pytest.raises(ManifestError, match="serving: unknown manifest keys colour, tiny"):
        ServingManifest.from_dict({**WRITTEN, "tiny": True, "colour": "red"}, where="serving")


@pytest.mark.parametrize("data", [{**WRITTEN, "format": "shopsearch-berm-o/0"},
                                  {k: v for k, v in WRITTEN.items() if k != "format"}, ["not", "an", "object"]])
def test_another_format_is_refused(data) -> None:
    with pytest.raises(ManifestError, match=f"^serving: not a {ARTIFACT_FORMAT} artifact$"):
        ServingManifest.from_dict(data, where="serving")


def test_a_missing_required_key_is_named() -> None:
    with pytest.raises(ManifestError, match="manifest lacks per_path, seed"):
        ServingManifest.from_dict({k: v for k, v in WRITTEN.items() if k not in ("per_path", "seed")})


def test_a_manifest_that_is_not_json_says_so(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{ not json")
    with pytest.raises(ManifestError, match=f"^{tmp_path}/manifest.json: not JSON \\("):
        ServingManifest.read(tmp_path)


def test_model_manifest_prefers_the_folders_own_and_else_a_students(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    assert model_manifest(layout.student("berm")) == {}
    layout.student("berm").mkdir()
    (layout.student("berm") / "berm_manifest.json").write_text('{"model": "berm"}')
    assert model_manifest(layout.student("berm")) == {"model": "berm"}
    layout.serving.mkdir()
    (layout.serving / "berm_o_manifest.json").write_text('{"model": "berm_o"}')
    (layout.serving / "manifest.json").write_text(json.dumps(WRITTEN))
    assert model_manifest(layout.serving)["artifact_id"] == "f00d37f256a2"
