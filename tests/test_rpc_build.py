"""The stub build step: generated from the .proto, importable as a package, rebuilt when stale."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from reranker.rpc import build
from searchstack.settings import PROJECT_ROOT


def _import_package(folder: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.reranker_pb2_grpc")


def test_build_writes_importable_stubs_and_tracks_the_proto(tmp_path: Path) -> None:
    proto = tmp_path / "reranker.proto"
    proto.write_text(build.PROTO.read_text())
    out = tmp_path / "gen"
    assert not build.is_current(proto, out)
    build.build(proto, out)
    assert build.is_current(proto, out)
    assert "from . import reranker_pb2 as reranker__pb2" in (out / "reranker_pb2_grpc.py").read_text()
    grpc_module = _import_package(out, "scratch_generated_stubs")
    assert hasattr(grpc_module, "RerankerStub") and hasattr(grpc_module, "RerankerAdminServicer")
    proto.write_text(proto.read_text() + "\n// an edit\n")
    assert not build.is_current(proto, out)  # an edited contract means stale stubs


def test_build_reports_a_missing_proto(tmp_path: Path) -> None:
    with pytest.raises(build.StubBuildError, match="reranker.proto not found"):
        build.build(tmp_path / "reranker.proto", tmp_path / "gen")


def test_generated_stubs_are_ignored_by_git() -> None:
    done = subprocess.run(["git", "check-ignore", "reranker/rpc/_generated/reranker_pb2.py"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, "generated stubs must never be committed"


def test_command_line_build() -> None:
    done = subprocess.run([sys.executable, "-m", "reranker.rpc.build"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout or "generated" in done.stdout
    assert "RuntimeWarning" not in done.stderr
