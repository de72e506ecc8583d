"""The whole distillation pipeline, small but real: Home Depot, quick profile, a real node.

One run (module fixture, ~15 minutes on 2 cores): teacher fine-tune, labeling, graph, FAISS, BERM,
its ablation, BERM-O, ONNX export and evaluation. The tests check that learning happened and that
the artifacts keep the data rules, not particular figures.
"""

from __future__ import annotations

import json

import pytest

from indexer.bulk_index import index_catalog
from indexer.graph import ClickGraph
from indexer.readers import load_catalog
from indexer.splits import split_queries
from common.artifacts import model_manifest
from reranker.training import checks
from reranker.training.pipeline import Pipeline
from reranker.training.profiles import PROFILES
from searchstack.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(es, home_depot_path, tmp_path_factory):
    settings = Settings()
    catalog = load_catalog("home-depot", home_depot_path)
    split = split_queries(catalog, settings.split_seed, settings.split_dev_fraction, settings.split_test_fraction)
    alias = "test-pipeline"
    index_catalog(es, catalog, alias, chunk_size=settings.bulk_chunk_size)
    pipeline = Pipeline(catalog, split, es, alias, PROFILES["quick"], tmp_path_factory.mktemp("pipeline"))
    pipeline.run()
    yield pipeline
    for index in es.indices.get(index=f"{alias}-*", allow_no_indices=True):
        es.indices.delete(index=index)


def manifest(run, name: str) -> dict:
    return model_manifest(run.root / name)


def test_the_deployed_teacher_mix_is_the_best_of_its_dev_grid(run):
    m = manifest(run, "teacher")
    grid = m["dev_ndcg@10_by_mix"]
    config = json.loads((run.root / "teacher" / "teacher_config.json").read_text())
    chosen = grid[f"bm25 {config['bm25_mix']}, cosine {config['cosine_mix']}"]
    assert chosen == max(grid.values())
    assert chosen >= grid["bm25 0.0, cosine 0.0"]  # mixing never loses to the cross-encoder alone on dev


def test_teacher_learned_on_held_out_pairs(run):
    m = manifest(run, "teacher")
    assert m["dev_clear_pair_acc"] > m["dev_clear_pair_acc_untrained"] + 0.02
    # chance is 0.5; untrained heads drew 0.42 to 0.55, trained teachers 0.589 to 0.616 (four heads)
    assert m["dev_clear_pair_acc"] > 0.57
    assert m["split_id"] == run.split.split_id and m["data_fingerprint"] == run.catalog.fingerprint()


def test_graph_holds_train_queries_only_and_folds_are_disjoint(run):
    graph = ClickGraph.load(run.root / "graph.json")
    assert set(graph.queries) <= set(run.train_q)
    assert not set(graph.queries) & (set(run.split.dev) | set(run.split.test))
    folds = [set(ClickGraph.load(run.root / f"graph_fold{f}.json").queries) for f in (0, 1)]
    assert folds[0] and folds[1] and not folds[0] & folds[1]
    assert folds[0] | folds[1] == set(graph.queries)


@pytest.mark.parametrize("student", ["berm", "berm_no_k_order", "berm_o"])
def test_students_agree_with_the_teacher_on_dev(run, student):
    # mean per-query Spearman with the deployed teacher over dev's BM25 top-100 (never trained on)
    assert manifest(run, student)["dev_spearman_with_teacher"] > 0.3


@pytest.mark.parametrize("student", ["berm", "berm_no_k_order", "berm_o"])
def test_students_start_linear_and_keep_their_best_dev_epoch(run, student):
    m = manifest(run, student)
    assert len(m["linear_start"]) == 3 and m["linear_start"][0] > 0  # BM25, zero-shot and tuned cosine
    by_epoch = m["dev_ndcg@10_by_epoch"]  # the start (epoch 0), then each epoch
    assert len(by_epoch) == run.profile.student_epochs + 1
    assert by_epoch[m["epoch_kept"]] == max(by_epoch)


def test_onnx_artifact_matches_torch(run):
    m = manifest(run, "serving")
    assert m["onnx_vs_torch_max_abs_diff"] < 1e-2
    assert m["split_id"] == run.split.split_id


def test_evaluation_has_every_row_and_the_teacher_beats_the_zero_shot_reference(run):
    result = json.loads((run.root / "eval.json").read_text())
    rows = {row["name"]: row for row in result["rows"]}
    assert len(rows) == 7 and "BERM-O (ONNX)" in rows and "BERM without k-order" in rows
    assert "bi-encoder cosine (teacher-tuned query)" in rows
    teacher = next(name for name in rows if name.startswith("teacher"))
    assert rows[teacher]["end_to_end"]["ndcg@10"] > rows["bi-encoder cosine (zero-shot)"]["end_to_end"]["ndcg@10"]
    assert rows[teacher]["rerank_judged"]["clear-pair acc"] > 0.55
    for name, row in rows.items():
        assert row["ms_per_100"] > 0, name
        assert set(result["significance_p_values"][name]) <= {f"vs {r}" for r in rows}


def test_distillation_set_holds_the_bm25_top_100_and_title_pseudo_queries(run):
    from reranker.training.labeling import LabeledPairs
    from reranker.training.pseudo_queries import PREFIX

    labels = LabeledPairs.load(run.root / "train_labels.npz").by_query()
    top = run.bm25_top()
    for q in run.train_q[:20]:
        assert set(list(top[q])[: run.profile.label_k]) <= set(labels[q])  # ranks 51-100 are labeled too
    pseudo = json.loads((run.root / "pseudo_queries.json").read_text())
    assert len(pseudo) > run.profile.pseudo_queries // 2
    assert all(q.startswith(PREFIX) and q in labels for q in pseudo)
    assert not set(pseudo) & (set(run.split.dev) | set(run.split.test))


def test_unlabeled_queries_are_train_queries_outside_the_teacher_and_the_students_grades(run):
    from reranker.training.labeling import LabeledPairs

    unlabeled = json.loads((run.root / "unlabeled_queries.json").read_text())
    assert len(unlabeled) > run.profile.unlabeled_queries // 2
    assert set(unlabeled) <= set(run.split.train)
    assert not set(unlabeled) & (set(run.teacher_q) | set(run.train_q))
    labels = LabeledPairs.load(run.root / "train_labels.npz").by_query()
    assert all(q in labels and len(labels[q]) <= run.profile.unlabeled_k for q in unlabeled)


def test_the_query_encoder_is_early_stopped_on_dev_and_served(run):
    m = json.loads((run.root / "query_encoder" / "query_encoder_manifest.json").read_text())
    # dev KL to the teacher: index 0 is the zero-shot encoder; the kept epoch is the best one
    assert m["dev_history"][m["best_epoch"]] == min(m["dev_history"])
    assert m["best_epoch"] > 0 and min(m["dev_history"]) < m["dev_history"][0]
    serving = manifest(run, "serving")
    assert serving["use_tuned_query"] is True
    assert (run.root / "serving" / "query_encoder" / "text_encoder.onnx").is_file()


def test_the_dev_check_judges_every_model_against_bm25_and_the_bi_encoder(run):
    check = manifest(run, "serving")["dev_check"]
    assert check == json.loads((run.root / "dev_check.json").read_text())
    assert set(check["models"]) >= {"BERM", "BERM-O (ONNX)"} and not {"BM25 (Elasticsearch)"} & set(check["models"])
    for name, row in check["models"].items():
        assert set(row["vs"]) == {"BM25 (Elasticsearch)", "bi-encoder cosine (zero-shot)"}, name
        for ref, comparison in row["vs"].items():
            expected = row["ndcg@10"] - check["references"][ref]
            assert comparison["delta"] == pytest.approx(expected, abs=1e-9)
            assert comparison["verdict"] in ("better", "not significantly better", "worse")


def test_the_upgrade_scores_a_served_artifact_on_this_runs_dev_queries(run):
    # `shopsearch upgrade` compares the served model and the run's on the run's dev queries; against
    # itself that is the dev check's own figure for the served model, on every dev query
    check = manifest(run, "serving")["dev_check"]
    ours, theirs, _, queries = checks.dev_head_to_head(run, run.layout.serving)
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert ours == pytest.approx(check["models"]["BERM-O (ONNX)"]["ndcg@10"], abs=1e-9)
    assert queries == len(run.dev_q) > 0


def test_the_served_student_beats_the_zero_shot_bi_encoder_and_keeps_level_with_bm25(run):
    # Measured on the quick profile: stop 18 (300 teacher queries x 3 epochs, no query encoder)
    # BERM-O 0.3818, BM25 0.3778, bi-encoder 0.3271 end-to-end NDCG@10, teacher 0.3888; stop 19
    # (1,200 x 1, the tuned query encoder, MiniLM words, unlabeled queries) BERM-O 0.3785, teacher
    # 0.3961. The student is level with BM25 on these 200 test queries, so these margins hold with
    # seed noise and fail a student that stops learning from the teacher.
    result = json.loads((run.root / "eval.json").read_text())
    rows = {row["name"]: row["end_to_end"]["ndcg@10"] for row in result["rows"]}
    student = rows["BERM-O (ONNX)"]
    assert student > rows["bi-encoder cosine (zero-shot)"] + 0.02
    assert student > rows["BM25 (Elasticsearch)"] - 0.02


def test_report_builds_from_the_run_and_shows_the_json_figures(run):
    from evaluation.html_report import build_report
    from tests.report_html import assert_report_matches

    path = run.root / "report.html"
    assert build_report(run.root) == path
    assert_report_matches(path.read_text(), json.loads((run.root / "eval.json").read_text()))
