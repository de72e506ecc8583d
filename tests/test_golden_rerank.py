"""A golden rerank order: a seeded tiny BERM-O artifact on the test catalog, its exact order and
scores for two queries pinned in tests/golden/rerank_tiny_berm_o.json, so a consistent scoring
regression (tokenizer, BM25 normalisation, context, ONNX export) fails instead of agreeing with itself.

A deliberate change of the model's scoring rewrites the golden file (then review its diff):

    SHOPSEARCH_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_rerank.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reranker.client import RerankClient
from common.results import Candidate
from common.settings import RerankSettings
from reranker.server.app import RerankServer
from reranker.server.models import load_berm_o
from reranker.serving.online import OnlineReranker
from tests.tiny_artifact import build_tiny_artifact
from tests.conftest import SMALL_PRODUCTS

GOLDEN = Path(__file__).parent / "golden" / "rerank_tiny_berm_o.json"
TITLES = dict(SMALL_PRODUCTS)
GRAPH_QUERIES = ["cordless drill", "paint brush", "claw hammer", "tool box"]
SEED = 7
# Fixed BM25 lists (the scores Elasticsearch gave these titles, rounded), so only the model varies.
BM25 = {
    "cordless drill": [("p1", 9.8), ("p2", 6.1), ("p3", 4.4), ("p6", 4.2)],
    "paint brushes": [("p7", 7.3), ("p5", 3.9), ("p4", 0.8), ("p8", 0.5)],
}
SCORE_TOLERANCE = 1e-4  # float32 ONNX scores; the order itself must match exactly


def candidates(query: str) -> list[Candidate]:
    return [Candidate(pid, score, rank) for rank, (pid, score) in enumerate(BM25[query], start=1)]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return build_tiny_artifact(tmp_path_factory.mktemp("golden") / "tiny", TITLES, GRAPH_QUERIES, seed=SEED)


def model_order(model: OnlineReranker, query: str) -> list[tuple[str, float]]:
    out = model.rerank(query, candidates(query))
    assert out.unscored == []
    return [(s.product_id, round(s.score, 6)) for s in sorted(out.scored, key=lambda s: -s.score)]


def test_the_tiny_model_ranks_as_pinned(artifact: Path) -> None:
    model = OnlineReranker.load(artifact)
    got = {query: model_order(model, query) for query in BM25}
    if os.environ.get("SHOPSEARCH_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps({"model_version": model.version, "seed": SEED, "orders": got}, indent=2) + "\n")
        pytest.skip(f"rewrote {GOLDEN}; review its diff")
    golden = json.loads(GOLDEN.read_text())
    assert golden["seed"] == SEED and set(golden["orders"]) == set(BM25)
    for query, pinned in golden["orders"].items():
        assert [pid for pid, _ in got[query]] == [pid for pid, _ in pinned], query
        assert [s for _, s in got[query]] == pytest.approx([s for _, s in pinned], abs=SCORE_TOLERANCE), query
    # the order is the model's, not BM25's: at least one query is reordered
    assert any([pid for pid, _ in pinned] != [pid for pid, _ in BM25[q]] for q, pinned in golden["orders"].items())


def test_the_service_answers_the_pinned_order(artifact: Path) -> None:
    if os.environ.get("SHOPSEARCH_REGEN_GOLDEN"):
        pytest.skip("regenerating the golden file")
    golden = json.loads(GOLDEN.read_text())
    with RerankServer(RerankSettings(port=0, metrics_port=None, reload_poll_s=0), loader=load_berm_o, artifact=artifact) as server:
        server.wait_ready(120)
        with RerankClient(server.target) as client:
            for query, pinned in golden["orders"].items():
                result = client.rerank(query, candidates(query))
                assert [item.product_id for item in result.items] == [pid for pid, _ in pinned], query
                assert all(item.reranked for item in result.items)
