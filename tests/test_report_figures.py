"""The report's arithmetic on tiny inputs worked out by hand (bootstrap, win / tie / loss, verdicts,
the /compare order), and a report built from a small fixed eval.json read back figure by figure."""

from __future__ import annotations

import json

import pytest

from evaluation.comparison import ComparisonError, bootstrap_ci, differences, verdict, win_tie_loss
from evaluation.html_report import ReportError, RunNotFound, build_report, query_changes, resolve_run
from tests.report_html import assert_report_matches, parse_report

BM25, TEACHER, BERM_O = "BM25 (Elasticsearch)", "teacher cross-encoder (BM25 mix 0.5)", "BERM-O (ONNX)"
# four queries; NDCG@10 and MRR@10 per query, end to end and rerank-judged
NDCG = {BM25: {"q1": 0.5, "q2": 0.2, "q3": 0.6, "q4": 0.0},
        TEACHER: {"q1": 0.7, "q2": 0.2, "q3": 0.7, "q4": 0.1},
        BERM_O: {"q1": 0.6, "q2": 0.2, "q3": 0.3, "q4": 0.0}}
MRR = {BM25: {"q1": 1.0, "q2": 0.5, "q3": 1.0, "q4": 0.0},
       TEACHER: {"q1": 1.0, "q2": 0.5, "q3": 1.0, "q4": 0.25},
       BERM_O: {"q1": 1.0, "q2": 0.5, "q3": 0.5, "q4": 0.0}}


def mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values)


def tiny_eval() -> dict:
    judged = {name: {q: min(1.0, v + 0.1) for q, v in values.items()} for name, values in NDCG.items()}
    per_query = {"queries": {"q1": "cordless drill", "q2": "paint brush", "q3": "claw hammer", "q4": "tool box"},
                 "end_to_end": {n: {"ndcg@10": NDCG[n], "mrr@10": MRR[n]} for n in NDCG},
                 "rerank_judged": {n: {"ndcg@10": judged[n], "mrr@10": MRR[n]} for n in NDCG}}
    rows = [{"name": n, "ms_per_100": ms,
             "end_to_end": {"ndcg@10": mean(NDCG[n]), "mrr@10": mean(MRR[n])},
             "rerank_judged": {"ndcg@10": mean(judged[n]), "mrr@10": mean(MRR[n])}}
            for n, ms in ((BM25, 0.01), (TEACHER, 400.0), (BERM_O, 2.5))]
    p = {"e2e ndcg@10": 0.03, "e2e mrr@10": 0.4, "judged ndcg@10": 0.2}
    return {
        "dataset": "page-shop", "split": {"side": "test", "split_id": "abc123"}, "queries": 4,
        "evaluable_queries": 4, "excluded_queries_without_positive_gain": 0, "depth": 100,
        "end_to_end_ceiling_ndcg@10": 0.9, "rows": rows, "profile": "quick", "data_fingerprint": "f00d",
        "significance_p_values": {BM25: {f"vs {TEACHER}": p}, TEACHER: {f"vs {BM25}": p},
                                  BERM_O: {f"vs {BM25}": {**p, "e2e ndcg@10": 0.5}, f"vs {TEACHER}": p}},
        "speed": {n: {"ms_per_100_first": r["ms_per_100"], "ms_per_100_repeat": r["ms_per_100"] / 2,
                      "teacher_over_model_first": 400.0 / r["ms_per_100"],
                      "teacher_over_model_repeat": 400.0 / r["ms_per_100"]} for n, r in ((r["name"], r) for r in rows)},
        "per_query": per_query,
    }


def write_run(folder, data: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval.json").write_text(json.dumps(data))
    (folder / "stages.json").write_text(json.dumps({"bm25": {"seconds": 5.9}, "teacher": {"seconds": 70.3}}))
    (folder / "serving").mkdir(exist_ok=True)
    (folder / "serving" / "manifest.json").write_text(json.dumps({"model_version": "berm-o-1", "artifact_id": "a1"}))
    return folder


def test_bootstrap_of_equal_values_is_that_value() -> None:
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_bootstrap_of_two_queries_spans_both() -> None:
    # resampled means of [0, 1] are 0, 1/2 or 1 with chances 1/4, 1/2, 1/4: the 2.5% and 97.5% points are 0 and 1
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    assert bootstrap_ci([0.0, 1.0], level=0.4) == (0.5, 0.5)  # the middle 40% is all 1/2


def test_bootstrap_is_seeded_and_checks_its_input() -> None:
    values = [0.1, 0.9, 0.3, 0.35, 0.8, 0.0, 0.45]
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    low, high = bootstrap_ci(values)
    assert low < sum(values) / len(values) < high
    with pytest.raises(ComparisonError, match="^no per-query values to bootstrap$"):
        bootstrap_ci([])
    with pytest.raises(ComparisonError, match="^confidence level must be between 0 and 1, not 95$"):
        bootstrap_ci(values, level=95)


def test_win_tie_loss_counts_each_query_once() -> None:
    # q1 +0.1 win, q2 tie, q3 -0.3 loss, q4 tie
    wtl = win_tie_loss(NDCG[BERM_O], NDCG[BM25])
    assert (wtl.wins, wtl.ties, wtl.losses, wtl.queries) == (1, 2, 1, 4)
    wtl = win_tie_loss(NDCG[TEACHER], NDCG[BM25])
    assert (wtl.wins, wtl.ties, wtl.losses) == (3, 1, 0)
    assert differences(NDCG[BERM_O], NDCG[BM25]) == pytest.approx({"q1": 0.1, "q2": 0.0, "q3": -0.3, "q4": 0.0})
    with pytest.raises(ComparisonError, match=r"^the two rankers were scored on different queries \(e.g. 'q9'\)$"):
        win_tie_loss({**NDCG[BM25], "q9": 1.0}, NDCG[BM25])


def test_verdict_words() -> None:
    assert verdict(0.01, 0.1) == "better (p = 0.01)"
    assert verdict(0.001, -0.1) == "worse (p = 0.001)"
    assert verdict(0.2, -0.1) == "no significant difference (p = 0.2)"
    assert verdict(None, 0.3) == "not tested"


def test_compare_order_puts_gains_first_and_losses_last() -> None:
    changes = query_changes(tiny_eval())  # the served model, BERM-O, against BM25
    assert [c.query_id for c in changes] == ["q1", "q2", "q4", "q3"]
    assert [c.text for c in changes][-1] == "claw hammer"
    assert changes[0].change == pytest.approx(0.1) and changes[-1].change == pytest.approx(-0.3)
    with pytest.raises(ReportError, match="^no ranker named 'nope' in this run; rankers: BM25"):
        query_changes(tiny_eval(), ranker="nope")


def test_report_of_a_fixed_eval_shows_its_figures(tmp_path) -> None:
    data = tiny_eval()
    run = write_run(tmp_path / "page-shop-quick", data)
    path = build_report(run)
    assert path == run / "report.html"
    text = path.read_text()
    assert_report_matches(text, data)
    report = parse_report(text)
    counts = next(c for c in report.cells if c.get("ranker") == BERM_O and c.get("setting") == "end_to_end"
                  and "wins" in c)
    assert (counts["wins"], counts["ties"], counts["losses"]) == ("1", "2", "1")
    verdicts = {c["versus"]: c["_text"] for c in report.cells if c.get("ranker") == TEACHER
                and c.get("test") == "e2e ndcg@10"}
    assert verdicts == {BM25: "better (p = 0.03)"}
    assert "berm-o-1, artifact a1" in text


def test_missing_runs_and_old_eval_files_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(RunNotFound, match=f"^no evaluated pipeline run under {tmp_path}; run `shopsearch pipeline"):
        resolve_run(None, tmp_path)
    with pytest.raises(RunNotFound, match="^no eval.json in nope "):
        resolve_run("nope", tmp_path)
    old = tiny_eval()
    del old["per_query"]
    write_run(tmp_path / "old", old)
    assert resolve_run(None, tmp_path) == tmp_path / "old" == resolve_run("old", tmp_path)
    with pytest.raises(ReportError, match="has no per-query values"):
        build_report(tmp_path / "old")


def test_report_command_prints_one_line_with_the_path(tmp_path) -> None:
    from tests.test_cli import assert_one_line_error, shopsearch

    env = {"SHOPSEARCH_ARTIFACTS_DIR": str(tmp_path / "artifacts")}
    done = shopsearch("report", env=env)
    assert_one_line_error(done, f"no evaluated pipeline run under {tmp_path / 'artifacts' / 'pipeline'}; "
                                "run `shopsearch pipeline --profile quick` first")
    run = write_run(tmp_path / "artifacts" / "pipeline" / "page-shop-quick", tiny_eval())
    done = shopsearch("report", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"report: {run / 'report.html'}"]
    done = shopsearch("report", "page-shop-quick", "--out", str(tmp_path / "r.html"), env=env)
    assert done.stdout.splitlines() == [f"report: {tmp_path / 'r.html'}"]
    assert_report_matches((tmp_path / "r.html").read_text(), tiny_eval())
