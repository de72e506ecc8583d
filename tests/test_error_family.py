"""One error family: every library error derives from ShopsearchError, and the CLI catches that base."""

from __future__ import annotations

import ast
import importlib
import subprocess
from pathlib import Path

import pytest
import typer

from common.errors import ShopsearchError
from searchstack.settings import PROJECT_ROOT
from tests.test_cli import assert_one_line_error, shop_folder, shopsearch  # noqa: F401 (fixture)

LIBRARY_ROOMS = ("common", "es_config", "indexer", "reranker", "evaluation", "frontend", "searchstack", "bench")


def exception_classes() -> list[tuple[str, str]]:
    """(module, class) of every class in library code whose bases name an Error or Exception."""
    found = []
    for room in LIBRARY_ROOMS:
        for path in sorted((PROJECT_ROOT / room).rglob("*.py")):
            if "_generated" in path.parts or path.name == "__main__.py":
                continue
            tree = ast.parse(path.read_text())
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and any(
                    (isinstance(b, ast.Name) and b.id.endswith(("Error", "Exception", "Unavailable", "Request")))
                    or (isinstance(b, ast.Attribute) and b.attr.endswith(("Error", "Exception")))
                    for b in node.bases
                ):
                    module = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__")
                    found.append((module, node.name))
    return found


def test_every_library_error_derives_from_the_base() -> None:
    classes = exception_classes()
    names = {name for _, name in classes}
    # the ones the CLI's hand list used to miss are among them
    assert {"GraphError", "StoreError", "ContextError", "ArtifactError", "NodeError", "CatalogError"} <= names
    outside = []
    for module, name in classes:
        cls = getattr(importlib.import_module(module), name)
        if issubclass(cls, BaseException) and not issubclass(cls, ShopsearchError):
            outside.append(f"{module}.{name}")
    assert outside == []


def test_older_bases_still_catch_them() -> None:
    from es_config.local_node import NodeError
    from indexer.faiss_store import StoreMissingError
    from reranker.server.validation import InvalidRequest

    assert issubclass(NodeError, RuntimeError) and issubclass(InvalidRequest, ValueError)
    assert issubclass(StoreMissingError, FileNotFoundError) and issubclass(StoreMissingError, ShopsearchError)


def test_the_cli_turns_any_family_member_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from indexer.graph import GraphError
    from searchstack.cli import one_line_errors

    @one_line_errors
    def command() -> None:
        raise GraphError("graph.json: not a click graph\nsecond line")

    with pytest.raises(typer.Exit) as excinfo:
        command()
    assert excinfo.value.exit_code == 1
    assert "error: graph.json: not a click graph" in capsys.readouterr().err


def test_pipeline_with_an_unknown_stage_fails_before_indexing(shop_folder: Path) -> None:
    # The cluster URL is dead: were the catalog indexed first, the error would be about Elasticsearch.
    done: subprocess.CompletedProcess = shopsearch(
        "pipeline", "--until", "typo", "-f", "generic", "--path", str(shop_folder), "--es-url", "http://127.0.0.1:9"
    )
    assert_one_line_error(
        done,
        "unknown stage 'typo'; stages: bm25, teacher, teacher_mix, labels, query_encoder, graph, faiss, berm, berm_no_k_order, "
        "berm_o, dev_check, evaluate",
    )
