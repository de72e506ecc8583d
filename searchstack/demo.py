"""`shopsearch demo` and `shopsearch web`: the whole stack brought up in order, and the page itself.

demo: Elasticsearch (the local node unless SHOPSEARCH_ES_URL) -> the catalog indexed (skipped when
unchanged) -> the query split -> BM25 figures (first run) -> a trained BERM-O artifact (the newest of
`full`, `quick`; trained with the demo profile when there is none) -> `shopsearch serve` (one
process per replica, `--replicas N`, on consecutive ports) and `shopsearch web` (balancing over
them) as background processes (searchstack/stack.py) -> the URL. Each step reuses what
is already there, so a second run only checks and prints.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

from rich.console import Console

from common.artifacts import MANIFEST, RunLayout, ServingManifest
from reranker.training.verdicts import model_line, verdict
from searchstack import app
from searchstack.settings import Settings
from searchstack.stack import (WEB, Stack, StackError, replica_name, reranker_serving, reranker_version,
                               shopsearch_argv, web_answering)
from searchstack.upgrade import UPGRADE, dev_ndcg, link_current, served_artifact

log = logging.getLogger(__name__)

ARTIFACT_PROFILES = ("full", "quick")  # the first one trained is served


def serving_artifact(settings: Settings, dataset: str) -> Path | None:
    """The artifact to serve: SHOPSEARCH_RERANK_ARTIFACT, else the pipeline's with the best dev
    NDCG@10 in its dev check (full before quick on a tie or where neither has one)."""
    if settings.rerank.artifact is not None:
        return settings.rerank.artifact
    found = [RunLayout(settings.artifacts_dir / "pipeline" / f"{dataset}-{profile}").serving for profile in ARTIFACT_PROFILES]
    found = [folder for folder in found if (folder / MANIFEST).is_file()]
    return max(found, key=dev_ndcg) if found else None  # max keeps the first of equals


def dev_summary(artifact: Path) -> str:
    """One line: what the dev check said of the served model."""
    check = ServingManifest.read(artifact).dev_check
    if not check:
        return "served model: no dev check recorded for this artifact"
    row = check["models"].get(check["served"], {})
    if not row:
        return f"served model: {check['served']}, not in its dev check"
    line = "served model: " + model_line(check["served"], row)
    return line if check["served_is_better"] else line + " - NOT better than both references on dev"


def eval_summary(run_root: Path) -> str | None:
    """One line: the served model against BM25 on the run's test queries (paired t-test)."""
    path = RunLayout(run_root).eval
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    rows = {row["name"]: row for row in data["rows"]}
    model, bm25 = rows.get("BERM-O (ONNX)"), rows.get("BM25 (Elasticsearch)")
    if not model or not bm25:
        return None
    p = data["significance_p_values"]["BERM-O (ONNX)"]["vs BM25 (Elasticsearch)"]["e2e ndcg@10"]
    delta = model["end_to_end"]["ndcg@10"] - bm25["end_to_end"]["ndcg@10"]
    return (f"test queries ({data['evaluable_queries']}): BERM-O NDCG@10 {model['end_to_end']['ndcg@10']:.4f} vs "
            f"BM25 {bm25['end_to_end']['ndcg@10']:.4f} ({delta:+.4f}, p = {p:.2g}): {verdict(delta, p)} than BM25")


def _train(settings: Settings, catalog, query_split, es, console: Console) -> Path:
    from reranker.training.pipeline import LOGGERS, Pipeline
    from reranker.training.profiles import PROFILES
    from searchstack.edge import print_evaluation

    profile = settings.demo_profile
    if profile not in PROFILES:
        raise StackError(f"unknown demo profile {profile!r}; choose {' or '.join(PROFILES)}")
    console.print(f"no trained reranker for {catalog.name} yet: training the {profile!r} profile "
                  f"(teacher, labels, graph, FAISS, BERM, BERM-O, checks; about 15 minutes on 2 cores for 'quick')")
    for name in LOGGERS:  # stage names and what each stage found, as progress
        logging.getLogger(name).setLevel(logging.INFO)
    run = Pipeline(catalog, query_split, es, settings.index_alias, PROFILES[profile], settings.artifacts_dir / "pipeline")
    run.run()  # through the dev check and the test evaluation, so the demo can say how it does
    if run.evaluation is not None:
        print_evaluation(run.evaluation, console)
    console.print("trained in " + ", ".join(f"{k} {v:.0f} s" for k, v in run.timings.items()))
    summary = eval_summary(run.root)
    if summary:
        console.print(summary, highlight=False)
    return run.layout.serving


def run_demo(settings: Settings, fmt: str, path: Path | None, train: bool, console: Console,
             prepare_only: bool = False, upgrade: bool = False) -> None:
    from evaluation.rankers import BM25Ranker, RandomRanker
    from evaluation.report import print_table, write_json
    from evaluation.runner import evaluate_rankers
    from searchstack.edge import current_split, read_catalog

    if settings.es_url is None:  # the node of these settings (their port and heap), not the defaults'
        node = app.local_node(settings)
        with console.status(f"starting Elasticsearch on {node.url}"):
            started = app.start_node(settings)
        console.print(app.node_started_message(started))
    catalog = read_catalog(settings, app.Format(fmt), path, out=console)
    es = app.connect_es(settings)
    report = app.index(settings, catalog, es)
    if report.skipped:
        console.print(f"alias {report.alias!r} already holds this catalog ({report.doc_count:,} products)")
    else:
        console.print(f"indexed {report.source_count:,} products into {report.index} in {report.seconds:.1f} s; "
                      f"count check passed ({report.doc_count:,})")
    query_split = current_split(settings, catalog, out=console).split

    eval_json = settings.artifacts_dir / "eval" / f"{fmt}-bm25.json"
    if not eval_json.exists():
        result = evaluate_rankers(es, settings.index_alias, catalog, query_split.side("test"),
                                  [BM25Ranker(), RandomRanker()], side="test", split_id=query_split.split_id,
                                  depth=settings.rerank.depth)
        print_table(result, console)
        write_json(result, eval_json)
    else:
        console.print(f"BM25 figures of this split: {eval_json}")

    artifact = serving_artifact(settings, catalog.name)
    if artifact is None:
        if not train:
            raise StackError(f"no trained reranker for {catalog.name}; run `shopsearch pipeline --profile quick` "
                             "or the demo without --no-train")
        artifact = _train(settings, catalog, query_split, es, console)
    console.print(f"reranker artifact: {artifact} (linked as {link_current(settings, artifact)})")
    if (artifact / MANIFEST).is_file():
        console.print(dev_summary(artifact), highlight=False)
    if prepare_only:
        return

    stack = Stack(settings.stack_dir)
    target = start_replicas(settings, stack, artifact, console)

    web_argv = shopsearch_argv("web", "-f", fmt, *(["--path", str(path)] if path else []),
                               "--host", settings.web.host, "--port", str(settings.web.port),
                               "--target", target, "--es-url", settings.resolved_es_url)
    with console.status(f"starting the page on {settings.web_url}") as status:
        started = stack.start(WEB, web_argv, lambda: web_answering(settings.web_url),
                              timeout_s=settings.demo_web_start_timeout_s,
                              waiting=lambda s: status.update(f"starting the page on {settings.web_url}: {s:.0f} s"))
    console.print(f"page {'already running' if started.already_running else 'started'} "
                  f"(pid {started.pid}; log {stack.log_file(WEB)})")
    if upgrade:
        start_upgrade(settings, stack, fmt, path, console)
    console.print(f"\n[bold]Open {settings.web_url}[/bold] and search. "
                  "Stop everything with `.venv/bin/shopsearch stop`.", highlight=False)
    console.print(evaluation_note(settings), highlight=False, soft_wrap=True)


def start_upgrade(settings: Settings, stack: Stack, fmt: str, path: Path | None, console: Console) -> None:
    """`shopsearch upgrade` in the background, unless the served model is already that profile's."""
    run = settings.artifacts_dir / "pipeline"
    served = served_artifact(settings)
    if served is not None and served.parent.name.endswith(f"-{settings.upgrade_profile}"):
        console.print(f"upgrade: the served model is already the {settings.upgrade_profile!r} profile's", highlight=False)
        return
    argv = shopsearch_argv("upgrade", "-f", fmt, *(["--path", str(path)] if path else []),
                           "--profile", settings.upgrade_profile, "--es-url", settings.resolved_es_url)
    started = stack.start(UPGRADE, argv, lambda: True)
    console.print(f"upgrade: training the {settings.upgrade_profile!r} profile in the background (about an hour on "
                  f"2 cores; pid {started.pid}, log {stack.log_file(UPGRADE)}, run folders under {run}); the "
                  "replicas switch to it, one at a time, if it beats the served model on dev", highlight=False)


def evaluation_note(settings: Settings) -> str:
    """The closing line about the comparison: the report's file and its pages, or how to get one."""
    from evaluation.html_report import ReportError, current_report, resolve_run

    try:
        report = current_report(resolve_run(None, settings.artifacts_dir / "pipeline"))
    except ReportError as err:
        return (f"BM25 against the reranker, with charts: not evaluated yet ({err}). "
                f"Then {settings.web_url}/report and /compare show it.")
    return (f"BM25 against the reranker, with charts: {settings.web_url}/report (also the file {report}); "
            f"query by query, losses one click away: {settings.web_url}/compare")


def replica_argv(settings: Settings, artifact: Path, index: int) -> list[str]:
    """`shopsearch serve` for replica `index`: gRPC port rerank_port + index, metrics port likewise."""
    metrics = settings.rerank.metrics_port
    metrics_args = ["--no-metrics"] if metrics is None else \
        ["--metrics-port", str(metrics + index if metrics else 0)]
    return shopsearch_argv("serve", "--artifact", str(artifact), "--host", settings.rerank.host,
                           "--port", str(settings.rerank_ports[index]), *metrics_args)


def start_replicas(settings: Settings, stack: Stack, artifact: Path, console: Console) -> str:
    """Start `rerank_replicas` serve processes on consecutive ports (one at a time, each until
    SERVING), stop replicas of an earlier, larger run, check they all serve the same model
    version; returns the target that names them all."""
    host = "127.0.0.1" if settings.rerank.host in ("0.0.0.0", "[::]", "::") else settings.rerank.host
    for extra in stack.replicas()[settings.rerank.replicas:]:
        stack.stop(extra)
    versions: dict[str, str] = {}
    for index, port in enumerate(settings.rerank_ports):
        name, address = replica_name(index), f"{host}:{port}"
        with console.status(f"starting reranker {index + 1} of {settings.rerank.replicas} on {address} "
                            "(loading the model)") as status:
            started = stack.start(name, replica_argv(settings, artifact, index),
                                  lambda: reranker_serving(address),
                                  timeout_s=settings.demo_reranker_start_timeout_s,
                                  waiting=lambda s: status.update(f"starting the reranker on {address}: {s:.0f} s"))
        versions[address] = reranker_version(address)
        console.print(f"{name} {'already running' if started.already_running else 'started'} on {address} "
                      f"(pid {started.pid}; log {stack.log_file(name)})", highlight=False)
    if len(set(versions.values())) > 1:
        raise StackError("the replicas serve different model versions: "
                         + ", ".join(f"{a} {v}" for a, v in versions.items()) + "; run `shopsearch stop` and start again")
    target = settings.resolved_rerank_target
    console.print(f"{len(versions)} replica(s) serving model {next(iter(versions.values()))}; clients target {target}",
                  highlight=False)
    return target


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as err:
            raise StackError(f"cannot listen on {host}:{port} ({err.strerror or err}); "
                             "choose another port with --port or SHOPSEARCH_WEB_PORT") from None


def serve_page(settings: Settings, catalog, console: Console, err_console: Console) -> None:
    """Run the page in the foreground until SIGTERM or Ctrl-C."""
    import uvicorn

    from frontend.app import Examples, create_app
    from frontend.search import Grades, RerankerLink, SearchService, example_pool, make_es
    from searchstack.edge import current_split

    _check_port(settings.web.host, settings.web.port)
    grades = Grades.from_catalog(catalog)
    query_split = current_split(settings, catalog, out=console).split
    pool = example_pool([catalog.queries[q].text for q in query_split.test if q in catalog.queries], grades,
                        settings.web.example_pool)
    config = settings.web
    link = RerankerLink(settings.resolved_rerank_target, balancing=settings.rerank.balancing)
    # two model versions side by side: the challenger's own service, asked for interleaved searches only
    challenger = RerankerLink(config.interleave_target) if config.interleave_target else None
    service = SearchService(make_es(settings.resolved_es_url, config.es_timeout_ms), link, config, grades,
                            es_url=settings.resolved_es_url, alias=settings.index_alias, challenger=challenger)
    examples = Examples(service, pool, settings.web.examples).start()
    events = None
    if config.events.enabled:  # behaviour logging: its own client, so a slow events index never holds a search
        from frontend.events import EventLog

        events = EventLog(make_es(settings.resolved_es_url, config.events.write_timeout_ms), config.events).start()
    app = create_app(service, examples, pipeline_dir=settings.artifacts_dir / "pipeline", events=events)
    how = ("reranking through Elasticsearch's shopsearch plugin" if config.rerank_path == "plugin"
           else f"reranker {settings.resolved_rerank_target}")
    err_console.print(f"search page on {settings.web_url} (Elasticsearch {settings.resolved_es_url}, {how})",
                      highlight=False)
    try:
        uvicorn.run(app, host=settings.web.host.strip("[]"), port=settings.web.port, log_level="warning",
                    access_log=False)
    finally:
        examples.stop()
        if events is not None:
            events.stop()
        link.close()
        if challenger is not None:
            challenger.close()
    err_console.print("stopped")
