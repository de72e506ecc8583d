"""Search latency at a fixed rate, three paths in one run on the same queries:

- BM25 alone: `_search` on the node;
- BM25 + rescore through the plugin: the same `_search` with `"rescore": {"shopsearch": ...}`
  (each shard calls the reranker service from inside Elasticsearch);
- BM25 + rerank from the page's path: `_search` for the BM25 top-N, then the page's own gRPC call
  (reranker.client) with the same candidates, as frontend/search.py does (without the page's HTML).

Open loop (a slow answer does not delay the next request), latency from the scheduled time; the
paths are interleaved. The node must have the plugin installed (`shopsearch es start`); for the
run the bench points its `shopsearch.rerank.target` (a transient cluster setting) at a reranker it
starts in process with a tiny real artifact over a synthetic catalog, and restores it afterwards.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.load import check_loopback
from bench.rerank import synthetic_workload, tiny_artifact
from bench.stats import Stats, stats

TARGET_P50_ADDED_MS = 5.0  # the plugin over BM25 alone, at p50
PATHS = ("bm25", "plugin", "page")


@dataclass
class PluginReport:
    rate: float
    seconds: float
    window: int
    products: int
    queries: int
    ms: dict[str, Stats]  # path -> whole request
    failures: dict[str, int]
    plugin_stats: dict  # the node's _shopsearch/stats delta over the run
    plugin_added_p50_ms: float
    plugin_vs_page_p95_ms: float  # plugin p95 - page p95 (<= 0: the plugin is no slower)
    target_met: bool
    machine: dict = field(default_factory=dict)


def _call(method: str, url: str, body: dict | None = None, timeout_s: float = 10.0) -> tuple[int, dict | None]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, None
    except (OSError, ValueError):
        return 0, None


def bench_plugin(es_url: str, rerank_port: int = 0, rate: float = 50.0, seconds: float = 30.0, window: int = 100,
                 products: int = 400, queries: int = 20, warmup_s: float = 3.0, progress=None) -> PluginReport:
    from reranker.client import Candidate, RerankClient
    from common.settings import RerankSettings
    from reranker.server.app import RerankServer
    from reranker.server.models import load_berm_o

    check_loopback(es_url)
    status, before = _call("GET", f"{es_url}/_shopsearch/stats")
    if status != 200:
        raise ValueError(f"{es_url} has no shopsearch plugin (GET _shopsearch/stats: {status}); start it with `shopsearch es start`")
    workload = synthetic_workload(products, queries, min(window, products))
    cache = Path(tempfile.gettempdir()) / f"shopsearch-bench-plugin-{products}-{queries}"
    if progress:
        progress("building (or reusing) the tiny artifact")
    artifact = tiny_artifact(workload, cache)
    index = f"bench-plugin-{os.getpid()}"
    _call("PUT", f"{es_url}/{index}", {"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                                        "mappings": {"properties": {"title": {"type": "text"}}}})
    lines = "".join(json.dumps({"index": {"_id": pid}}) + "\n" + json.dumps({"title": t}) + "\n"
                    for pid, t in workload.titles.items())
    urllib.request.urlopen(urllib.request.Request(f"{es_url}/{index}/_bulk?refresh=true", data=lines.encode(),
                                                  method="POST", headers={"Content-Type": "application/x-ndjson"})).read()
    server = RerankServer(RerankSettings(port=rerank_port, workers=8, metrics_port=None, reload_poll_s=0), loader=load_berm_o, artifact=artifact)
    server.start()
    results: list[tuple[int, str, float, int]] = []
    lock = threading.Lock()
    try:
        server.wait_ready(120)
        _call("PUT", f"{es_url}/_cluster/settings", {"transient": {"shopsearch.rerank.target": server.target}})
        client = RerankClient(server.target)
        status, start_stats = _call("GET", f"{es_url}/_shopsearch/stats")

        def one(i: int, scheduled: float, path: str, query: str) -> None:
            body = {"query": {"match": {"title": query}}, "size": 10}
            if path == "plugin":
                body["rescore"] = {"window_size": window, "shopsearch": {"query_text": query}}
            if path == "page":
                body["size"] = window
            code, answer = _call("POST", f"{es_url}/{index}/_search", body)
            if path == "page" and code == 200:
                hits = answer["hits"]["hits"]
                if hits:
                    try:
                        client.rerank(query, [Candidate(h["_id"], h["_score"], r + 1) for r, h in enumerate(hits)],
                                      timeout=0.3)
                    except Exception:  # noqa: BLE001 - the page falls back; the bench counts it
                        code = 599
            ms = 1000 * (time.monotonic() - scheduled)
            with lock:
                results.append((i, path, ms, code))

        warm, total = int(rate * warmup_s), int(rate * seconds)
        with ThreadPoolExecutor(max_workers=64) as pool:
            start = time.monotonic() + 0.2
            for i in range(warm + total):
                path = PATHS[i % 3]
                query = workload.queries[(i // 3) % len(workload.queries)]
                scheduled = start + i / rate
                delay = scheduled - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(one, i - warm, scheduled, path, query)
                if progress and i and i % int(rate * 10) == 0:
                    progress(f"{i:,} of {warm + total:,} requests sent")
        status, end_stats = _call("GET", f"{es_url}/_shopsearch/stats")
        client.close()
    finally:
        _call("PUT", f"{es_url}/_cluster/settings", {"transient": {"shopsearch.rerank.target": None}})
        server.stop(grace=0)
        _call("DELETE", f"{es_url}/{index}")
    timed = [r for r in results if r[0] >= 0]
    ms = {p: stats([r[2] for r in timed if r[1] == p and r[3] == 200]) for p in PATHS}
    failures = {p: sum(1 for r in timed if r[1] == p and r[3] != 200) for p in PATHS}
    delta = {k: end_stats[k] - start_stats[k] for k in ("calls", "reranked", "fallback_total")}
    added = ms["plugin"].p50 - ms["bm25"].p50
    vs_page = ms["plugin"].p95 - ms["page"].p95
    return PluginReport(rate, seconds, window, products, len(workload.queries), ms, failures, delta, added, vs_page,
                        added <= TARGET_P50_ADDED_MS and vs_page <= 0,
                        machine={"cpus": os.cpu_count(), "python": platform.python_version()})


def as_dict(report: PluginReport) -> dict:
    return asdict(report)


def print_report(report: PluginReport, console) -> None:
    from rich.table import Table

    table = Table(title=f"Search at {report.rate:.0f} queries/s for {report.seconds:.0f} s, three paths interleaved "
                        f"({report.products} products, {report.queries} queries, window {report.window}); ms",
                  title_justify="left")
    for column in ("path", "n", "p50", "p95", "p99", "max", "failed"):
        table.add_column(column, justify="left" if column == "path" else "right")
    names = {"bm25": "BM25 alone (_search)", "plugin": "BM25 + rescore through the plugin",
             "page": "BM25 + rerank from the page's path (gRPC from Python)"}
    for path in PATHS:
        s = report.ms[path]
        table.add_row(names[path], str(s.n), f"{s.p50:.1f}", f"{s.p95:.1f}", f"{s.p99:.1f}", f"{s.max:.1f}",
                      str(report.failures[path]))
    console.print(table)
    console.print(f"plugin counters over the run: {report.plugin_stats}", highlight=False)
    console.print(f"plugin adds {report.plugin_added_p50_ms:.1f} ms at p50 over BM25 (target <= {TARGET_P50_ADDED_MS:.0f}); "
                  f"plugin p95 - page p95 = {report.plugin_vs_page_p95_ms:.1f} ms (target <= 0): "
                  f"{'met' if report.target_met else 'NOT met'}", highlight=False)
