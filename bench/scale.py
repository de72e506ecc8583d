"""Serving at scale: BERM-O throughput and latency for 1 and 2 replicas, 1 and 8 clients, in one run.

The replicas are `python -m bench.serve_model berm-o` processes (the service's own server code, the
settings' worker and ONNX thread counts) on one artifact. Two load generators:
- the project's Python client (`RerankClient`, threads of this process, one channel each), which
  balances over the replicas with gRPC's round robin (a target naming both);
- ghz (Go, through the .proto file) when it is installed: a foreign tool whose own cost is small.
  For two replicas it runs one ghz process per replica with half the clients each and adds the
  rates (ghz has no address-list target).
Every query is sent once before timing (BERM-O caches each query's vector and context), so the
rows are warm; each row is a fixed number of requests (Python) or a fixed duration (ghz).
Ratios are of rows of this one run: 8 clients against 1, 2 replicas against 1.

The floor rows serve the same requests with the do-nothing model (`bm25`: the server's own work,
validation and the response, and no model), one replica: the most one Python gRPC process gives
on this machine, so its 8/1-client ratio is the ceiling for BERM-O's in one process.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from bench.rerank import ServedModel, Workload, run_clients
from bench.stats import Stats, stats

PROTO = Path(__file__).resolve().parent.parent / "proto" / "reranker.proto"
RERANK_METHOD = "shopsearch.reranker.v1.Reranker.Rerank"


@dataclass
class ScaleRow:
    tool: str  # "python" or "ghz"
    replicas: int
    clients: int
    requests: int
    seconds: float
    requests_per_s: float
    latency_ms: Stats
    errors: int = 0
    model: str = "berm-o"  # or "floor": the do-nothing model


@dataclass
class ScaleBench:
    workload: str
    candidates: int
    artifact: str
    version: str
    rows: list[ScaleRow]
    ratios: dict[str, float] = field(default_factory=dict)
    targets: dict[str, dict] = field(default_factory=dict)
    machine: dict[str, object] = field(default_factory=dict)


def find_ghz() -> str | None:
    """ghz on PATH, else the one `go install` put in var/bin or ~/go/bin."""
    found = shutil.which("ghz")
    if found:
        return found
    for candidate in (Path(__file__).resolve().parent.parent / "var" / "bin" / "ghz", Path.home() / "go" / "bin" / "ghz"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ghz_data(workload: Workload) -> list[dict]:
    """The workload's requests as proto JSON (ghz sends the array's messages in turn)."""
    return [{"query": q, "candidates": [{"item_id": c.product_id, "bm25_score": c.bm25, "bm25_rank": c.bm25_rank}
                                        for c in candidates]}
            for q, candidates in zip(workload.queries, workload.lists)]


def run_ghz(ghz: str, addresses: list[str], clients: int, seconds: float, data_file: Path) -> ScaleRow:
    """`clients` concurrent ghz workers for `seconds`, split evenly over `addresses` (one ghz each)."""
    per = [clients // len(addresses) + (1 if i < clients % len(addresses) else 0) for i in range(len(addresses))]
    runs = []
    for address, c in zip(addresses, per):
        if c == 0:
            continue
        command = [ghz, "--insecure", "--proto", str(PROTO), "--call", RERANK_METHOD, "-D", str(data_file),
                   "-c", str(c), "-z", f"{seconds}s", "--duration-stop", "wait", "-n", "10000000", "--cpus", str(os.cpu_count() or 1),
                   "--timeout", "10s", "-O", "json", address]
        runs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    reports = []
    for process in runs:
        out, err = process.communicate(timeout=seconds + 60)
        if process.returncode != 0 and not out.strip():
            raise RuntimeError(f"ghz failed: {err.strip().splitlines()[-1] if err.strip() else process.returncode}")
        reports.append(json.loads(out))
    latencies: list[float] = []
    errors = 0
    for report in reports:
        # ghz's details list every request (latency in ns) unless it was asked to skip them
        latencies += [d["latency"] / 1e6 for d in report.get("details") or [] if d.get("status") == "OK"]
        errors += sum(n for code, n in (report.get("statusCodeDistribution") or {}).items() if code != "OK")
    rate = sum(r["rps"] for r in reports)
    total = sum(r["count"] for r in reports)
    return ScaleRow("ghz", len(addresses), clients, total, seconds, rate, stats(latencies), errors)


def run_python(target: str, workload: Workload, replicas: int, clients: int, requests: int) -> ScaleRow:
    samples, wall = run_clients(target, workload, clients, requests, offset=clients)
    return ScaleRow("python", replicas, clients, len(samples), wall, len(samples) / wall if wall else 0.0,
                    stats([s[0] for s in samples]))


def bench_scale(workload: Workload, artifact: Path, requests: int = 600, ghz_seconds: float = 5.0,
                client_counts: tuple[int, ...] = (1, 8), progress=print) -> ScaleBench:
    ghz = find_ghz()
    rows: list[ScaleRow] = []
    candidates = len(workload.lists[0])
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        data_file = Path(scratch) / "requests.json"
        data_file.write_text(json.dumps(ghz_data(workload)))
        progress("starting 2 BERM-O replicas (one at a time)")
        servers = []
        try:
            for _ in range(2):
                servers.append(ServedModel("berm-o", "--artifact", str(artifact)))
            versions = {s.version for s in servers}
            if len(versions) != 1:
                raise RuntimeError(f"the replicas serve different versions: {sorted(versions)}")
            for server in servers:  # warm: each replica sees every query once
                run_clients(server.target, workload, 1, len(workload.queries))
            for replicas in (1, 2):
                addresses = [s.target for s in servers[:replicas]]
                target = addresses[0] if replicas == 1 else "ipv4:" + ",".join(addresses)
                for clients in client_counts:
                    progress(f"python client: {replicas} replica(s), {clients} client(s), {requests} requests")
                    rows.append(run_python(target, workload, replicas, clients, requests))
                    if ghz:
                        progress(f"ghz: {replicas} replica(s), {clients} client(s), {ghz_seconds:.0f} s")
                        rows.append(run_ghz(ghz, addresses, clients, ghz_seconds, data_file))
        finally:
            for server in servers:
                server.stop()
        progress("the floor: the do-nothing model, 1 replica")
        with ServedModel("bm25") as floor:
            run_clients(floor.target, workload, 1, len(workload.queries))
            for clients in client_counts:
                row = run_ghz(ghz, [floor.target], clients, ghz_seconds, data_file) if ghz else \
                    run_python(floor.target, workload, 1, clients, requests)
                rows.append(replace(row, model="floor"))
    result = ScaleBench(workload.source, candidates, str(artifact), servers[0].version, rows,
                        machine={"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "python": platform.python_version(), "ghz": ghz or "not installed",
                                 "load_average": [round(x, 2) for x in os.getloadavg()]})
    by = {(r.tool, r.replicas, r.clients): r for r in rows if r.model == "berm-o"}
    floor = {r.clients: r for r in rows if r.model == "floor"}
    low, high = min(client_counts), max(client_counts)
    for tool in ("python", "ghz"):
        for replicas in (1, 2):
            one, many = by.get((tool, replicas, low)), by.get((tool, replicas, high))
            if one and many:
                result.ratios[f"{tool}: {high}/{low} client(s) throughput, {replicas} replica(s)"] = \
                    many.requests_per_s / one.requests_per_s
        for clients in client_counts:
            one, two = by.get((tool, 1, clients)), by.get((tool, 2, clients))
            if one and two:
                result.ratios[f"{tool}: 2/1 replica(s) throughput, {clients} client(s)"] = \
                    two.requests_per_s / one.requests_per_s
    tool = "ghz" if ghz else "python"
    if low in floor and high in floor:
        result.ratios[f"{tool}: {high}/{low} client(s) throughput, the floor (no model), 1 replica"] = \
            floor[high].requests_per_s / floor[low].requests_per_s
    one, many = by.get((tool, 1, low)), by.get((tool, 1, high))
    if one and many:
        gain = many.requests_per_s / one.requests_per_s
        result.targets = {
            f"{high} clients >= 1.7x the 1-client throughput, 1 replica ({tool})": {"value": gain, "met": gain >= 1.7},
            f"p99 <= 5 ms, 1 client, 1 replica ({tool})": {"value_ms": one.latency_ms.p99,
                                                            "met": one.latency_ms.p99 <= 5.0},
        }
    return result


def as_dict(result: ScaleBench) -> dict:
    return asdict(result)


def print_scale(result: ScaleBench, console) -> None:
    from rich.table import Table

    table = Table(title=f"BERM-O at scale: {result.candidates} candidates a request ({result.workload}, "
                        f"{result.machine['cpus']} CPUs); milliseconds", title_justify="left")
    for column in ("model", "tool", "replicas", "clients", "n", "req/s", "p50", "p95", "p99", "errors"):
        table.add_column(column, justify="left" if column in ("model", "tool") else "right", no_wrap=True)
    for r in result.rows:
        table.add_row(r.model, r.tool, str(r.replicas), str(r.clients), str(r.requests), f"{r.requests_per_s:,.0f}",
                      f"{r.latency_ms.p50:.2f}", f"{r.latency_ms.p95:.2f}", f"{r.latency_ms.p99:.2f}", str(r.errors))
    console.print(table)
    console.print(f"model {result.version} from {result.artifact}; ghz: {result.machine['ghz']}; load average at the "
                  f"end: {result.machine['load_average']} on {result.machine['cpus']} CPUs (others' work shares them)",
                  highlight=False)
    for name, value in result.ratios.items():
        console.print(f"{name}: {value:.2f}x", highlight=False)
    for name, target in result.targets.items():
        shown = f"{target['value_ms']:.2f} ms" if "value_ms" in target else f"{target['value']:.2f}x"
        console.print(f"target {name}: {shown} -> {'met' if target['met'] else 'NOT met'}", highlight=False)
