"""Search latency, three paths side by side in one run, on the same queries, at 1 and 8 clients:

- BM25 alone: `_search` on the node;
- BM25 + rescore through the plugin: the same `_search` with `"rescore": {"shopsearch": ...}`
  (each shard calls the reranker service from inside Elasticsearch);
- BM25 + rerank from the page's path: `_search` for the BM25 top-N, then the page's own gRPC call
  (reranker.client) with the same candidates, as frontend/search.py does (without the page's HTML).

Each level runs `clients` threads; each client sends up to `rate` requests a second, cycling through
the three paths, one request in flight; a late answer makes it skip the slots it missed (no backlog),
and each latency runs from its request's send to its answer. The load average is read before and after
each level: on a busy machine every figure is higher, so compare paths within one run only.

The reranker is `python -m bench.serve_model berm-o` in its own process (as deployed: the bench's
client threads never share its GIL) with a tiny real artifact over a synthetic catalog; for the run
the bench points the node's `shopsearch.rerank.target` (a transient cluster setting) at it and
restores it afterwards. The node must have the plugin installed (`shopsearch es start`). Where the
plugin reports its own spans (`_shopsearch/stats` timings), each level also prints where the
plugin's time went: window read, the gRPC call split into the service's own time and transport,
score mapping.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.load import check_loopback
from bench.rerank import ServedModel, synthetic_workload, tiny_artifact
from bench.stats import Stats, stats

TARGET_P50_ADDED_MS = 3.0  # the plugin over BM25 alone, at p50, the model's own time apart; quiet machine, tiny artifact
PATHS = ("bm25", "plugin", "page")
NAMES = {"bm25": "BM25 alone (_search)", "plugin": "BM25 + rescore through the plugin",
         "page": "BM25 + rerank from the page's path (gRPC from Python)"}
SPANS = ("rescore", "read_window", "call", "service", "model", "transport", "map", "fetch_hit")


@dataclass
class Level:
    clients: int
    rate_per_client: float
    seconds: float
    load_before: tuple[float, float, float]  # 1, 5, 15 minute load averages
    load_after: tuple[float, float, float]
    ms: dict[str, Stats]  # path -> whole request, send to answer
    failures: dict[str, int]
    plugin_stats: dict  # the node's _shopsearch/stats counter deltas over the level
    plugin_timings: dict  # span -> {count, mean_ms, p50_ms, p95_ms}; empty when the plugin has none
    plugin_added_p50_ms: float
    plugin_added_without_model_p50_ms: float  # minus the model's own p50 (the service's timings); nan without them
    plugin_vs_page_p50_ms: float  # plugin - page (<= 0: the plugin is no slower)
    plugin_vs_page_p95_ms: float
    target_met: bool


@dataclass
class PluginReport:
    window: int
    shards: int
    outcome: bool
    products: int
    queries: int
    levels: list[Level]
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


def _index(es_url: str, workload, shards: int) -> str:
    index = f"bench-plugin-{os.getpid()}"
    _call("PUT", f"{es_url}/{index}", {"settings": {"number_of_shards": shards, "number_of_replicas": 0},
                                        "mappings": {"properties": {"title": {"type": "text"},
                                                                    "product_id": {"type": "keyword"}}}})
    # product_id as the shop's index has it: the plugin reads the window's ids from its doc values
    lines = "".join(json.dumps({"index": {"_id": pid}}) + "\n" + json.dumps({"title": t, "product_id": pid}) + "\n"
                    for pid, t in workload.titles.items())
    urllib.request.urlopen(urllib.request.Request(f"{es_url}/{index}/_bulk?refresh=true", data=lines.encode(),
                                                  method="POST", headers={"Content-Type": "application/x-ndjson"})).read()
    return index


def run_level(es_url: str, index: str, target: str, workload, clients: int, rate: float, seconds: float,
              window: int, outcome: bool, warmup_s: float = 3.0) -> Level:
    """`clients` threads for warm-up + `seconds`, each at `rate` requests a second over the three paths."""
    from reranker.client import Candidate, RerankClient

    results: list[tuple[str, float, int]] = []
    lock = threading.Lock()
    page_clients = [RerankClient(target) for _ in range(clients)]  # one channel each, as page workers have
    begin = time.monotonic() + 0.3
    timed_from = begin + warmup_s
    end = timed_from + seconds

    def search(client_index: int, path: str, query: str) -> int:
        body: dict = {"query": {"match": {"title": query}}, "size": 10}
        if path == "plugin":
            body["rescore"] = {"window_size": window, "shopsearch": {"query_text": query}}
            if outcome:
                body["ext"] = {"shopsearch_outcome": {}}
        if path == "page":
            body["size"] = window
        code, answer = _call("POST", f"{es_url}/{index}/_search", body)
        if path == "page" and code == 200:
            hits = answer["hits"]["hits"]
            if hits:
                try:
                    page_clients[client_index].rerank(
                        query, [Candidate(h["_id"], h["_score"], r + 1) for r, h in enumerate(hits)], timeout=0.3)
                except Exception:  # noqa: BLE001 - the page falls back; the bench counts it
                    code = 599
        return code

    def client(client_index: int) -> None:
        # staggered schedules, so the clients' requests do not all start together
        slot = begin + client_index / (clients * rate)
        i = 0
        while slot < end:
            delay = slot - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            path = PATHS[(i + client_index) % len(PATHS)]
            query = workload.queries[(i // len(PATHS) + 7 * client_index) % len(workload.queries)]
            sent = time.monotonic()
            code = search(client_index, path, query)
            if sent >= timed_from:
                with lock:
                    results.append((path, 1000 * (time.monotonic() - sent), code))
            # a client that fell behind skips the slots it missed rather than sending them back to back:
            # on a busy machine the paths are compared on their own time, not on a backlog
            slot = max(slot + 1 / rate, time.monotonic())
            i += 1

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    load_before = os.getloadavg()
    for t in threads:
        t.start()
    # the spans of the timed part only (the warm-up's are forgotten)
    time.sleep(max(0.0, timed_from - time.monotonic()))
    _, start_stats = _call("POST", f"{es_url}/_shopsearch/stats/timings/_reset")
    if start_stats is None:  # a plugin without timings: counters only
        _, start_stats = _call("GET", f"{es_url}/_shopsearch/stats")
    for t in threads:
        t.join()
    load_after = os.getloadavg()
    _, end_stats = _call("GET", f"{es_url}/_shopsearch/stats")
    for c in page_clients:
        c.close()
    ms = {p: stats([r[1] for r in results if r[0] == p and r[2] == 200]) for p in PATHS}
    failures = {p: sum(1 for r in results if r[0] == p and r[2] != 200) for p in PATHS}
    delta = {k: end_stats[k] - start_stats[k] for k in ("calls", "reranked", "fallback_total")}
    added = ms["plugin"].p50 - ms["bm25"].p50
    timings = end_stats.get("timings", {})
    model = timings.get("model", {})
    # the target leaves the model's own time apart: what the plugin costs, not what the model does
    without_model = added - model["p50_ms"] if model.get("count") else math.nan
    vs_page_p50, vs_page_p95 = ms["plugin"].p50 - ms["page"].p50, ms["plugin"].p95 - ms["page"].p95
    return Level(clients, rate, seconds, tuple(round(x, 2) for x in load_before), tuple(round(x, 2) for x in load_after),
                 ms, failures, delta, timings, added, without_model, vs_page_p50, vs_page_p95,
                 without_model <= TARGET_P50_ADDED_MS and vs_page_p50 <= 0 and vs_page_p95 <= 0)


def bench_plugin(es_url: str, rerank_port: int = 0, rate: float = 20.0, seconds: float = 30.0, window: int = 100,
                 clients: tuple[int, ...] = (1, 8), shards: int = 1, outcome: bool = False, products: int = 400,
                 queries: int = 20, warmup_s: float = 3.0, progress=None) -> PluginReport:
    check_loopback(es_url)
    status, _ = _call("GET", f"{es_url}/_shopsearch/stats")
    if status != 200:
        raise ValueError(f"{es_url} has no shopsearch plugin (GET _shopsearch/stats: {status}); start it with `shopsearch es start`")
    workload = synthetic_workload(products, queries, min(window, products))
    cache = Path(tempfile.gettempdir()) / f"shopsearch-bench-plugin-{products}-{queries}"
    if progress:
        progress("building (or reusing) the tiny artifact")
    artifact = tiny_artifact(workload, cache)
    index = _index(es_url, workload, shards)
    levels = []
    try:
        with ServedModel("berm-o", "--artifact", str(artifact), "--port", str(rerank_port)) as server:
            _call("PUT", f"{es_url}/_cluster/settings", {"transient": {"shopsearch.rerank.target": server.target}})
            for n in clients:
                if progress:
                    progress(f"{n} client(s), {rate:g} requests/s each, {warmup_s:g} s warm-up + {seconds:g} s")
                levels.append(run_level(es_url, index, server.target, workload, n, rate, seconds, window, outcome,
                                        warmup_s))
    finally:
        _call("PUT", f"{es_url}/_cluster/settings", {"transient": {"shopsearch.rerank.target": None}})
        _call("DELETE", f"{es_url}/{index}")
    return PluginReport(window, shards, outcome, products, len(workload.queries), levels,
                        machine={"cpus": os.cpu_count(), "python": platform.python_version()})


def as_dict(report: PluginReport) -> dict:
    return asdict(report)


def print_report(report: PluginReport, console) -> None:
    from rich.table import Table

    console.print(f"Search latency, three paths interleaved on the same queries ({report.products} products, "
                  f"{report.queries} queries, {report.shards} shard(s), window {report.window}"
                  f"{', with the shopsearch_outcome ext' if report.outcome else ''}; tiny artifact); ms from each "
                  f"request's send to its answer; {report.machine.get('cpus')} CPUs", highlight=False)
    for level in report.levels:
        title = (f"{level.clients} client(s), each up to {level.rate_per_client:g} requests/s, {level.seconds:g} s; "
                 f"load average {level.load_before[0]:.2f} before, {level.load_after[0]:.2f} after")
        table = Table(title=title, title_justify="left")
        for column in ("path", "n", "p50", "p95", "p99", "max", "failed"):
            table.add_column(column, justify="left" if column == "path" else "right")
        for path in PATHS:
            s = level.ms[path]
            table.add_row(NAMES[path], str(s.n), f"{s.p50:.1f}", f"{s.p95:.1f}", f"{s.p99:.1f}", f"{s.max:.1f}",
                          str(level.failures[path]))
        console.print(table)
        if level.plugin_timings:
            spans = "; ".join(f"{name} {t.get('min_ms', math.nan):.2f}/{t['p50_ms']:.2f}/{t['p95_ms']:.2f}"
                              for name, t in level.plugin_timings.items() if t["count"])
            console.print(f"  inside the plugin, per shard's rescore (fetch_hit: per hit), min/p50/p95 ms: {spans}",
                          highlight=False)
        console.print(f"  plugin counters: {level.plugin_stats}", highlight=False)
        console.print(f"  plugin adds {level.plugin_added_p50_ms:.1f} ms at p50 over BM25 alone, "
                      f"{level.plugin_added_without_model_p50_ms:.1f} without the model's own time (target <= "
                      f"{TARGET_P50_ADDED_MS:g}, quiet machine); plugin - page: p50 {level.plugin_vs_page_p50_ms:+.1f}, "
                      f"p95 {level.plugin_vs_page_p95_ms:+.1f} ms (target <= 0): "
                      f"{'met' if level.target_met else 'NOT met'}", highlight=False)
