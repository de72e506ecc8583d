"""`shopsearch`: run the local Elasticsearch node, index a catalog, split queries, evaluate, demo,
serve the reranker and rerank a query through it."""

from __future__ import annotations

import functools
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from reranker.training.errors import PipelineError
from searchstack import app as stackapp
from searchstack.app import Format
from searchstack.edge import (EXPECTED_ERRORS, console, current_split, err_console, one_line_errors, print_evaluation,
                              read_catalog)
from common.settings import RerankSettings
from searchstack.settings import load_settings

__all__ = ["EXPECTED_ERRORS", "Format", "app", "current_split", "one_line_errors", "read_catalog"]

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
es_app = typer.Typer(help="The local Elasticsearch node (Elastic's distribution zip, no Docker).", no_args_is_help=True)
app.add_typer(es_app, name="es")


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Catalog format.")]
PathOpt = Annotated[
    Optional[Path],
    typer.Option(help="Catalog path: home-depot train.csv, a generic-format folder, or the WANDS folder. "
                      "Defaults: SHOPSEARCH_HOME_DEPOT_PATH, SHOPSEARCH_WANDS_DIR (downloaded once)."),
]
UrlOpt = Annotated[Optional[str], typer.Option("--es-url", help="Use this cluster instead of the local node.")]
DEPTH = RerankSettings.model_fields["depth"].default  # help texts name the settings' default, not a copy
StrictOpt = Annotated[bool, typer.Option("--strict", help="Stop at the first malformed row instead of skipping it.")]


# -- es ---------------------------------------------------------------------------------------------
PortOpt = Annotated[Optional[int], typer.Option(help="HTTP port (default: SHOPSEARCH_ES_PORT or 9200).")]


@es_app.command("start")
@one_line_errors
def es_start(port: PortOpt = None, heap: Annotated[Optional[str], typer.Option(help="JVM heap, e.g. 1g.")] = None) -> None:
    """Fetch (once), configure and start the node; waits until it is healthy."""
    settings = load_settings(es_port=port, es_heap=heap)
    with console.status(f"starting Elasticsearch on {stackapp.local_node(settings).url}"):
        result = stackapp.start_node(settings)
    console.print(stackapp.node_started_message(result))


@es_app.command("stop")
@one_line_errors
def es_stop(port: PortOpt = None) -> None:
    """Stop the node started by `shopsearch es start`."""
    node = stackapp.local_node(load_settings(es_port=port))
    console.print("stopped" if node.stop() else f"no node of this project is running on port {node.port}")


@es_app.command("status")
@one_line_errors
def es_status(port: PortOpt = None) -> None:
    """Say whether the node runs, and its cluster health. Exit code 1 when it is not running."""
    status = stackapp.local_node(load_settings(es_port=port)).status()
    if not status.running:
        console.print(f"not running ({status.url})")
        raise typer.Exit(1)
    console.print(f"running on {status.url}, pid {status.pid}, health {status.health or 'not answering'}")


# -- index / split / eval -----------------------------------------------------------------------------
@app.command()
@one_line_errors
def index(
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    rebuild: Annotated[bool, typer.Option(help="Build a fresh versioned index and swap the alias to it.")] = False,
    force: Annotated[bool, typer.Option(help="Re-index even when the alias already holds this catalog.")] = False,
    strict: StrictOpt = False,
    es_url: UrlOpt = None,
) -> None:
    """Bulk-index a catalog behind the products alias, then check the count against the source."""
    settings = load_settings(es_url=es_url)
    catalog = read_catalog(settings, fmt, path, strict)
    report = stackapp.index(settings, catalog, rebuild=rebuild, force=force)
    if report.skipped:
        console.print(f"alias {report.alias!r} -> {report.index} already holds this catalog ({report.doc_count:,} products); nothing to do")
    else:
        console.print(
            f"indexed {report.source_count:,} products into {report.index} (alias {report.alias!r}) in "
            f"{report.seconds:.1f} s, {report.products_per_s:,.0f} products/s; count check passed ({report.doc_count:,})"
        )


@app.command()
@one_line_errors
def split(
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    seed: Annotated[Optional[int], typer.Option(help="Split seed (default: SHOPSEARCH_SPLIT_SEED).")] = None,
    strict: StrictOpt = False,
) -> None:
    """Split the catalog's queries into train / dev / test and save it under the artifacts folder."""
    settings = load_settings(split_seed=seed)
    catalog = read_catalog(settings, fmt, path, strict)
    result = current_split(settings, catalog).split
    console.print(
        f"split {result.split_id} (seed {result.seed}): {len(result.train):,} train, {len(result.dev):,} dev, "
        f"{len(result.test):,} test queries -> {stackapp.split_file(settings, catalog)}"
    )


@app.command("eval")
@one_line_errors
def evaluate(
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    side: Annotated[str, typer.Option(help="Which queries: test or dev.")] = "test",
    depth: Annotated[Optional[int], typer.Option(min=10, help="BM25 candidates per query, end to end "
                                                 f"(default: SHOPSEARCH_RERANK_DEPTH, {DEPTH}).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the results here.")] = None,
    es_url: UrlOpt = None,
) -> None:
    """BM25 (and a random-order reference) on held-out queries: end to end and rerank-judged."""
    from evaluation.rankers import BM25Ranker, RandomRanker
    from evaluation.report import print_table, write_json
    from evaluation.runner import evaluate_rankers

    settings = load_settings(es_url=es_url, rerank_depth=depth)
    catalog = read_catalog(settings, fmt, path)
    query_split = current_split(settings, catalog).split
    es = stackapp.connect_es(settings)
    result = evaluate_rankers(
        es, settings.index_alias, catalog, query_split.side(side), [BM25Ranker(), RandomRanker()],
        side=side, split_id=query_split.split_id, depth=settings.rerank.depth,
    )
    print_table(result, console)
    if json_path:
        write_json(result, json_path)
        console.print(f"wrote {json_path}")


@app.command()
@one_line_errors
def demo(
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    profile: Annotated[Optional[str], typer.Option(help="Profile trained when no reranker is trained yet (default: SHOPSEARCH_DEMO_PROFILE, quick).")] = None,
    train: Annotated[bool, typer.Option(help="Train a reranker when none is there (--no-train: stop instead).")] = True,
    port: Annotated[Optional[int], typer.Option(help="The page's port (default: SHOPSEARCH_WEB_PORT, 8080).")] = None,
    prepare_only: Annotated[bool, typer.Option(help="Index, split and train only; start no process (docker-compose's setup).")] = False,
    replicas: Annotated[Optional[int], typer.Option(min=1, max=16, help="Reranker processes on consecutive ports from SHOPSEARCH_RERANK_PORT (default: SHOPSEARCH_RERANK_REPLICAS, 1).")] = None,
    upgrade: Annotated[bool, typer.Option(help="Then train the bigger profile (SHOPSEARCH_UPGRADE_PROFILE, full: about an hour) in the background and roll it into the replicas if it beats the served model on dev (`shopsearch upgrade`).")] = False,
) -> None:
    """The whole stack in one command, then the page's URL.

    Elasticsearch (the local node unless SHOPSEARCH_ES_URL), the catalog indexed and split, a trained
    reranker (the quick profile is trained when none is there), then the reranker service and the
    search page in the background. `shopsearch stop` ends it all; running it again reuses what is there.
    """
    from searchstack.demo import run_demo

    run_demo(load_settings(web_port=port, demo_profile=profile, rerank_replicas=replicas), fmt.value, path, train,
             console, prepare_only, upgrade)


ProfileOpt = Annotated[str, typer.Option(help="quick (minutes: demo, CI), small-shop (200 labeled queries, the "
                                             "whole test split) or full (the headline numbers).")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a profile setting, KEY=VALUE (repeatable), e.g. --set use_cosine=false; "
                  "the run gets its own folder, seeded from the profile's run.")]
TeacherFromOpt = Annotated[Optional[Path], typer.Option(
    help="Start the teacher from this trained teacher folder (e.g. another shop's "
         "artifacts/pipeline/<catalog>-full/teacher), then fine-tune it on this catalog's labels.")]


def _overrides(pairs: list[str] | None, teacher_from: Path | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PipelineError(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    if teacher_from is not None:
        out["teacher_from"] = str(teacher_from.resolve())
    return out


def _pipeline_factory(profile: str, fmt: Format, path: Path | None, es_url: str | None):
    """(catalog, overrides -> Pipeline) for a profile, after indexing the catalog."""
    from reranker.training.pipeline import Pipeline
    from reranker.training.profiles import PROFILES, run_name, with_overrides

    if profile not in PROFILES:
        raise PipelineError(f"unknown profile {profile!r}; choose {', '.join(PROFILES)}")
    settings = load_settings(es_url=es_url)
    catalog = read_catalog(settings, fmt, path)
    query_split = current_split(settings, catalog).split
    es = stackapp.connect_es(settings)
    stackapp.index(settings, catalog, es)

    def make(overrides: dict[str, str]) -> Pipeline:
        chosen = with_overrides(PROFILES[profile], overrides)
        return Pipeline(catalog, query_split, es, settings.index_alias, chosen, settings.artifacts_dir / "pipeline",
                        name=run_name(PROFILES[profile], overrides))

    return make


def _print_dev_check(root: Path) -> None:
    import json

    from common.artifacts import RunLayout

    path = RunLayout(root).dev_check
    if not path.exists():
        return
    from reranker.training.verdicts import model_line

    check = json.loads(path.read_text())
    for name, row in check["models"].items():
        console.print(model_line(name, row), highlight=False)
    if not check["served_is_better"]:
        console.print(f"[yellow]warning:[/yellow] the served model ({check['served']}) does not beat both BM25 "
                      "and the zero-shot bi-encoder on dev", highlight=False)


@app.command()
@one_line_errors
def pipeline(
    profile: ProfileOpt = "quick",
    until: Annotated[Optional[str], typer.Option(help="Stop after this stage.")] = None,
    overrides: SetOpt = None,
    teacher_from: TeacherFromOpt = None,
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    es_url: UrlOpt = None,
) -> None:
    """Teacher fine-tune, labeling, graph, FAISS, BERM, BERM-O, dev check and evaluation, as restartable stages."""
    from reranker.training.pipeline import check_stage

    check_stage(until)  # before reading and indexing the catalog
    chosen = _overrides(overrides, teacher_from)
    from reranker.training.profiles import PROFILES, with_overrides

    if profile in PROFILES:
        with_overrides(PROFILES[profile], chosen)  # a bad setting fails before the catalog is read
    make = _pipeline_factory(profile, fmt, path, es_url)
    run = make(chosen)
    run.run(until=until)
    if run.evaluation is not None:
        print_evaluation(run.evaluation, console)
    console.print("stage wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in run.timings.items()))
    _print_dev_check(run.root)


@app.command()
@one_line_errors
def ceiling(
    profile: ProfileOpt = "quick",
    overrides: SetOpt = None,
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    es_url: UrlOpt = None,
    queries: Annotated[int, typer.Option(min=1, help="At most this many queries of each group.")] = 800,
) -> None:
    """How much of the teacher a student of this design can carry, on a trained run: the tuned query
    encoder's agreement with the teacher on the queries it learned from and on dev, and the best dev
    NDCG@10 of any blend of BM25 and the two cosines (weights chosen on dev: an optimistic bound)."""
    from reranker.training.ceiling_report import run_ceiling

    run = _pipeline_factory(profile, fmt, path, es_url)(_overrides(overrides, None))
    for line in run_ceiling(run, queries).lines():
        console.print(line, highlight=False)


@app.command("k-order")
@one_line_errors
def k_order(
    profile: ProfileOpt = "quick",
    overrides: SetOpt = None,
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    es_url: UrlOpt = None,
) -> None:
    """What the k-order part has to work with on a trained run's test queries: how close its click
    graph's queries are to them, and how relevant the neighbours they borrow are."""
    from indexer.embeddings import embed, load_bi_encoder
    from indexer.faiss_store import VectorStore
    from indexer.graph import ClickGraph
    from reranker.graph.neighbors import NeighborSampler
    from reranker.training.k_order_report import k_order_coverage

    run = _pipeline_factory(profile, fmt, path, es_url)(_overrides(overrides, None))
    graph_file = run.root / "graph.json"
    if not graph_file.is_file():
        raise PipelineError(f"{graph_file}: no click graph yet; run the pipeline through its faiss stage first")
    sampler = NeighborSampler(ClickGraph.load(graph_file), per_path=run.profile.per_path, seed=run.profile.seed)
    vectors = dict(zip(run.test_q, embed(load_bi_encoder(), [run.texts[q] for q in run.test_q], progress=False)))
    top = run.bm25_top()
    candidates = {q: list(top.get(q, {}))[: run.profile.bm25_depth] for q in run.test_q}
    found = k_order_coverage(sampler, VectorStore.load(run.root, "query_store"), vectors, candidates,
                             run.catalog.judgments_by_query())
    for line in found.lines():
        console.print(line, highlight=False)


@app.command()
@one_line_errors
def ablation(
    profile: ProfileOpt = "quick",
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    es_url: UrlOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the table and tests here.")] = None,
    parts: Annotated[Optional[list[str]], typer.Option(
        "--part", help="Switch off only these parts (repeatable): cosine, listwise, pseudo, top100, query_encoder, unlabeled, "
             "word_vectors, linear_start. Default: all.")] = None,
) -> None:
    """BERM-O with each added part switched off, trained and tested on the profile's test queries (paired tests)."""
    from evaluation.report import print_significance, print_table, write_json
    from reranker.training.ablation import VARIANTS, run_ablation

    unknown = sorted(set(parts or []) - set(VARIANTS))
    if unknown:
        raise PipelineError(f"unknown part {unknown[0]!r}; parts: {', '.join(VARIANTS)}")
    make = _pipeline_factory(profile, fmt, path, es_url)
    result, tests = run_ablation(make, list(parts or VARIANTS))
    print_table(result, console)
    print_significance(tests, console)
    out = json_out or make({}).root / "ablation.json"
    write_json(result, out, {"significance_p_values": tests,
                             "variants": {VARIANTS[p][0]: VARIANTS[p][1] for p in parts or VARIANTS}})
    console.print(f"wrote {out}")


@app.command("loop-curve")
@one_line_errors
def loop_curve(
    profile: ProfileOpt = "small-shop",
    sessions: Annotated[Optional[list[str]], typer.Option(
        help="Log volumes in simulated sessions (repeatable, or comma-separated). Default: 1000,4000,16000.")] = None,
    model: Annotated[str, typer.Option(help="The shoppers' click model: pbm (position-based) or cascade.")] = "pbm",
    seed: Annotated[int, typer.Option(help="Seed of the shoppers, their queries, clicks and interleaving draws.")] = 0,
    interleave_share: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Searches whose page team-drafts the served model's order with BM25's.")] = 0.5,
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    es_url: UrlOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the curve here.")] = None,
    train: Annotated[bool, typer.Option(
        "--train/--no-train", help="Retrain and test at each volume (minutes each), or print the graph columns only.")] = True,
    overrides: SetOpt = None,
) -> None:
    """The click graph grown from simulated logs of the profile's train queries, retrained on (graph and
    later stages) and tested, against the teacher-built graph's run, as the log volume grows
    (reranker/training/loop_curve.py). Each volume trains a BERM and a BERM-O; graph NDCG@10: each train query's
    graph neighbors by edge weight against its grades."""
    import json
    from dataclasses import asdict

    from evaluation.click_simulator import ClickModel
    from reranker.training.loop_curve import MODELS, run_curve

    if model not in ("pbm", "cascade"):
        raise typer.BadParameter("the click model is pbm or cascade", param_hint="--model")
    try:
        volumes = sorted({int(v) for raw in sessions or ["1000,4000,16000"] for v in raw.split(",") if v.strip()})
    except ValueError:
        raise typer.BadParameter("volumes are whole numbers of sessions", param_hint="--sessions") from None
    if not volumes or volumes[0] < 1:
        raise typer.BadParameter("volumes are whole numbers of sessions, at least 1", param_hint="--sessions")
    chosen = _overrides(overrides, None)
    if "graph_file" in chosen:
        raise typer.BadParameter("the curve sets graph_file itself", param_hint="--set")
    factory = _pipeline_factory(profile, fmt, path, es_url)

    def make(extra: dict[str, str]):  # every run of the curve, the teacher-graph one included, gets --set
        return factory({**chosen, **extra})

    settings = load_settings(es_url=es_url)
    header = ("sessions  clicks  log edges  graph edges  train queries covered  graph NDCG@10"
              + "".join(f"  {m} NDCG@10 (p vs teacher graph)" for m in MODELS if train))
    printed = []

    def show(point) -> None:
        if not printed:
            console.print(header, highlight=False, soft_wrap=True)
        printed.append(point)
        cells = "".join(f"  {point.ndcg[m]:.4f}" + (f" (p {point.p_vs_teacher_graph[m]:.3g})" if point.sessions else
                                                     " (teacher-built graph)") for m in MODELS if train)
        console.print(f"{point.sessions:>8,}  {point.clicks:>6,}  {point.log_edges:>9,}  {point.graph_edges:>11,}  "
                      f"{point.queries_covered:>10,} of {point.train_queries:<10,} {point.graph_ndcg:>6.4f}{cells}",
                      highlight=False, soft_wrap=True)

    points = run_curve(make, volumes, ClickModel(kind=model), seed=seed, interleave_share=interleave_share,
                       page_size=settings.web.page_size, train=train, on_point=show)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"profile": profile, "model": model, "seed": seed, "overrides": chosen,
                                        "interleave_share": interleave_share,
                                        "points": [asdict(p) for p in points]}, indent=2))
        console.print(f"wrote {json_out}")


@app.command()
@one_line_errors
def report(
    run: Annotated[Optional[str], typer.Argument(help="Run folder or name, e.g. home-depot-quick (default: the newest evaluated run).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the HTML (default: RUN/report.html).")] = None,
) -> None:
    """Write a pipeline run's evaluation as one self-contained HTML file with charts (the page serves it at /report)."""
    from evaluation.html_report import ReportError, build_report, resolve_run

    settings = load_settings()
    try:
        path = build_report(resolve_run(run, settings.artifacts_dir / "pipeline"), out)
    except ReportError as err:
        err_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"report: {path}", highlight=False, soft_wrap=True)


# -- the reranker service ----------------------------------------------------------------------------
def _request_log_to_stdout() -> None:
    """One JSON line per request on stdout; everything else stays on stderr."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    request_log = logging.getLogger("reranker.requests")
    request_log.addHandler(handler)
    request_log.setLevel(logging.INFO)
    request_log.propagate = False


@app.command()
@one_line_errors
def serve(
    artifact: Annotated[Optional[Path], typer.Option(help="BERM-O artifact folder (default: SHOPSEARCH_RERANK_ARTIFACT).")] = None,
    host: Annotated[Optional[str], typer.Option(help="Bind address (default: SHOPSEARCH_RERANK_HOST, 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="gRPC port (default: SHOPSEARCH_RERANK_PORT, 50051).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Request threads (default: SHOPSEARCH_RERANK_WORKERS).")] = None,
    metrics_port: Annotated[Optional[int], typer.Option(help="Prometheus /metrics port (default: SHOPSEARCH_RERANK_METRICS_PORT).")] = None,
    no_metrics: Annotated[bool, typer.Option("--no-metrics", help="Do not serve /metrics.")] = False,
) -> None:
    """Serve a BERM-O artifact over gRPC until SIGTERM: health, reflection, metrics, reload on file change.

    stdout gets one JSON line per request; messages go to stderr.
    """
    from reranker.server.app import RerankServer, ServerStartError, run_until_signal
    from reranker.server.models import berm_o_loader

    settings = load_settings(rerank_artifact=artifact, rerank_host=host, rerank_port=port, rerank_workers=workers,
                             rerank_metrics_port=metrics_port)
    if settings.rerank.artifact is None:
        raise ServerStartError("no artifact to serve: pass --artifact or set SHOPSEARCH_RERANK_ARTIFACT")
    config = settings.rerank.model_copy(update={"metrics_port": None}) if no_metrics else settings.rerank
    _request_log_to_stdout()
    server = RerankServer(config, loader=berm_o_loader(config), artifact=settings.rerank.artifact)
    server.start()
    err_console.print(f"loading {settings.rerank.artifact} (port {server.port} answers health NOT_SERVING meanwhile)",
                      highlight=False)

    def ready(s: RerankServer) -> None:
        metrics = f"metrics on http://{config.host}:{s.metrics_port}/metrics" if s.metrics_port else "no metrics"
        err_console.print(f"serving {s.slot.model.name} {s.slot.model.version} on {s.target}; {metrics}", highlight=False)

    run_until_signal(server, on_ready=ready)
    err_console.print("stopped")


@app.command()
@one_line_errors
def upgrade(
    profile: Annotated[Optional[str], typer.Option(help="The profile to train (default: SHOPSEARCH_UPGRADE_PROFILE, full).")] = None,
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    es_url: UrlOpt = None,
) -> None:
    """Train a profile (resuming its run), then roll its model into the demo's replicas, one at a
    time, when its dev NDCG@10 beats the served model's (both scored on the run's dev queries);
    `shopsearch demo --upgrade` runs this in the background."""
    from reranker.training import checks
    from reranker.training.pipeline import LOGGERS
    from searchstack.upgrade import roll_in_if_better

    settings = load_settings(es_url=es_url)
    chosen = profile or settings.upgrade_profile
    for name in LOGGERS:  # stage names and what each stage found, as progress
        logging.getLogger(name).setLevel(logging.INFO)
    run = _pipeline_factory(chosen, fmt, path, es_url)({})
    run.run()
    judge = functools.partial(checks.dev_head_to_head, run)  # both models on this run's dev queries
    console.print(roll_in_if_better(settings, run.layout.serving, judge=judge).line(), highlight=False)


@app.command()
@one_line_errors
def reload(
    artifact: Annotated[Optional[str], typer.Option(help="Artifact folder, as the replicas see it (default: the one each serves).")] = None,
    target: Annotated[Optional[str], typer.Option(help="The replicas: ipv4:HOST:PORT,HOST:PORT, a DNS name, or one host:port (default: SHOPSEARCH_RERANK_TARGET, or the demo's replicas).")] = None,
    pause: Annotated[float, typer.Option(min=0, help="Seconds between replicas.")] = 1.0,
) -> None:
    """Rolling model update: each replica reloads the artifact in turn (RerankerAdmin.Reload) while
    traffic flows; each keeps scoring with its old model until the new one is warm."""
    from reranker.rolling import replica_addresses, rolling_reload

    settings = load_settings(rerank_target=target)
    addresses = replica_addresses(settings.resolved_rerank_target)

    def done(step) -> None:
        console.print(f"{step.address}: {step.previous_version} -> {step.model_version} "
                      f"(loaded in {step.load_ms:.0f} ms)", highlight=False)

    steps = rolling_reload(addresses, artifact, pause_s=pause, on_step=done)
    console.print(f"{len(steps)} replica(s) now serve {steps[-1].model_version}", highlight=False)


def _movement(item) -> str:
    if not item.reranked:
        return "[dim]not scored[/dim]"
    if item.movement > 0:
        return f"[green]↑{item.movement}[/green]"
    if item.movement < 0:
        return f"[red]↓{-item.movement}[/red]"
    return "="


@app.command("rerank")
@one_line_errors
def rerank_query(
    query: Annotated[str, typer.Argument(help="What a shopper typed, e.g. \"cordless drill\".")],
    depth: Annotated[Optional[int], typer.Option(min=1, help=f"BM25 candidates sent (default: SHOPSEARCH_RERANK_DEPTH, {DEPTH}).")] = None,
    show: Annotated[int, typer.Option(min=1, help="Rows printed.")] = 20,
    explain: Annotated[bool, typer.Option(help="Also print each shown item's score parts and top neighbors.")] = False,
    send_text: Annotated[bool, typer.Option(help="Send titles too (for items the service has not indexed).")] = False,
    model_version: Annotated[Optional[str], typer.Option(help="Fail unless the service runs this version.")] = None,
    target: Annotated[Optional[str], typer.Option(help="Reranker host:port (default: SHOPSEARCH_RERANK_TARGET).")] = None,
    es_url: UrlOpt = None,
) -> None:
    """BM25 top-N from Elasticsearch, reranked by the service: both orders side by side."""
    from rich.table import Table

    from dataclasses import replace

    from es_config import retrieval
    from reranker.client import RerankClient

    settings = load_settings(es_url=es_url, rerank_target=target, rerank_depth=depth)
    es = stackapp.connect_es(settings)
    hits = retrieval.search(es, settings.index_alias, query, settings.rerank.depth).candidates
    if not hits:
        console.print(f"no BM25 results for {query!r} in {settings.index_alias!r}; nothing to rerank")
        return
    titles = {c.product_id: c.title for c in hits}
    candidates = [replace(c, text=c.title) for c in hits] if send_text else hits
    with RerankClient(settings.resolved_rerank_target, timeout_s=settings.rerank.deadlines.client_ms / 1000) as client:
        result = client.rerank(query, candidates, explain=explain, model_version=model_version)

    table = Table(title=f"{query!r}: BM25 top {len(hits)} -> {result.model_name} {result.model_version}",
                  title_justify="left")
    for column, justify in (("#", "right"), ("BM25 order", "left"), ("BM25", "right"),
                            ("reranked order", "left"), ("score", "right"), ("move", "right")):
        table.add_column(column, justify=justify)
    for position, (before, after) in enumerate(zip(candidates[:show], result.items[:show]), start=1):
        table.add_row(str(position), f"{before.product_id} {titles[before.product_id]}", f"{before.bm25:.2f}",
                      f"{after.product_id} {titles.get(after.product_id, '')}",
                      f"{after.score:.3f}" if after.reranked else "-", _movement(after))
    console.print(table)
    if result.partial:
        err_console.print(f"[yellow]partial:[/yellow] {result.reason}", highlight=False)
    timings = result.timings_ms
    console.print(f"round trip {result.elapsed_ms:.1f} ms; in the server {timings.get('server', 0):.1f} ms, "
                  f"of which the model {timings.get('model', 0):.1f} ms", highlight=False)
    if explain:
        for item in result.items[:show]:
            if item.explanation is None:
                continue
            e = item.explanation
            top = ", ".join(f"{n.path} {n.node_id} ({n.attention:.2f})"
                            for n in sorted(e.neighbors, key=lambda n: -n.attention)[:4])
            console.print(f"{item.rank:>3}. {item.product_id}: {item.score:.3f} = 0-order {e.zero_order:.3f} "
                          f"+ k-order {e.k_order:.3f} + BM25 {e.bm25_part:.3f}; most attended: {top or 'none'}",
                          highlight=False)


# -- the closed loop: behaviour logs and interleaving ------------------------------------------------
abtest_app = typer.Typer(help="Interleaving on the page: the served model against BM25.", no_args_is_help=True)
app.add_typer(abtest_app, name="abtest")
logs_app = typer.Typer(help="The page's behaviour logs (SHOPSEARCH_WEB_EVENTS_ENABLED).", no_args_is_help=True)
app.add_typer(logs_app, name="logs")


@abtest_app.command("report")
@one_line_errors
def abtest_report(
    es_url: UrlOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap over sessions.")] = 0,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the verdict here.")] = None,
) -> None:
    """Wins, losses and ties of the interleaved searches, the preference with its 95% interval and the
    sign test's p-value, from the logged impressions and clicks."""
    import json
    from dataclasses import asdict

    from es_config.events import read_events
    from evaluation.interleaving import arms_of, compare, outcomes_of

    settings = load_settings(es_url=es_url)
    arms = arms_of(settings.web.interleave_target is not None)  # against a second model version, else BM25
    events = read_events(stackapp.connect_es(settings), settings.web.events.index_prefix)
    verdict = compare(outcomes_of(events, arms), arms, seed=seed)
    a, b = arms
    if not verdict.impressions:
        console.print(f"no interleaved impression with a click in {settings.web.events.index_prefix}-* yet")
    else:
        console.print(f"{verdict.impressions:,} interleaved impressions with a click, {verdict.sessions:,} sessions")
        console.print(f"{a:>6} wins {verdict.wins:,} · ties {verdict.ties:,} · {b} wins {verdict.losses:,}")
        better = a if verdict.preference > 0 else b
        console.print(f"preference for {a} over {b}: {verdict.preference:+.3f} (95% interval {verdict.low:+.3f} "
                      f"to {verdict.high:+.3f}, bootstrap over sessions); sign test p = {verdict.p_value:.3g}"
                      + (f": {better} is preferred" if verdict.p_value < 0.05 else ": no preference shown at p < 0.05"))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(asdict(verdict), indent=2))


@logs_app.command("export")
@one_line_errors
def logs_export(
    out: Annotated[Path, typer.Option("--out", help="Folder for logs.jsonl (and log_queries.jsonl).")],
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    es_url: UrlOpt = None,
    graph: Annotated[Optional[Path], typer.Option(help="Also write the position-bias corrected click graph (JSON).")] = None,
) -> None:
    """The generic format's `logs` table (per query-product pair: clicks, impressions) from the logged
    events; queries are matched to the catalog's by text, others listed in log_queries.jsonl."""
    import json

    from es_config.events import read_events
    from indexer.click_logs import estimate_pbm, graph_from_position_counts, logs_table, position_counts, query_key

    settings = load_settings(es_url=es_url)
    catalog = read_catalog(settings, fmt, path)
    query_ids = {query_key(q.text): q.query_id for q in sorted(catalog.queries.values(), key=lambda q: q.query_id)
                 if query_key(q.text)}
    counts = position_counts(read_events(stackapp.connect_es(settings), settings.web.events.index_prefix))
    rows, new_queries = logs_table(counts, query_ids)
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if new_queries:
        (out / "log_queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in new_queries))
    console.print(f"{len(rows):,} query-product pairs to {out / 'logs.jsonl'}"
                  + (f"; {len(new_queries):,} queries the catalog lacks to {out / 'log_queries.jsonl'}" if new_queries else ""))
    if graph is not None:
        model = estimate_pbm(counts)
        built = graph_from_position_counts(counts, query_ids, model.examination)
        built.save(graph)
        shown = ", ".join(f"{k}: {t:.2f}" for k, t in sorted(model.examination.items())[:10])
        console.print(f"examination by position (PBM, {model.iterations} EM steps): {shown}")
        console.print(f"click graph {built.manifest()} to {graph}")


@app.command()
@one_line_errors
def simulate(
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    url: Annotated[Optional[str], typer.Option(help="The page (default: the settings' web URL).")] = None,
    sessions: Annotated[int, typer.Option(min=1, help="Shoppers, one search each.")] = 500,
    seconds: Annotated[float, typer.Option(min=1, help="Stop after this long, however many shoppers searched.")] = 120.0,
    model: Annotated[str, typer.Option(help="Click model: pbm (position-based) or cascade.")] = "pbm",
    seed: Annotated[int, typer.Option(help="Seed of the shoppers, their queries and their clicks.")] = 0,
) -> None:
    """Simulated shoppers search the test split's graded queries on the running page and click by a
    click model with attractiveness from the human grades (evaluation/click_simulator.py); the page
    logs them as it logs people (switch logging on first)."""
    from evaluation.click_simulator import ClickModel, ClickSimulator

    if model not in ("pbm", "cascade"):
        raise typer.BadParameter("the click model is pbm or cascade", param_hint="--model")
    settings = load_settings()
    catalog = read_catalog(settings, fmt, path)
    test = set(current_split(settings, catalog).split.test)
    grades = catalog.judgments_by_query()
    queries = {catalog.queries[q].text: grades[q] for q in sorted(test) if q in grades and q in catalog.queries}
    simulator = ClickSimulator(url or settings.web_url, queries, ClickModel(kind=model), seed=seed,
                               cookie=settings.web.events.cookie)
    report = simulator.run(sessions, seconds)
    console.print(f"{report.searches:,} searches, {report.clicks:,} clicks in {report.seconds:.1f} s "
                  f"({report.failed:,} requests failed) on {url or settings.web_url}")


# -- the demo page and the background stack ---------------------------------------------------------
@app.command()
@one_line_errors
def web(
    fmt: FormatOpt = Format.home_depot,
    path: PathOpt = None,
    host: Annotated[Optional[str], typer.Option(help="Bind address (default: SHOPSEARCH_WEB_HOST, 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default: SHOPSEARCH_WEB_PORT, 8080).")] = None,
    target: Annotated[Optional[str], typer.Option(help="Reranker host:port (default: SHOPSEARCH_RERANK_TARGET).")] = None,
    es_url: UrlOpt = None,
) -> None:
    """The search page: BM25 and reranked side by side, with grades, NDCG@10 and an explain view.

    The catalog is read for its human grades and the test split's example queries; products and
    BM25 come from Elasticsearch, the order from the reranker (BM25 order, said plainly, when it
    does not answer in time).
    """
    from searchstack.demo import serve_page

    settings = load_settings(web_host=host, web_port=port, rerank_target=target, es_url=es_url)
    serve_page(settings, read_catalog(settings, fmt, path), console, err_console)


@app.command()
@one_line_errors
def stop(
    keep_es: Annotated[bool, typer.Option("--keep-es", help="Leave the Elasticsearch node running.")] = False,
) -> None:
    """End what `shopsearch demo` started: the page, the reranker and the local Elasticsearch node."""
    from searchstack.stack import RERANKER, WEB, Stack
    from searchstack.upgrade import UPGRADE

    settings = load_settings()
    stack = Stack(settings.stack_dir)
    if stack.stop(UPGRADE):  # a background training (`demo --upgrade`) resumes where it stopped
        console.print(f"{UPGRADE}: stopped (its run resumes with `shopsearch upgrade`)")
    for name in (WEB, *(stack.replicas() or [RERANKER])):
        console.print(f"{name}: {'stopped' if stack.stop(name) else 'was not running'}")
    if settings.es_url is None and not keep_es:
        node = stackapp.local_node(settings)
        console.print(f"Elasticsearch on port {node.port}: {'stopped' if node.stop() else 'was not running'}")


class Component(str, Enum):
    es = "es"
    reranker = "reranker"
    web = "web"


@app.command()
@one_line_errors
def ping(what: Annotated[Component, typer.Argument(help="es, reranker or web.")]) -> None:
    """Exit 0 when it answers healthy, 1 otherwise (for health checks and scripts)."""
    from es_config.local_node import cluster_health
    from searchstack.stack import reranker_serving, web_answering

    settings = load_settings()
    if what is Component.es:
        health = cluster_health(settings.resolved_es_url)
        ok, where = bool(health and health["status"] in ("green", "yellow")), settings.resolved_es_url
    elif what is Component.reranker:
        ok, where = reranker_serving(settings.resolved_rerank_target), settings.resolved_rerank_target
    else:
        ok, where = web_answering(settings.web_url), settings.web_url
    console.print(f"{what.value} at {where}: {'healthy' if ok else 'not answering'}", highlight=False)
    if not ok:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
