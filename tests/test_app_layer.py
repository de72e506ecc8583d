"""The application layer (searchstack/app.py): values and errors, no console; and no import circles."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.records import CatalogError, MalformedRowError
from searchstack import app
from searchstack.settings import PROJECT_ROOT, Settings
from tests.conftest import SMALL_PRODUCTS, TEST_ES_PORT


@pytest.fixture
def shop_with_a_bad_row(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir()
    lines = [json.dumps({"product_id": p, "title": t}) for p, t in SMALL_PRODUCTS]
    lines.insert(2, "{not json")
    (folder / "products.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "queries.csv").write_text("query_id,query\nq1,cordless drill\nq2,paint brushes\n")
    (folder / "labels.csv").write_text("query_id,product_id,grade\nq1,p1,2\nq2,p7,2\n")
    return folder


def test_reading_a_catalog_prints_nothing_and_returns_the_skipped_rows(
    shop_with_a_bad_row: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    catalog = app.read_catalog(Settings(), app.Format.generic, shop_with_a_bad_row)
    assert capfd.readouterr() == ("", "")
    assert len(catalog.products) == len(SMALL_PRODUCTS)
    assert [(Path(row.file).name, row.line) for row in catalog.bad_rows] == [("products.jsonl", 3)]
    with pytest.raises(MalformedRowError):
        app.read_catalog(Settings(), app.Format.generic, shop_with_a_bad_row, strict=True)


def test_the_generic_format_needs_a_path() -> None:
    with pytest.raises(CatalogError, match=r"^the generic format needs --path"):
        app.read_catalog(Settings(), app.Format.generic, None)


def test_a_split_is_written_once_then_reused(shop_with_a_bad_row: Path, tmp_path: Path) -> None:
    settings = Settings(artifacts_dir=tmp_path / "artifacts")
    catalog = app.read_catalog(settings, app.Format.generic, shop_with_a_bad_row)
    first = app.current_split(settings, catalog)
    again = app.current_split(settings, catalog)
    assert first.written and not again.written and first.path.is_file()
    assert again.split == first.split
    reseeded = app.current_split(Settings(artifacts_dir=tmp_path / "artifacts", split_seed=99), catalog)
    assert reseeded.written and reseeded.split.seed == 99


def test_node_bring_up_uses_the_settings_it_is_given(es_url: str) -> None:
    if not es_url.endswith(f":{TEST_ES_PORT}"):
        pytest.skip("ES_URL points at a cluster this test did not start")
    settings = Settings(es_port=TEST_ES_PORT, es_var_dir=PROJECT_ROOT / "var" / "test")
    result = app.start_node(settings)
    assert result.already_running and result.url == es_url
    assert app.node_started_message(result) == f"Elasticsearch is already running on {es_url}; nothing to do"


def test_the_app_layer_has_no_console() -> None:
    tree = ast.parse((PROJECT_ROOT / "searchstack" / "app.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"rich", "typer", "tqdm", "searchstack.cli"}
    assert not re.search(r"\bprint\(", (PROJECT_ROOT / "searchstack" / "app.py").read_text())


def test_no_module_imports_one_that_imports_it_back() -> None:
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "import_graph.py")],
                          capture_output=True, text=True, check=True)
    assert "module cycles: none" in done.stdout.splitlines()
    assert "room cycles: none" in done.stdout.splitlines()  # e.g. evaluation never imports the reranker
