"""Profile overrides (`pipeline --set`), run folders, stage digests and the dev-check verdicts."""

from __future__ import annotations

import math

import pytest

from reranker.training.errors import PipelineError
from reranker.training.profiles import PROFILES, STAGE_SETTINGS, STAGES, run_name, with_overrides
from reranker.training.verdicts import BI_ENCODER, BM25, SERVED, dev_verdicts, verdict


def test_overrides_are_parsed_as_their_field_types() -> None:
    profile = with_overrides(PROFILES["quick"], {"use_cosine": "false", "label_k": "50", "listwise_temperature": "2.5",
                                                 "mix_grid": "0,0.5", "teacher_from": "/x/teacher", "dev_queries": "none"})
    assert profile.use_cosine is False and profile.label_k == 50 and profile.listwise_temperature == 2.5
    assert profile.mix_grid == (0.0, 0.5) and profile.teacher_from == "/x/teacher" and profile.dev_queries is None
    assert PROFILES["quick"].use_cosine is True  # the registered profile is untouched


def test_teacher_overrides_set_the_teachers_training_config() -> None:
    registered = PROFILES["quick"].teacher.epochs
    profile = with_overrides(PROFILES["quick"], {"teacher.epochs": str(registered + 2), "teacher.lr": "5e-5"})
    assert profile.teacher.epochs == registered + 2 and profile.teacher.lr == 5e-5
    assert profile.teacher.max_queries == PROFILES["quick"].teacher.max_queries  # the rest is the profile's
    assert PROFILES["quick"].teacher.epochs == registered


@pytest.mark.parametrize("overrides, message", [
    ({"no_such_setting": "1"}, "unknown pipeline setting 'no_such_setting'"),
    ({"label_k": "many"}, "label_k='many'"),
    ({"use_cosine": "maybe"}, "use_cosine='maybe'"),
    ({"teacher.epochs": "two"}, "teacher.epochs='two'"),
    ({"teacher.no_such": "1"}, "unknown pipeline setting 'teacher.no_such'"),
])
def test_bad_overrides_fail_with_one_clear_reason(overrides, message) -> None:
    with pytest.raises(PipelineError, match=message):
        with_overrides(PROFILES["quick"], overrides)


def test_a_variant_run_has_its_own_folder_name() -> None:
    assert run_name(PROFILES["quick"], {}) == "quick"
    assert run_name(PROFILES["quick"], {"use_cosine": "false", "label_k": "50"}) == "quick+label_k=50+use_cosine=false"
    # a path names its run by the file (a graph) or its run folder (a teacher), never with slashes
    assert run_name(PROFILES["small-shop"], {"graph_file": "/x/logs/graph-s1000.json"}) == "small-shop+graph_file=graph-s1000"
    assert run_name(PROFILES["small-shop"], {"graph_file": "none"}) == "small-shop+graph_file=none"
    assert (run_name(PROFILES["small-shop"], {"teacher_from": "/a/home-depot-quick/teacher"})
            == "small-shop+teacher_from=home-depot-quick")


def test_later_stage_settings_enter_at_existing_stages_only() -> None:
    assert set(STAGE_SETTINGS) <= set(STAGES)
    fields = set(PROFILES["quick"].__dataclass_fields__)
    assert all(key in fields for keys in STAGE_SETTINGS.values() for key in keys)


def test_verdicts_need_a_higher_mean_and_a_significant_paired_test() -> None:
    assert verdict(0.02, 0.01) == "better"
    assert verdict(0.02, 0.2) == "not significantly better"
    assert verdict(-0.01, 0.01) == "worse" and verdict(0.0, 0.5) == "worse"


def test_dev_check_says_plainly_which_model_is_not_better() -> None:
    ndcg = {BM25: 0.30, BI_ENCODER: 0.28, "BERM": 0.33, SERVED: 0.29}
    tests = {"BERM": {f"vs {BM25}": {"e2e ndcg@10": 0.01}, f"vs {BI_ENCODER}": {"e2e ndcg@10": 0.001}},
             SERVED: {f"vs {BM25}": {"e2e ndcg@10": 0.6}, f"vs {BI_ENCODER}": {"e2e ndcg@10": 0.04}}}
    check = dev_verdicts(ndcg, tests)
    assert check["models"]["BERM"]["vs"][BM25] == {"delta": pytest.approx(0.03), "p": 0.01, "verdict": "better"}
    assert check["models"][SERVED]["vs"][BM25]["verdict"] == "worse"
    assert check["models"][SERVED]["vs"][BI_ENCODER]["verdict"] == "better"
    assert check["served_is_better"] is False
    assert check["warnings"] == [f"{SERVED} is worse than BM25 on dev (NDCG@10 0.2900 vs 0.3000, p = 0.6)"]
    assert set(check["models"]) == {"BERM", SERVED}  # the references are not judged against themselves


def test_dev_check_without_p_values_is_not_called_better() -> None:
    check = dev_verdicts({BM25: 0.3, SERVED: 0.4}, {})
    assert math.isnan(check["models"][SERVED]["vs"][BM25]["p"])
    assert check["models"][SERVED]["vs"][BM25]["verdict"] == "not significantly better"
    assert check["served_is_better"] is False


def _catalog_with_queries(n: int):
    from indexer.records import Catalog, Judgment, Product, Query

    catalog = Catalog(name="many-queries")
    catalog.products = {"p": Product("p", "a product")}
    catalog.queries = {f"q{i}": Query(f"q{i}", f"query {i}") for i in range(n)}
    catalog.judgments = [Judgment(f"q{i}", "p", 1.0) for i in range(n)]
    return catalog


@pytest.mark.parametrize("teacher_queries, expected", [(None, 40), (20, 40), (60, 60)])
def test_the_teacher_learns_from_the_students_queries_and_more_when_asked(tmp_path, teacher_queries, expected) -> None:
    import dataclasses

    from indexer.splits import QuerySplit
    from reranker.training.pipeline import Pipeline

    catalog = _catalog_with_queries(120)
    ids = sorted(catalog.queries)
    split = QuerySplit("s", catalog.name, "f", 13, 0.1, 0.1, ids[:100], ids[100:110], ids[110:])
    profile = dataclasses.replace(with_overrides(PROFILES["quick"], {"train_queries": "40"}),
                                  teacher=dataclasses.replace(PROFILES["quick"].teacher, max_queries=teacher_queries))
    run = Pipeline(catalog, split, None, "products", profile, tmp_path)
    assert set(run.train_q) <= set(run.teacher_q) <= set(split.train)
    assert len(run.teacher_q) == expected


def test_the_graph_takes_the_logged_pairs_and_keeps_the_teachers_elsewhere_and_says_so(tmp_path) -> None:
    import json

    import numpy as np

    from indexer.graph import ClickGraph
    from indexer.records import Product
    from indexer.splits import QuerySplit
    from reranker.training.labeling import LabeledPairs
    from reranker.training.pipeline import Pipeline

    catalog = _catalog_with_queries(12)
    for p in ("a", "b"):
        catalog.products[p] = Product(p, f"thing {p}")
    ids = sorted(catalog.queries)
    split = QuerySplit("s", catalog.name, "f", 13, 0.1, 0.1, ids[:10], ids[10:11], ids[11:])
    # an exported logs graph: a train query's pair the teacher also scored, another train query's
    # new pair, and a test query (never a graph node)
    logged = ClickGraph.from_edges([("q0", "p", 0.25), ("q1", "a", 0.9), (ids[11], "b", 0.7)])
    logged.save(tmp_path / "logs_graph.json")
    profile = with_overrides(PROFILES["quick"], {"graph_file": str(tmp_path / "logs_graph.json")})
    run = Pipeline(catalog, split, None, "products", profile, tmp_path / "runs")
    n = len(run.train_q)
    LabeledPairs(np.array(run.train_q), np.array(["p"] * n), np.ones(n, np.float32), np.full(n, 3.0, np.float32),
                 np.zeros(n, np.float32)).save(run.root / "train_labels.npz")
    run.graph()
    edges = {(q, p): w for q, p, w in ClickGraph.load(run.root / "graph.json").edges()}
    assert edges[("q0", "p")] == 0.25  # the log's weight, not the teacher's sigmoid(3) = 0.95
    assert edges[("q1", "a")] == 0.9
    assert edges[("q2", "p")] == pytest.approx(0.9526, abs=1e-4)  # the teacher's, where the logs are silent
    assert not any(q == ids[11] for q, _ in edges)
    source = json.loads((run.root / "graph_source.json").read_text())
    assert source["built_from"].startswith("teacher-scored impressions + logs export")
    assert source["edges_from_logs"] == 2 and source["edges"] == len(edges)
