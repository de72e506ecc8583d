"""The closed loop's curve: a click graph grown from simulated behaviour logs, retrained on, against
the teacher-built graph, as the log volume grows.

    curve = run_curve(make_pipeline, volumes=[1000, 4000, 16000], model=ClickModel(), seed=0)

For the profile's run (trained up to BERM-O first, or reused) and each volume of sessions:

1. Seeded shoppers (evaluation/click_simulator.py: the click model, attractiveness from the human
   grades) search the profile's *train* queries only; dev and test grades never reach the logs, so
   the test split stays unseen. They see page 1 as the page shows it: the run's served model
   (BERM-O) over the BM25 top-N, team-drafted with BM25's order for `interleave_share` of the
   searches (the loop as README's "closed loop" runs it). In process, not over HTTP: the train
   queries' lists do not change between sessions, so each is ranked once and thousands of sessions
   cost seconds; the page's own path (logging, /click, export) is tested in tests/test_click_logs.py.
2. The sessions' events go through `shopsearch logs export --graph`'s own functions (indexer/click_logs.py:
   position counts, the PBM fitted by EM, the position-bias corrected graph) into a graph file.
3. A variant run with `graph_file` set (a copy of the profile's run: only the graph and later stages
   are redone; the k-order ablation is skipped) trains BERM and BERM-O on it.
4. Its BERM and BERM-O are evaluated on the profile's test queries beside the teacher-graph run's,
   with paired t-tests (end to end NDCG@10) against the teacher-graph run's same model.

Volumes are nested: the first 1,000 sessions of the 4,000 are the 1,000 (one seeded stream).

Each point also says how well the graph itself orders the train queries' products (`graph_ndcg`:
each train query's graph neighbors by edge weight, NDCG@10 against its grades), which costs no
training: `train=False` gives the curve's graph columns alone, in seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.results import Candidate
from evaluation.click_simulator import ClickModel, ShownLists, simulated_events
from evaluation.ndcg import ndcg_at
from evaluation.rankers import BM25Ranker
from evaluation.runner import EvalResult, evaluate_rankers
from evaluation.significance import paired_tests
from indexer.click_logs import (estimate_pbm, graph_from_position_counts, position_counts, query_key,
                                with_teacher_edges)
from indexer.graph import ClickGraph
from reranker.serving.online import OnlineReranker
from reranker.training.errors import PipelineError
from reranker.training.pipeline import Pipeline

__all__ = ["CurvePoint", "MODELS", "graph_ndcg", "run_curve", "shown_lists", "write_logs_graph"]

MODELS = ("BERM", "BERM-O (ONNX)")  # the rows of each run that the curve compares
TEACHER_GRAPH = "teacher-built graph"


@dataclass(frozen=True)
class CurvePoint:
    sessions: int  # 0: the teacher-built graph's run
    clicks: int
    log_edges: int  # edges of the train queries' graph that came from the logs
    graph_edges: int  # all edges of the train queries' graph (logged + teacher-built for the rest)
    queries_covered: int  # train queries with at least one logged edge
    train_queries: int
    graph_ndcg: float  # train queries' graph neighbors by edge weight, mean NDCG@10 against their grades
    run: str  # the run folder's name ("" when not trained)
    ndcg: dict[str, float]  # model -> test end to end NDCG@10 (empty when not trained)
    p_vs_teacher_graph: dict[str, float]  # model -> paired t-test p against the teacher-graph run's model


def shown_lists(run: Pipeline, depth: int | None = None) -> dict[str, ShownLists]:
    """Each train query's lists as the page would rank them: the run's served BERM-O over the BM25
    top `depth` (the run's BM25 stage, the page's first stage) and that BM25 order, with the grades."""
    top = run.bm25_top()
    online = OnlineReranker.load(run.root / "serving")
    grades = run.catalog.judgments_by_query()
    out = {}
    for q in run.train_q:
        bm25 = list(top.get(q, {}))[:depth or run.profile.bm25_depth]
        if not bm25 or q not in grades:
            continue
        answer = online.rerank(run.texts[q], [Candidate(p, top[q][p], i, run.titles[p]) for i, p in enumerate(bm25, 1)])
        model = [r.product_id for r in sorted(answer.scored, key=lambda r: r.rank)] + list(answer.unscored)
        out[run.texts[q]] = ShownLists(model, bm25, grades[q])
    return out


def write_logs_graph(events: list[dict], run: Pipeline, path: Path) -> int:
    """The position-bias corrected graph of these events (as `shopsearch logs export --graph`), saved
    at `path`; how many train queries it covers."""
    query_ids = {query_key(run.texts[q]): q for q in sorted(run.train_q)}
    counts = position_counts(events)
    graph = graph_from_position_counts(counts, query_ids, estimate_pbm(counts).examination)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph.save(path)
    train = set(run.train_q)
    return len({q for q, _, _ in graph.edges() if q in train})


def graph_ndcg(graph: ClickGraph, grades: dict[str, dict[str, float]]) -> float:
    """Mean NDCG@10 of each graded query's graph neighbors ordered by edge weight (a query without an
    edge scores 0; queries without a positive grade are left out)."""
    scores = []
    for q, graded in sorted(grades.items()):
        order = [p for p, _ in sorted(graph.items_of(q), key=lambda e: (-e[1], e[0]))] if graph.has_query(q) else []
        score = ndcg_at(order, graded, 10)
        if score is not None:
            scores.append(score)
    return sum(scores) / len(scores) if scores else float("nan")


def _evaluate(run: Pipeline, label: str) -> EvalResult:
    rankers = [BM25Ranker(), *run.student_rankers(run.test_q, label)]
    return evaluate_rankers(run.es, run.alias, run.catalog, run.test_q, rankers, side="test",
                            split_id=run.split.split_id, depth=run.profile.bm25_depth)


def run_curve(make_pipeline: Callable[[dict[str, str]], Pipeline], volumes: Sequence[int], model: ClickModel,
              seed: int = 0, interleave_share: float = 0.5, page_size: int = 10, train: bool = True,
              on_point: Callable[[CurvePoint], None] | None = None) -> list[CurvePoint]:
    """The teacher-graph run's point (sessions 0), then one point per volume of simulated sessions
    (ascending). `make_pipeline(overrides)` gives the profile's pipeline with those overrides;
    `on_point` sees each point as it is measured (a trained point costs a BERM and a BERM-O training;
    `train=False`: the graph columns only)."""
    volumes = sorted(set(volumes))
    if not volumes or volumes[0] < 1:
        raise PipelineError("the curve needs one or more volumes of at least 1 session")
    base = make_pipeline({})
    if base.profile.graph_file:
        raise PipelineError("the curve's base run must build its graph from the teacher (no graph_file)")
    base.run(until="berm_o")
    teacher_graph = ClickGraph.load(base.root / "graph.json")
    grades = {q: g for q, g in base.catalog.judgments_by_query().items() if q in set(base.train_q)}
    names = {m: f"{m}, {TEACHER_GRAPH}" for m in MODELS}
    base_result = _evaluate(base, f", {TEACHER_GRAPH}") if train else None
    row = {r.name: r for r in base_result.rows} if train else {}
    first = CurvePoint(0, 0, 0, teacher_graph.num_edges, 0, len(base.train_q), graph_ndcg(teacher_graph, grades),
                       base.root.name, {m: row[names[m]].end_to_end["ndcg@10"] for m in MODELS} if train else {}, {})
    points = [first]
    if on_point:
        on_point(first)
    lists = shown_lists(base)
    if not lists:
        raise PipelineError("no train query of the profile has BM25 candidates and grades to simulate")
    sessions = simulated_events(lists, model, volumes[-1], seed=seed, page_size=page_size,
                                interleave_share=interleave_share)
    folder = base.root.parent / "loop-curve"
    train_q = set(base.train_q)
    for volume in volumes:
        events = [e for session in sessions[:volume] for e in session]
        path = folder / f"{base.root.name}-logs-{model.kind}-s{volume}-seed{seed}.json"
        covered = write_logs_graph(events, base, path)
        logged = ClickGraph.from_edges([e for e in ClickGraph.load(path).edges() if e[0] in train_q])
        merged = with_teacher_edges(logged, teacher_graph)  # the graph the variant's graph stage builds
        ndcg, p_values, folder_name = {}, {}, ""
        if train:
            run = make_pipeline({"graph_file": str(path), "k_order_ablation": "false"})
            run.run(until="berm_o")
            label = f", logs of {volume:,} sessions"
            result = _evaluate(run, label)
            together = dataclasses.replace(base_result, rows=base_result.rows + [
                r for r in result.rows if r.name != BM25Ranker.name])
            tests = paired_tests(together, [], pairs=[(m + label, names[m]) for m in MODELS])
            rows = {r.name: r for r in together.rows}
            ndcg = {m: rows[m + label].end_to_end["ndcg@10"] for m in MODELS}
            p_values = {m: tests[m + label][f"vs {names[m]}"]["e2e ndcg@10"] for m in MODELS}
            folder_name = run.root.name
        point = CurvePoint(volume, sum(e["type"] == "click" for e in events), logged.num_edges, merged.num_edges,
                           covered, len(base.train_q), graph_ndcg(merged, grades), folder_name, ndcg, p_values)
        points.append(point)
        if on_point:
            on_point(point)
    return points
