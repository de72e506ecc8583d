"""End-to-end search latency through the page's JSON endpoint at a fixed rate: BM25 alone against
BM25 plus rerank, measured in the same run.

Requests go out on a fixed schedule (`rate` a second, open loop: a slow answer does not delay the
next request) and alternate between the two modes on the same query: `rerank=0` (Elasticsearch
only) and `rerank=1` (Elasticsearch, then the reranker). Latency is measured from each request's
*scheduled* time to its answer, so queueing behind a slow answer counts. Percentiles are numpy's
linear interpolation. A query's first rerank in the run is "cold" (BERM-O embeds the query once and
caches it; only truly cold on a reranker that has not seen the query before: `--seed` picks another
sample of test queries); the cold subset gets its own row.
"""

from __future__ import annotations

import json
import platform
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from bench.load import check_loopback
from bench.stats import Stats, stats

TARGET_P95_ADDED_MS = 20.0


@dataclass
class E2EReport:
    rate: float
    seconds: float
    send_text: bool | None  # None: the page's own setting
    queries: int
    sent: int
    bm25_ms: Stats  # whole request, rerank=0
    rerank_ms: Stats  # whole request, rerank=1
    rerank_cold_ms: Stats  # rerank=1, the first time each query is reranked
    rerank_warm_ms: Stats  # rerank=1, queries the reranker has seen before
    bm25_es_ms: Stats  # the page's own measure of the Elasticsearch call, rerank=0
    rerank_es_ms: Stats
    rerank_call_ms: Stats  # the page's own measure of the reranker call
    statuses: dict[str, int]  # mode/status -> count
    failures: int  # not a 200 answer
    lag_ms: Stats  # how late requests left against the schedule (the load generator's own delay)
    added_p95_ms: float  # rerank p95 - bm25 p95
    added_p95_warm_ms: float  # the same, repeat queries only
    target_met: bool
    machine: dict = field(default_factory=dict)


def _get(url: str, timeout_s: float) -> tuple[int, dict | None]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, None
    except (OSError, ValueError):
        return 0, None


def bench_e2e(web_url: str, queries: list[str], rate: float = 50.0, seconds: float = 30.0,
              warmup_s: float = 3.0, timeout_s: float = 10.0, send_text: bool | None = None,
              progress=None) -> E2EReport:
    check_loopback(web_url)
    if not queries:
        raise ValueError("the bench needs at least one query")
    interval = 1.0 / rate
    total = int(rate * seconds)
    warm = int(rate * warmup_s)
    results: list[tuple[int, str, float, float, int, dict | None, bool]] = []  # index, mode, ms, lag, status, body, cold
    lock = threading.Lock()
    seen: set[str] = set()

    def one(index: int, scheduled: float, mode: str, query: str, cold: bool) -> None:
        lag = time.monotonic() - scheduled
        params = {"q": query, "rerank": "1" if mode == "rerank" else "0"}
        if send_text is not None:
            params["text"] = "1" if send_text else "0"
        url = f"{web_url}/api/search?{urllib.parse.urlencode(params)}"
        status, body = _get(url, timeout_s)
        ms = 1000 * (time.monotonic() - scheduled)
        with lock:
            results.append((index, mode, ms, 1000 * lag, status, body, cold))

    with ThreadPoolExecutor(max_workers=64, thread_name_prefix="e2e") as pool:
        start = time.monotonic() + 0.2
        for i in range(warm + total):
            query = queries[(i // 2) % len(queries)]
            mode = "bm25" if i % 2 == 0 else "rerank"
            cold = mode == "rerank" and query not in seen
            if mode == "rerank":
                seen.add(query)
            scheduled = start + i * interval
            delay = scheduled - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, i - warm, scheduled, mode, query, cold)
            if progress and i and i % int(rate * 5) == 0:
                progress(f"{i:,} of {warm + total:,} requests sent")
    timed = [r for r in results if r[0] >= 0]

    def pick(mode: str, key=None, cold_only: bool | None = None) -> list[float]:
        out = []
        for _, m, ms, _, status, body, cold in timed:
            if m != mode or status != 200 or (cold_only is not None and cold != cold_only):
                continue
            out.append(ms if key is None else float(body[key]))
        return out

    statuses: dict[str, int] = {}
    for _, mode, _, _, status, body, _ in timed:
        label = f"{mode}/{body['status']}" if status == 200 and body else f"{mode}/HTTP {status}"
        statuses[label] = statuses.get(label, 0) + 1
    bm25, rerank, warm = stats(pick("bm25")), stats(pick("rerank")), stats(pick("rerank", cold_only=False))
    added = rerank.p95 - bm25.p95
    return E2EReport(
        rate=rate, seconds=seconds, send_text=send_text, queries=len(queries), sent=len(timed), bm25_ms=bm25, rerank_ms=rerank,
        rerank_cold_ms=stats(pick("rerank", cold_only=True)), rerank_warm_ms=warm,
        bm25_es_ms=stats(pick("bm25", "es_ms")), rerank_es_ms=stats(pick("rerank", "es_ms")),
        rerank_call_ms=stats(pick("rerank", "rerank_ms")), statuses=statuses,
        failures=sum(1 for r in timed if r[4] != 200), lag_ms=stats([r[3] for r in timed]),
        added_p95_ms=added, added_p95_warm_ms=warm.p95 - bm25.p95, target_met=added <= TARGET_P95_ADDED_MS,
        machine={"cpus": os.cpu_count(), "python": platform.python_version()},
    )


def as_dict(report: E2EReport) -> dict:
    return asdict(report)


def print_report(report: E2EReport, console) -> None:
    from rich.table import Table

    table = Table(title=f"End-to-end search through the page at {report.rate:.0f} queries/s for {report.seconds:.0f} s "
                        f"({report.sent:,} requests, {report.queries} distinct queries, modes interleaved, titles sent: "
                        f"{'page default' if report.send_text is None else report.send_text}); ms",
                  title_justify="left")
    for column in ("requests", "n", "p50", "p95", "p99", "max"):
        table.add_column(column, justify="left" if column == "requests" else "right")
    rows = [("BM25 alone (rerank=0), whole request", report.bm25_ms),
            ("BM25 + rerank (rerank=1), whole request", report.rerank_ms),
            ("  of which first rerank of a query (cold)", report.rerank_cold_ms),
            ("  of which repeat queries (warm)", report.rerank_warm_ms),
            ("  Elasticsearch call, rerank=0", report.bm25_es_ms),
            ("  Elasticsearch call, rerank=1", report.rerank_es_ms),
            ("  reranker call (gRPC round trip)", report.rerank_call_ms),
            ("  load generator lag behind schedule", report.lag_ms)]
    for name, s in rows:
        table.add_row(name, str(s.n), f"{s.p50:.1f}", f"{s.p95:.1f}", f"{s.p99:.1f}", f"{s.max:.1f}")
    console.print(table)
    console.print("answers: " + ", ".join(f"{k} {v}" for k, v in sorted(report.statuses.items())), highlight=False)
    console.print(f"rerank adds {report.added_p95_ms:.1f} ms at p95 (target <= {TARGET_P95_ADDED_MS:.0f} ms): "
                  f"{'met' if report.target_met else 'NOT met'}; on repeat queries only: "
                  f"{report.added_p95_warm_ms:.1f} ms", highlight=False)
