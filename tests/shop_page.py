"""What the page tests share: a small hardware catalog with grades, and a reranker that is slow on purpose."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from indexer.bulk_index import index_catalog
from indexer.records import Judgment, Query
from common.results import Reranking
from tests.tiny_artifact import build_tiny_artifact
from searchstack.stack import RERANKER, WEB, Stack, replica_name, reranker_serving, shopsearch_argv, web_answering
from tests.conftest import SMALL_PRODUCTS, free_port, make_catalog

PAGE_PRODUCTS = [
    *SMALL_PRODUCTS,
    ("p9", "Milwaukee M18 Cordless Drill Driver"),
    ("p10", "Bosch 12V Cordless Drill"),
    ("p11", "Black+Decker 20V Cordless Drill with 30-Piece Accessories"),
    ("p12", "Drill Press Stand for Hand Drills"),
    ("p13", "Ryobi Corded Drill 5.5 Amp"),
    ("p14", "Cordless Drill Battery Charger"),
    ("p15", "Wood Drill Bits Brad Point 7-Piece"),
    ("p16", "Masonry Drill Bit Set"),
]
TITLES = dict(PAGE_PRODUCTS)
ARTIFACT_QUERIES = ["cordless drill", "drill bits", "paint brush", "claw hammer", "tool box", "hammer drill"]
GRADES = {
    "q1": {"p1": 2.0, "p2": 1.0, "p3": 1.0, "p6": 0.0, "p9": 2.0, "p10": 2.0, "p14": 0.5},
    "q2": {"p7": 2.0, "p5": 0.0},
    "q3": {"p6": 2.0, "p15": 2.0, "p16": 1.5, "p12": 0.0},
}


def page_catalog():
    """The shop of the page tests: 16 products, three graded queries (the "test split" of the page)."""
    catalog = make_catalog(PAGE_PRODUCTS, name="page-shop")
    catalog.queries = {"q1": Query("q1", "cordless drill"), "q2": Query("q2", "paint brushes"),
                       "q3": Query("q3", "drill bits")}
    catalog.judgments = [Judgment(q, p, g) for q, items in GRADES.items() for p, g in items.items()]
    return catalog


class SlowModel:
    """A real model that takes `delay_s` longer: a reranker slower than the page's deadline."""

    thread_safe = True

    def __init__(self, model, delay_s: float) -> None:
        self.model, self.delay_s = model, delay_s
        self.name, self.version = model.name, model.version

    def warm_up(self) -> None:
        self.model.warm_up()

    def rerank(self, query, candidates, explain=False) -> Reranking:
        time.sleep(self.delay_s)
        return self.model.rerank(query, candidates, explain)


# -- the demo stack of the page tests: `shopsearch serve` and `shopsearch web` as background processes --

def write_generic_catalog(folder: Path) -> Path:
    """The page catalog in the generic format, for `shopsearch web -f generic`."""
    folder.mkdir(parents=True, exist_ok=True)
    catalog = page_catalog()
    (folder / "products.jsonl").write_text("".join(json.dumps({"product_id": p, "title": t}) + "\n"
                                                   for p, t in PAGE_PRODUCTS))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"query_id": q.query_id, "query": q.text}) + "\n"
                                                  for q in catalog.queries.values()))
    (folder / "labels.jsonl").write_text("".join(json.dumps({"query_id": q, "product_id": p, "grade": g}) + "\n"
                                                 for q, items in GRADES.items() for p, g in items.items()))
    return folder


@dataclass
class PageStack:
    stack: Stack
    env: dict[str, str]
    serve: list[str]  # the (first) reranker's command line
    web: list[str]
    target: str  # the one reranker, or all the replicas (gRPC's address list)
    url: str
    artifact: Path | None = None
    replicas: list[tuple[str, list[str], str]] = field(default_factory=list)  # (stack name, argv, address)

    def start(self, name: str) -> None:
        if name == WEB:
            self.stack.start(WEB, self.web, lambda: web_answering(self.url), timeout_s=120, env=self.env)
            return
        for replica, argv, address in self.replicas:
            if replica == name:
                self.stack.start(name, argv, lambda: reranker_serving(address), timeout_s=180, env=self.env)

    def stop_all(self) -> None:
        for name in (WEB, *(r[0] for r in self.replicas)):
            self.stack.stop(name)


def start_page_stack(root: Path, es, es_url: str, alias: str, replicas: int = 1, web: bool = True,
                     **env_overrides: str) -> PageStack:
    """The page catalog indexed behind `alias` (es None: not indexed), a tiny artifact, the reranker
    (`replicas` processes, balanced by the page's client) and the page started (unless not `web`)."""
    if es is not None:
        index_catalog(es, page_catalog(), alias, force=True)
    artifact = build_tiny_artifact(root / "berm-o", TITLES, ARTIFACT_QUERIES, seed=0)
    env = {
        "SHOPSEARCH_ES_URL": es_url, "SHOPSEARCH_INDEX_ALIAS": alias,
        "SHOPSEARCH_ARTIFACTS_DIR": str(root / "artifacts"),
        "SHOPSEARCH_RERANK_PORT": str(free_port()), "SHOPSEARCH_RERANK_METRICS_PORT": str(free_port()),
        "SHOPSEARCH_WEB_PORT": str(free_port()), "SHOPSEARCH_WEB_PAGE_SIZE": "5",
        "SHOPSEARCH_RERANK_DEPTH": "8", "SHOPSEARCH_RERANK_PAGE_DEADLINE_MS": "1000",
        "SHOPSEARCH_WEB_BUDGET_MS": "3000",
        # nearly every query on the test side, so the page has example queries to offer
        "SHOPSEARCH_SPLIT_DEV_FRACTION": "0.0", "SHOPSEARCH_SPLIT_TEST_FRACTION": "0.95",
        **env_overrides,
    }
    catalog = write_generic_catalog(root / "shop")
    serve = shopsearch_argv("serve", "--artifact", str(artifact))
    members = [(RERANKER, serve, f"127.0.0.1:{env['SHOPSEARCH_RERANK_PORT']}")]
    for index in range(1, replicas):
        members.append((replica_name(index), [*serve, "--port", str(port := free_port()), "--metrics-port",
                                               str(free_port())], f"127.0.0.1:{port}"))
    target = members[0][2] if replicas == 1 else "ipv4:" + ",".join(address for _, _, address in members)
    if replicas > 1:
        env["SHOPSEARCH_RERANK_TARGET"] = target  # the page's client balances over all of them
    stack = PageStack(
        Stack(root / "stack"), env, serve, shopsearch_argv("web", "-f", "generic", "--path", str(catalog)),
        target, f"http://127.0.0.1:{env['SHOPSEARCH_WEB_PORT']}", artifact, members)
    try:
        for name, _, _ in members:
            stack.start(name)
        if web:
            stack.start(WEB)
    except BaseException:
        stack.stop_all()
        raise
    return stack


def drop_alias(es, alias: str) -> None:
    for index in es.indices.get(index=f"{alias}-*", allow_no_indices=True):
        es.indices.delete(index=index)
