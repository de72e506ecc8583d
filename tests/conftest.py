"""Shared fixtures: one real Elasticsearch node for the whole session, and a small catalog.

The node is started from the project's own files on a test port (or `ES_URL` is used as is);
nothing here mocks Elasticsearch.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from es_config.local_node import LocalNode
from indexer.records import Catalog, Judgment, Product, Query
from searchstack.settings import PROJECT_ROOT, Settings

TEST_ES_PORT = int(os.environ.get("SHOPSEARCH_TEST_ES_PORT", "9211"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_node(port: int = TEST_ES_PORT, **overrides) -> LocalNode:
    """A node sharing the project's Elasticsearch download, with its own state under var/test/."""
    settings = Settings()
    fields = dict(version=settings.es_version, host="127.0.0.1", port=port, heap="512m",
                  cache_dir=settings.es_cache_dir, var_dir=PROJECT_ROOT / "var" / "test", start_timeout_s=120.0)
    return LocalNode(**{**fields, **overrides})


test_node.__test__ = False  # a factory, not a test


@pytest.fixture(scope="session")
def es_url() -> str:
    if os.environ.get("ES_URL"):
        yield os.environ["ES_URL"]
        return
    node = test_node()
    if node.status().running:
        node.stop()
    shutil.rmtree(node.node_dir / "data", ignore_errors=True)  # every session starts empty
    node.start()
    yield node.url
    node.stop()


@pytest.fixture(scope="session")
def es(es_url: str) -> Elasticsearch:
    from indexer.bulk_index import connect

    return connect(es_url)


@pytest.fixture
def alias(es: Elasticsearch) -> str:
    """A fresh alias name; its indexes are deleted after the test."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    # Deleting by wildcard is refused (action.destructive_requires_name), so by name.
    for index in es.indices.get(index=f"{name}-*", allow_no_indices=True):
        es.indices.delete(index=index)


def make_catalog(products: list[tuple[str, str]], name: str = "tiny") -> Catalog:
    catalog = Catalog(name=name)
    for product_id, title in products:
        catalog.products[product_id] = Product(product_id, title)
    return catalog


SMALL_PRODUCTS = [
    ("p1", "DeWalt 20V MAX Cordless Drill Driver Kit"),
    ("p2", "Ryobi 18V Cordless Impact Driver"),
    ("p3", "Makita Corded Hammer Drill 1/2 in."),
    ("p4", "Estwing 16 oz. Claw Hammer"),
    ("p5", "Behr Premium Plus White Interior Paint 1 gal."),
    ("p6", "Drill Bit Set for Wood and Metal (29-Piece)"),
    ("p7", "Purdy 2 in. Angled Paint Brush"),
    ("p8", "Husky Tool Box with Drawers"),
]


@pytest.fixture
def small_catalog() -> Catalog:
    """A hardware shop written for the tests, with grades for two queries."""
    catalog = make_catalog(SMALL_PRODUCTS, name="small-shop")
    catalog.queries = {"q1": Query("q1", "cordless drill"), "q2": Query("q2", "paint brushes")}
    catalog.judgments = [
        Judgment("q1", "p1", 2.0), Judgment("q1", "p2", 1.0), Judgment("q1", "p3", 1.0),
        Judgment("q1", "p6", 0.0), Judgment("q2", "p7", 2.0), Judgment("q2", "p5", 0.0),
    ]
    return catalog


@pytest.fixture(scope="session")
def home_depot_path() -> Path:
    path = Settings().home_depot_path
    if not path.exists():
        pytest.skip(f"Home Depot data not found at {path} (set SHOPSEARCH_HOME_DEPOT_PATH)")
    return path


@pytest.fixture
def events_prefix(es: Elasticsearch) -> str:
    """A fresh behaviour-events prefix (frontend/events.py) per test; its indices, read-only or not,
    and its template are removed after."""
    from frontend.events import new_id

    name = f"test-events-{new_id().lower().replace('_', '').replace('-', '')[:10]}"
    yield name
    for index in es.indices.get(index=f"{name}-*", allow_no_indices=True):
        es.indices.put_settings(index=index, settings={"index.blocks.read_only": None})
        es.indices.delete(index=index)
    es.options(ignore_status=404).indices.delete_index_template(name=name)


@pytest.fixture(scope="module")
def page_shop(es: Elasticsearch) -> str:
    """The page tests' catalog (tests/shop_page.py) indexed once per module, under its own alias."""
    from indexer.bulk_index import index_catalog
    from tests.shop_page import page_catalog

    alias = f"test-page-shop-{uuid.uuid4().hex[:8]}"
    index_catalog(es, page_catalog(), alias, force=True)
    yield alias
    for index in es.indices.get(index=f"{alias}-*", allow_no_indices=True):
        es.indices.delete(index=index)
