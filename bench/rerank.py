"""gRPC rerank latency: BERM-O against the teacher cross-encoder and a do-nothing floor, in one run.

Three servers run the same code (reranker.server), each in its own process (bench/serve_model.py):
- the floor: scores = BM25 scores, so only gRPC, validation and ordering cost anything;
- BERM-O: an artifact folder (given, or a tiny one built here: untrained weights, real vectors,
  FAISS stores and ONNX graphs, which cost what trained ones cost);
- the teacher cross-encoder (all-MiniLM-L6-v2, an untrained head costs what a trained one does).
The same requests (100 candidates each: ids, BM25 scores and ranks, no text) go to each at 1 and at
8 concurrent clients (threads here, one channel each). Per request: the client's round trip, and
the time the server reports inside the model call; the difference is gRPC, protobuf and server
overhead. Percentiles are numpy's linear interpolation over all requests of a row.

Each query is sent once before timing: BERM-O caches a query's vector and context, so the first
sight of a query costs a bi-encoder pass; that cold cost gets its own row.
"""

from __future__ import annotations

import json
import os
import platform
import random
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


from bench.stats import Stats, stats
from reranker.client import Candidate, RerankClient
from reranker.server.app import ServerStartError

SERVER_START_TIMEOUT_S = 600.0


# -- workload -------------------------------------------------------------------------------------

@dataclass
class Workload:
    source: str
    titles: dict[str, str]
    queries: list[str]
    lists: list[list[Candidate]]  # one BM25 list per query, `candidates` long


def _bm25_list(rng: random.Random, first: list[str], pool: list[str], n: int) -> list[Candidate]:
    """`first` (a query's judged products) then random others; BM25-like scores falling with rank."""
    ids = list(dict.fromkeys(first))[:n]
    chosen = set(ids)
    while len(ids) < n:
        pid = rng.choice(pool)
        if pid not in chosen:
            ids.append(pid)
            chosen.add(pid)
    scores = sorted((18.0 * rng.random() ** 2 + 2.0 for _ in ids), reverse=True)
    return [Candidate(pid, round(score, 4), rank) for rank, (pid, score) in enumerate(zip(ids, scores), start=1)]


def home_depot_workload(path: Path, products: int, queries: int, candidates: int, seed: int = 0) -> Workload:
    """The first `queries` Home Depot queries (by id) with their judged products, plus other products
    up to `products` in all; each query's list is its judged products, then random fill."""
    from indexer.readers import load_catalog

    catalog = load_catalog("home-depot", path)
    judged: dict[str, list[str]] = {}
    for j in catalog.judgments:
        judged.setdefault(j.query_id, []).append(j.product_id)
    chosen = sorted(judged)[:: max(1, len(judged) // queries)][:queries]
    ids = list(dict.fromkeys(pid for q in chosen for pid in judged[q]))
    for pid in sorted(catalog.products):
        if len(ids) >= products:
            break
        if pid not in ids:
            ids.append(pid)
    if len(ids) < candidates:
        raise ValueError(f"need at least {candidates} products, the catalog has {len(ids)}")
    titles = {pid: catalog.products[pid].title for pid in ids}
    rng = random.Random(seed)
    texts = [catalog.queries[q].text for q in chosen]
    lists = [_bm25_list(rng, [p for p in judged[q] if p in titles], ids, candidates) for q in chosen]
    return Workload(f"home-depot ({len(titles)} products, {len(texts)} queries)", titles, texts, lists)


def synthetic_workload(products: int, queries: int, candidates: int, seed: int = 0) -> Workload:
    """A made-up hardware catalog, for machines without the Home Depot data."""
    rng = random.Random(seed)
    brands = ["DeWalt", "Ryobi", "Makita", "Milwaukee", "Husky", "Behr", "Bosch", "Stanley", "Everbilt", "Glacier Bay"]
    things = ["cordless drill", "impact driver", "claw hammer", "paint brush", "tool box", "circular saw", "drill bit set",
              "wood screws", "shop vacuum", "LED bulb", "garden hose", "ceiling fan", "door hinge", "faucet", "caulk"]
    extras = ["20V MAX", "Kit", "Stainless Steel", "White", "Black", "1/2 in.", "Heavy Duty", "(2-Pack)", "Brushless",
              "Interior", "Outdoor", "16 oz.", "3/4 in.", "with Case"]
    titles = {f"s{i:05d}": f"{rng.choice(brands)} {rng.choice(extras)} {rng.choice(things).title()} {rng.choice(extras)}"
              for i in range(products)}
    ids = list(titles)
    texts = list(dict.fromkeys(f"{rng.choice(['', 'cordless ', 'heavy duty ', 'white '])}{rng.choice(things)}".strip()
                               for _ in range(queries * 3)))[:queries]
    lists = [_bm25_list(rng, [p for p in ids if q.split()[-1].lower() in titles[p].lower()][:20], ids, candidates)
             for q in texts]
    return Workload(f"synthetic ({products} products, {len(texts)} queries)", titles, texts, lists)


def tiny_artifact(workload: Workload, folder: Path) -> Path:
    """A tiny BERM-O artifact over the workload's products and queries; reused when already built."""
    from common.artifacts import ManifestError, ServingManifest
    from reranker.serving.online import REQUIRED
    from tests.tiny_artifact import build_tiny_artifact

    if all((folder / name).is_file() for name in REQUIRED):
        try:
            if ServingManifest.read(folder).items == len(workload.titles):
                return folder
        except ManifestError:  # one of an older format is rebuilt
            pass
    return build_tiny_artifact(folder, workload.titles, workload.queries, seed=0)


# -- servers ------------------------------------------------------------------------------------------

class ServedModel:
    """`python -m bench.serve_model ...` in a child process, stopped with SIGTERM."""

    def __init__(self, model: str, *args: str, request_log: Path | None = None) -> None:
        command = [sys.executable, "-m", "bench.serve_model", model, *args]
        if request_log:
            command += ["--request-log", str(request_log)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        cwd=Path(__file__).resolve().parent.parent)
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(SERVER_START_TIMEOUT_S):
            self.stop()
            raise ServerStartError(f"the {model} server did not start within {SERVER_START_TIMEOUT_S:.0f} s")
        line = self.process.stdout.readline()
        if not line:
            error = self.process.stderr.read().strip().splitlines()
            raise ServerStartError(f"the {model} server failed: {error[-1] if error else 'no output'}")
        info = json.loads(line)
        self.target, self.name, self.version = f"127.0.0.1:{info['port']}", info["model"], info["version"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> "ServedModel":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# -- measuring ------------------------------------------------------------------------------------------

@dataclass
class Row:
    server: str  # "floor", "BERM-O", "teacher"
    model: str
    version: str
    clients: int
    total_ms: Stats  # client round trip
    model_ms: Stats  # the model's work, as the server reports it
    queue_ms: Stats  # waiting for the model (it runs one batch at a time), as the server reports it
    overhead_ms: Stats  # round trip minus both: gRPC, protobuf, validation, ordering, client
    requests_per_s: float
    cold: bool = False  # the first request of each query


def run_clients(target: str, workload: Workload, clients: int, requests: int, offset: int = 0
                ) -> tuple[list[tuple[float, float, float]], float]:
    """`requests` in all, split over `clients` threads; returns (round trip, model, queue) ms and wall s."""
    per_client = max(1, requests // clients)
    samples: list[list[tuple[float, float, float]]] = [[] for _ in range(clients)]
    errors: list[Exception] = []
    start = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        with RerankClient(target, timeout_s=120) as c:
            c.health()  # connect before the clock starts
            start.wait()
            for i in range(per_client):
                q = (offset + index * 7919 + i) % len(workload.queries)
                try:
                    result = c.rerank(workload.queries[q], workload.lists[q])
                except Exception as err:  # reported after the run: a benchmark with errors is void
                    errors.append(err)
                    return
                t = result.timings_ms
                samples[index].append((result.elapsed_ms, t["model"], t.get("queue", 0.0)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed, first: {errors[0]}")
    return [s for per in samples for s in per], wall


def _row(server: ServedModel, label: str, clients: int, samples: list[tuple[float, float, float]], wall: float,
         cold: bool = False) -> Row:
    total, model, queue = (stats([s[i] for s in samples]) for i in range(3))
    return Row(label, server.name, server.version, clients, total, model, queue,
               stats([t - m - q for t, m, q in samples]), len(samples) / wall if wall else 0.0, cold)


@dataclass
class RerankBench:
    workload: str
    candidates: int
    rows: list[Row]
    ratios: dict[str, float] = field(default_factory=dict)
    targets: dict[str, dict] = field(default_factory=dict)
    machine: dict[str, object] = field(default_factory=dict)
    artifact: str = ""


def bench_rerank(workload: Workload, artifact: Path, requests: int = 1000, teacher_requests: int = 40,
                 client_counts: tuple[int, ...] = (1, 8), progress=print) -> RerankBench:
    rows: list[Row] = []
    candidates = len(workload.lists[0])
    with tempfile.TemporaryDirectory(prefix="bench-rerank-") as scratch:
        titles = Path(scratch) / "titles.json"
        titles.write_text(json.dumps(workload.titles))
        log = Path(scratch) / "requests.jsonl"  # the servers write their log line as in production
        plans = [("floor", ("bm25",), requests), ("BERM-O", ("berm-o", "--artifact", str(artifact)), requests),
                 ("teacher", ("teacher", "--titles", str(titles)), teacher_requests)]
        for label, args, n in plans:
            progress(f"starting the {label} server")
            with ServedModel(*args, request_log=log) as server:
                # first sight of every query (cold: BERM-O embeds it), then a short warm-up
                if label == "teacher":  # no per-query state to warm
                    run_clients(server.target, workload, 1, 5)
                else:
                    cold, cold_wall = run_clients(server.target, workload, 1, len(workload.queries))
                    if label == "BERM-O":
                        rows.append(_row(server, label, 1, cold, cold_wall, cold=True))
                    run_clients(server.target, workload, 1, 50, offset=1)
                for clients in client_counts:
                    progress(f"{label}: {n} requests of {candidates} candidates from {clients} client(s)")
                    pairs, wall = run_clients(server.target, workload, clients, n, offset=clients)
                    rows.append(_row(server, label, clients, pairs, wall))
    result = RerankBench(workload.source, candidates, rows, artifact=str(artifact),
                         machine={"cpus": os.cpu_count(), "platform": platform.platform(),
                                  "python": platform.python_version()})
    by = {(r.server, r.clients): r for r in rows if not r.cold}
    for clients in client_counts:
        berm, teacher, floor = by[("BERM-O", clients)], by[("teacher", clients)], by[("floor", clients)]
        result.ratios[f"teacher/BERM-O p50, {clients} client(s)"] = teacher.total_ms.p50 / berm.total_ms.p50
        result.ratios[f"teacher/BERM-O p99, {clients} client(s)"] = teacher.total_ms.p99 / berm.total_ms.p99
        result.ratios[f"teacher/BERM-O model p50, {clients} client(s)"] = teacher.model_ms.p50 / berm.model_ms.p50
        result.ratios[f"BERM-O/floor p50, {clients} client(s)"] = berm.total_ms.p50 / floor.total_ms.p50
    one = by.get(("BERM-O", 1))
    if one is not None:
        speedup = by[("teacher", 1)].total_ms.p50 / one.total_ms.p50
        result.targets = {
            "p99 <= 5 ms, 1 client": {"value_ms": one.total_ms.p99, "met": one.total_ms.p99 <= 5.0},
            ">= 200x faster than the teacher (p50, 1 client)": {"value": speedup, "met": speedup >= 200},
        }
    return result


def as_dict(result: RerankBench) -> dict:
    return asdict(result)
