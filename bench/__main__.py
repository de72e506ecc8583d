"""`python -m bench`: benchmarks that print figures and ratios measured in one run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from searchstack.app import Format
from searchstack.edge import one_line_errors
from searchstack.settings import load_settings

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()


def write_json(path: Path | None, figures: object) -> None:
    """Every bench's `--json`: the figures as JSON at `path` (folders made), and a line saying so."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2))
        console.print(f"wrote {path}")


@app.callback()
def main() -> None:
    """Benchmarks; each prints a table and can write JSON."""


@app.command()
@one_line_errors
def indexing(
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.home_depot,
    path: Annotated[Optional[Path], typer.Option(help="Catalog path (defaults as in `shopsearch index`).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
    es_url: Annotated[Optional[str], typer.Option("--es-url")] = None,
) -> None:
    """Indexing throughput (products/s) for the full catalog, and its ratio to a plain bulk load."""
    from bench.indexing import as_dict, bench_indexing
    from searchstack.app import connect_es
    from searchstack.edge import read_catalog

    settings = load_settings(es_url=es_url)
    began = time.perf_counter()
    catalog = read_catalog(settings, fmt, path)
    read_s = time.perf_counter() - began
    result = bench_indexing(connect_es(settings), catalog, read_s, settings.bulk_chunk_size)
    table = Table(title=f"Indexing {result.products:,} products ({fmt.value})", title_justify="left")
    for column in ("stage", "seconds", "products/s"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    table.add_row("read catalog", f"{result.read_s:.2f}", f"{result.read_products_per_s:,.0f}")
    table.add_row("baseline: plain bulk, standard analyzer", f"{result.baseline_s:.2f}", f"{result.baseline_products_per_s:,.0f}")
    table.add_row("shopsearch index --rebuild (hunspell, alias, count check)", f"{result.project_s:.2f}", f"{result.project_products_per_s:,.0f}")
    console.print(table)
    console.print(f"project / baseline throughput ratio: {result.project_vs_baseline:.2f}")
    write_json(json_path, as_dict(result))


def _workload_and_artifact(artifact: Optional[Path], synthetic: bool, products: int, queries: int, candidates: int):
    """The rerank benches' workload (Home Depot when its data is there) and the artifact to serve
    (a tiny one built over the workload, once, unless one is given)."""
    from bench.rerank import home_depot_workload, synthetic_workload, tiny_artifact

    settings = load_settings()
    if not synthetic and settings.home_depot_path.exists():
        with console.status(f"reading {settings.home_depot_path}"):
            workload = home_depot_workload(settings.home_depot_path, products, queries, candidates)
    else:
        workload = synthetic_workload(products, queries, candidates)
    if artifact is None:
        folder = settings.artifacts_dir / "bench" / f"tiny-berm-o-{'synthetic' if workload.source.startswith('synthetic') else 'home-depot'}-{products}"
        with console.status(f"building a tiny BERM-O artifact in {folder} (once)"):
            artifact = tiny_artifact(workload, folder)
    return workload, artifact


@app.command()
@one_line_errors
def rerank(
    artifact: Annotated[Optional[Path], typer.Option(help="BERM-O artifact; default: a tiny one built over the workload.")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
    requests: Annotated[int, typer.Option(min=10, help="Timed requests per row (floor and BERM-O).")] = 1000,
    teacher_requests: Annotated[int, typer.Option(min=2, help="Timed requests per teacher row.")] = 40,
    candidates: Annotated[int, typer.Option(min=1, help="Candidates per request.")] = 100,
    products: Annotated[int, typer.Option(min=100, help="Catalog size of the built-in workload.")] = 2000,
    queries: Annotated[int, typer.Option(min=1, help="Distinct queries of the workload.")] = 100,
    synthetic: Annotated[bool, typer.Option(help="Use a made-up catalog even when the Home Depot data is there.")] = False,
) -> None:
    """gRPC rerank latency (p50/p95/p99) of BERM-O, the teacher and a do-nothing floor, 1 and 8 clients."""
    from bench.rerank import as_dict, bench_rerank

    workload, artifact = _workload_and_artifact(artifact, synthetic, products, queries, candidates)
    result = bench_rerank(workload, artifact, requests, teacher_requests, progress=lambda m: console.log(m))
    table = Table(title=f"gRPC Rerank, {result.candidates} candidates a request ({workload.source}, "
                        f"{result.machine['cpus']} CPUs); milliseconds", title_justify="left")
    for column in ("server", "clients", "n", "p50", "p95", "p99", "model p50", "queue p50", "rest p50", "req/s"):
        table.add_column(column, justify="left" if column == "server" else "right", no_wrap=True)
    for row in result.rows:
        table.add_row(row.server + (" cold" if row.cold else ""), str(row.clients), str(row.total_ms.n),
                      f"{row.total_ms.p50:.2f}", f"{row.total_ms.p95:.2f}", f"{row.total_ms.p99:.2f}",
                      f"{row.model_ms.p50:.2f}", f"{row.queue_ms.p50:.2f}", f"{row.overhead_ms.p50:.2f}",
                      f"{row.requests_per_s:,.0f}")
    console.print(table)
    versions = {row.server: f"{row.model} {row.version}" for row in result.rows}
    console.print("servers: " + "; ".join(f"{k} = {v}" for k, v in versions.items()), highlight=False)
    console.print("model: the model's own work, as the server reports it; queue: waiting for the model (one batch "
                  "at a time); rest: round trip minus both (client, wire, protobuf, validation, ordering). "
                  "cold: the first request of each query (BERM-O embeds it). Percentiles over all requests of a row.",
                  highlight=False)
    for name, value in result.ratios.items():
        console.print(f"{name}: {value:,.1f}x")
    for name, target in result.targets.items():
        shown = f"{target['value_ms']:.2f} ms" if "value_ms" in target else f"{target['value']:,.0f}x"
        console.print(f"target {name}: {shown} -> {'met' if target['met'] else 'NOT met'}")
    write_json(json_path, as_dict(result))


@app.command()
@one_line_errors
def scale(
    artifact: Annotated[Optional[Path], typer.Option(help="BERM-O artifact; default: a tiny one built over the workload.")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
    requests: Annotated[int, typer.Option(min=10, help="Timed requests per Python-client row.")] = 600,
    ghz_seconds: Annotated[float, typer.Option(min=1, help="Seconds per ghz row (ghz runs when installed).")] = 5.0,
    candidates: Annotated[int, typer.Option(min=1, help="Candidates per request.")] = 100,
    products: Annotated[int, typer.Option(min=100, help="Catalog size of the built-in workload.")] = 2000,
    queries: Annotated[int, typer.Option(min=1, help="Distinct queries of the workload.")] = 100,
    synthetic: Annotated[bool, typer.Option(help="Use a made-up catalog even when the Home Depot data is there.")] = False,
) -> None:
    """BERM-O throughput and latency for 1 and 2 replicas x 1 and 8 clients in one run, as ratios
    (Python client with gRPC round robin; ghz too when installed)."""
    from bench.scale import as_dict, bench_scale, print_scale

    workload, artifact = _workload_and_artifact(artifact, synthetic, products, queries, candidates)
    result = bench_scale(workload, artifact, requests, ghz_seconds, progress=lambda m: console.log(m))
    print_scale(result, console)
    write_json(json_path, as_dict(result))


@app.command()
@one_line_errors
def teacher(
    teacher_dir: Annotated[Optional[Path], typer.Option("--teacher", help="A trained teacher folder (artifacts/pipeline/RUN/teacher); default: the base model with an untrained, seeded head.")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
    queries: Annotated[int, typer.Option(min=1, help="Queries of the workload.")] = 20,
    candidates: Annotated[int, typer.Option(min=2, help="Products per query (pairs = queries x candidates).")] = 100,
    synthetic: Annotated[bool, typer.Option(help="Use a made-up catalog even when the Home Depot data is there.")] = False,
) -> None:
    """Teacher pairs a second through torch, ONNX fp32 and ONNX int8 on the same pairs in one run, and
    int8's agreement with fp32 (Spearman, largest logit shift)."""
    from bench.rerank import home_depot_workload, synthetic_workload
    from bench.teacher import as_dict, bench_teacher, print_teacher

    settings = load_settings()
    products = max(2000, candidates)
    if not synthetic and settings.home_depot_path.exists():
        with console.status(f"reading {settings.home_depot_path}"):
            workload = home_depot_workload(settings.home_depot_path, products, queries, candidates)
    else:
        workload = synthetic_workload(products, queries, candidates)
    result = bench_teacher(teacher_dir, workload, progress=lambda m: console.log(m))
    print_teacher(result, console)
    write_json(json_path, as_dict(result))


# -- the demo stack under load (issue 6) -------------------------------------------------------------
def _test_queries(settings, fmt: Format, path: Optional[Path], limit: int, seed: int = 0) -> list[str]:
    """`limit` distinct texts of the split's test queries, a seeded sample in a stable order."""
    import random

    from searchstack.edge import current_split, read_catalog

    catalog = read_catalog(settings, fmt, path)
    split = current_split(settings, catalog).split
    texts = sorted({catalog.queries[q].text for q in split.test if q in catalog.queries})
    return sorted(random.Random(seed).sample(texts, min(limit, len(texts))))


def _serve_address(argv: list[str]) -> str:
    """host:port of a `shopsearch serve` command line (the demo always passes both)."""
    host = argv[argv.index("--host") + 1] if "--host" in argv else "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "[::]", "::") else host
    return f"{host}:{argv[argv.index('--port') + 1]}"


@app.command()
@one_line_errors
def load(
    clients: Annotated[int, typer.Option(min=1, max=64, help="Concurrent clients (N).")] = 8,
    grpc_clients: Annotated[int, typer.Option(min=0, help="Of those, how many call the reranker over gRPC.")] = 2,
    plugin_clients: Annotated[int, typer.Option(min=0, help="Of those, how many search Elasticsearch with the "
                                                "shopsearch rescore clause (the plugin path).")] = 0,
    seconds: Annotated[float, typer.Option(min=5, max=600, help="Load duration (T), before recovery waits.")] = 60.0,
    rate: Annotated[float, typer.Option(min=0.1, max=50, help="Requests a second per client.")] = 4.0,
    max_requests: Annotated[int, typer.Option(min=1, max=100_000, help="Stop after this many requests.")] = 20_000,
    slack_ms: Annotated[float, typer.Option(help="Allowed over each request's budget before it counts as hung.")] = 1000.0,
    faults: Annotated[bool, typer.Option(help="Kill and restart the reranker, stop and start Elasticsearch.")] = True,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.home_depot,
    path: Annotated[Optional[Path], typer.Option(help="Catalog path (defaults as in `shopsearch index`).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
) -> None:
    """Load and fault test of the running demo stack (`./scripts/demo.sh` first), loopback only.

    N clients for T seconds against the page's /api/search and the gRPC reranker, malformed and
    oversized requests mixed in; mid-run the reranker is killed and restarted and Elasticsearch
    stopped and started. With several replicas (`shopsearch demo --replicas 2`) one is killed and
    restarted, then all are reloaded in turn, and the BM25 fallback while one is down is reported;
    with --plugin-clients, the node's reranker target is also changed live and changed back.
    Exit code 1 unless every request got an answer in time and the stack recovered.
    """
    from bench.load import (LoadConfig, LoadRun, Replica, as_dict, bm25_lists, plugin_faults, print_report,
                            replica_faults, stack_faults)
    from es_config.local_node import LocalNode
    from indexer.bulk_index import connect
    from searchstack.stack import RERANKER, Stack, StackError, web_answering

    settings = load_settings()
    stack = Stack(settings.stack_dir)
    serve_argv = stack.argv(RERANKER)
    if serve_argv is None or not web_answering(settings.web_url):
        raise StackError(f"the demo stack is not running (no reranker in {settings.stack_dir} or no page on "
                         f"{settings.web_url}); start it with ./scripts/demo.sh")
    queries = _test_queries(settings, fmt, path, 200)
    lists = bm25_lists(connect(settings.resolved_es_url), settings.index_alias, queries, settings.rerank.depth)
    node = LocalNode.from_settings(settings) if settings.es_url is None else None
    names = stack.replicas()
    if faults and len(names) >= 2:  # `shopsearch demo --replicas N`: kill one, then a rolling reload
        replicas = [Replica(name, stack.argv(name), _serve_address(stack.argv(name))) for name in names
                    if stack.argv(name)]
        schedule = (plugin_faults(stack, replicas, settings.resolved_es_url, seconds) if plugin_clients
                    else replica_faults(stack, replicas, node, seconds))
        grpc_target = "ipv4:" + ",".join(r.address for r in replicas)  # as the page: all of them
    else:
        grpc_target = settings.resolved_rerank_target
        schedule = stack_faults(stack, serve_argv, settings.resolved_rerank_target, node, seconds) if faults else []
    config = LoadConfig(web_url=settings.web_url, grpc_target=grpc_target, queries=queries,
                        lists=lists, clients=clients, grpc_clients=grpc_clients, seconds=seconds,
                        rate_per_client=rate, max_requests=max_requests, web_budget_ms=settings.web.budget_ms,
                        grpc_deadline_ms=settings.rerank.deadlines.client_ms, slack_ms=slack_ms,
                        plugin_url=settings.resolved_es_url if plugin_clients else None,
                        plugin_index=settings.index_alias, plugin_clients=plugin_clients,
                        plugin_window=settings.rerank.depth, plugin_budget_ms=settings.web.budget_ms)
    report = LoadRun(config, schedule, progress=console.log).run()
    print_report(report, console)
    write_json(json_path, as_dict(report))
    if not report.passed:
        raise typer.Exit(1)


@app.command()
@one_line_errors
def e2e(
    rate: Annotated[float, typer.Option(min=1, max=500, help="Queries a second, both modes together.")] = 50.0,
    seconds: Annotated[float, typer.Option(min=2, max=600, help="Timed duration (after a 3 s warm-up).")] = 30.0,
    queries: Annotated[int, typer.Option(min=1, help="Distinct test-split queries cycled through.")] = 200,
    send_text: Annotated[Optional[bool], typer.Option("--send-text/--no-send-text", help="Send titles with the candidates (default: the page's setting).")] = None,
    seed: Annotated[int, typer.Option(help="Which test queries; a reranker that saw them in an earlier run has them cached, so pick another seed for cold figures.")] = 0,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.home_depot,
    path: Annotated[Optional[Path], typer.Option(help="Catalog path (defaults as in `shopsearch index`).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
) -> None:
    """Search latency p50/p95/p99 through the running page at a fixed rate: BM25 alone against
    BM25 plus rerank, interleaved in one run (`./scripts/demo.sh` first). Target: rerank adds <= 20 ms at p95."""
    from bench.e2e import as_dict, bench_e2e, print_report
    from searchstack.stack import StackError, web_answering

    settings = load_settings()
    if not web_answering(settings.web_url):
        raise StackError(f"no page answers on {settings.web_url}; start the stack with ./scripts/demo.sh")
    texts = _test_queries(settings, fmt, path, queries, seed)
    report = bench_e2e(settings.web_url, texts, rate=rate, seconds=seconds, send_text=send_text, progress=console.log)
    print_report(report, console)
    write_json(json_path, as_dict(report))


@app.command()
@one_line_errors
def plugin(
    rate: Annotated[float, typer.Option(min=0.5, max=500, help="Requests a second per client, the three paths in turn.")] = 20.0,
    seconds: Annotated[float, typer.Option(min=2, max=600, help="Timed duration of each level (after a 3 s warm-up).")] = 30.0,
    clients: Annotated[str, typer.Option(help="Concurrent clients, one level each, comma-separated.")] = "1,8",
    window: Annotated[int, typer.Option(min=1, max=1000, help="Hits reranked per search.")] = 100,
    shards: Annotated[int, typer.Option(min=1, max=16, help="Shards of the bench's index.")] = 1,
    outcome: Annotated[bool, typer.Option(help="Ask the plugin for each hit's outcome (the page's plugin path does).")] = False,
    rerank_port: Annotated[int, typer.Option(help="Port of the reranker the bench starts (0: any free one).")] = 0,
    es_url: Annotated[Optional[str], typer.Option("--es-url")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
) -> None:
    """Latency p50/p95/p99, side by side in one run at each client count: BM25 alone, BM25 + rescore
    through the Elasticsearch plugin, BM25 + rerank from the page's path; with the load average and
    the plugin's own spans. Targets (quiet machine, tiny artifact): the plugin adds <= 3 ms at p50
    over BM25 alone, and is no slower than the page's path at p50 and p95. Needs a node with the
    plugin (`shopsearch es start`)."""
    from bench.plugin import as_dict, bench_plugin, print_report

    try:
        levels = tuple(int(c) for c in clients.split(","))
    except ValueError:
        raise typer.BadParameter(f"--clients takes numbers separated by commas, got {clients!r}") from None
    if not levels or min(levels) < 1:
        raise typer.BadParameter(f"--clients takes positive numbers, got {clients!r}")
    settings = load_settings(es_url=es_url)
    report = bench_plugin(settings.resolved_es_url, rerank_port=rerank_port, rate=rate, seconds=seconds,
                          window=window, clients=levels, shards=shards, outcome=outcome, progress=console.log)
    print_report(report, console)
    write_json(json_path, as_dict(report))


@app.command("word-vectors")
@one_line_errors
def word_vectors(
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.home_depot,
    path: Annotated[Optional[Path], typer.Option(help="Catalog path (defaults as in `shopsearch index`).")] = None,
    words: Annotated[int, typer.Option(min=100, help="Keep the vocabulary's most frequent N words (0: all).")] = 0,
) -> None:
    """Seconds (wall and CPU) to distil the students' MiniLM word vectors for a vocabulary of the
    catalog's titles and query texts (the pipeline's is titles and train queries: a few percent
    smaller), then a second dimension from the cache, as BERM-O does after BERM."""
    import tempfile

    from reranker.text import Vocab
    from reranker.training.word_vectors import static_word_vectors
    from searchstack.edge import read_catalog

    catalog = read_catalog(load_settings(), fmt, path)
    vocab = Vocab.build([p.title for p in catalog.products.values()] + [q.text for q in catalog.queries.values()])
    if words:
        vocab = Vocab(vocab.words[:words])
    table = Table(title=f"MiniLM word vectors, {len(vocab.words):,} words", title_justify="left")
    for column in ("step", "wall s", "CPU s", "words/s (wall)"):
        table.add_column(column, justify="right" if column != "step" else "left")
    with tempfile.TemporaryDirectory() as tmp:
        for step, dim in (("forward passes, PCA to 64, cache written", 64), ("from the cache, PCA to 32", 32)):
            wall, cpu = time.perf_counter(), time.process_time()
            static_word_vectors(vocab, dim, cache=Path(tmp) / "word_vectors.npz")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            table.add_row(step, f"{wall:.1f}", f"{cpu:.1f}", f"{len(vocab.words) / wall:,.0f}")
    console.print(table)


@app.command()
@one_line_errors
def events(
    requests: Annotated[int, typer.Option(help="Searches per mode (logging off, on), alternating.")] = 400,
    alias: Annotated[Optional[str], typer.Option(help="Index alias searched (default: settings.index_alias).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
    es_url: Annotated[Optional[str], typer.Option("--es-url")] = None,
) -> None:
    """What behaviour logging costs a search: /api/search p50 and p99 with logging off and on, same run."""
    from bench.events import as_dict, bench_events

    settings = load_settings(es_url=es_url)
    result = bench_events(settings.resolved_es_url, alias or settings.index_alias, settings.web, requests)
    table = Table(title=f"/api/search, BM25 only, {requests} searches a mode, alternating", title_justify="left")
    for column in ("logging", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right" if column != "logging" else "left")
    for label, s in (("off", result.off), ("on", result.on)):
        table.add_row(label, f"{s.p50:.2f}", f"{s.p95:.2f}", f"{s.p99:.2f}", f"{s.max:.2f}")
    console.print(table)
    console.print(f"on / off: p50 {result.p50_ratio:.3f}, p99 {result.p99_ratio:.3f}; "
                  f"impressions written {result.written:,}, dropped {result.dropped:,}")
    write_json(json_path, as_dict(result))


@app.command()
@one_line_errors
def interleaving(
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.home_depot,
    path: Annotated[Optional[Path], typer.Option(help="Catalog path (defaults as in `shopsearch index`).")] = None,
    repeats: Annotated[int, typer.Option(help="Seeded repeats per gap.")] = 20,
    cap: Annotated[int, typer.Option(help="Most sessions a repeat may take.")] = 4000,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures here.")] = None,
) -> None:
    """Sessions interleaving needs to find the better ranker, as the NDCG@10 gap shrinks (offline, simulated)."""
    from dataclasses import asdict

    from bench.interleaving import bench_interleaving
    from searchstack.edge import read_catalog

    settings = load_settings()
    catalog = read_catalog(settings, fmt, path)
    rows = bench_interleaving(catalog.judgments_by_query(), (2.0, 1.0, 0.5, 0.25), repeats, cap)
    table = Table(title=f"Team-draft interleaving, grade order against grade + noise ({fmt.value}, PBM shoppers)",
                  title_justify="left")
    for column in ("noise sigma", "NDCG@10 gap", "median sessions to p < 0.05", "repeats there"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(f"{r.sigma:g}", f"{r.ndcg_gap:.3f}", f"{r.median_sessions:,.0f}", f"{r.found}/{r.repeats} within {cap:,}")
    console.print(table)
    write_json(json_path, [asdict(r) for r in rows])


app()
