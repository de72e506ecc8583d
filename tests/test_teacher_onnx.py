"""The teacher through ONNX Runtime: the fp32 graph answers as torch does, in input order; int8 ranks
as fp32 does; the guard keeps int8 only when dev says it may, and the teacher folder remembers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import spearmanr

from reranker.models.teacher import Teacher
from reranker.models.teacher_onnx import CHOICE_FILE, OnnxTeacher, TeacherOnnxError, chosen_precision
from reranker.training.export import HEAD_NODES, export_teacher
from reranker.training.int8_guard import GuardThresholds, compare, decide, guard_teacher, write_choice
from reranker.training.labeling import LabeledPairs
from tests.test_teacher_predict import TITLES

MORE_TITLES = [*TITLES, "cordless impact driver kit", "white vanity 36 inch with marble top",
               "black ceiling fan with light", "garden hose 50 ft", "led light bulb 60 watt equivalent daylight",
               "claw hammer 16 oz fiberglass handle", "interior latex paint eggshell white 1 gal",
               "copper pipe fitting 1/2 in", "wood screws #8 x 2 in (100-pack)"]
QUERIES = ["cordless drill", "white vanity", "ceiling fan", "paint"]
THRESHOLDS = GuardThresholds(max_ndcg_drop=0.003, min_spearman=0.97)
ATTENTION: dict[str, str] = {}  # the torch model's attention implementation before the export


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Teacher, object]:
    """An untrained teacher (seeded head) saved with its fp32 and int8 graphs."""
    teacher = Teacher.from_base(seed=0)
    folder = tmp_path_factory.mktemp("teacher")
    teacher.save(folder)
    ATTENTION["before export"] = teacher.model.config._attn_implementation
    export_teacher(teacher, folder)
    return teacher, folder


def test_fp32_graph_answers_as_torch_in_input_order(exported) -> None:
    teacher, folder = exported
    onnx = OnnxTeacher.load(folder, "fp32")
    # a batch of 2 over pairs whose lengths zig-zag: sorting moves every pair
    onnx.config = teacher.config = dataclasses.replace(teacher.config, batch_size=2)
    queries = ["drill"] * len(TITLES)
    got, want = onnx.predict(queries, TITLES), teacher.predict(queries, TITLES)
    assert got.dtype == np.float32 and got.shape == (len(TITLES),)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert len(set(np.round(want, 4))) == len(TITLES)  # distinct scores, so a shuffled answer would show


def _op_types(path) -> dict[str, str]:
    import onnx

    return {node.name: node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}


def test_fp32_graph_is_fused_and_the_torch_model_keeps_its_attention(exported) -> None:
    teacher, folder = exported
    ops = list(_op_types(folder / "teacher.fp32.onnx").values())
    # one fused Attention per layer (the unfused trace runs ~50 small ops a layer)
    assert ops.count("Attention") == teacher.model.config.num_hidden_layers
    assert "EmbedLayerNormalization" in ops and "SkipLayerNormalization" in ops
    assert teacher.model.config._attn_implementation == ATTENTION["before export"]  # traced eager, then put back
    assert not (folder / "teacher.traced.onnx").exists()


def test_int8_graph_quantises_the_layers_and_keeps_the_head_in_fp32(exported) -> None:
    teacher, folder = exported
    ops = _op_types(folder / "teacher.int8.onnx")
    assert list(ops.values()).count("QAttention") == teacher.model.config.num_hidden_layers
    assert "MatMulInteger" in ops.values() and "Attention" not in ops.values()
    quantised = [name for name, op in ops.items() if op == "MatMulInteger"]
    assert len(HEAD_NODES) == 2 and not [name for name in quantised if "pooler" in name or "classifier" in name]


def test_int8_graph_ranks_pairs_as_fp32_does(exported) -> None:
    _, folder = exported
    queries = [q for q in QUERIES for _ in MORE_TITLES]
    titles = MORE_TITLES * len(QUERIES)
    fp32 = OnnxTeacher.load(folder, "fp32").predict(queries, titles)
    int8 = OnnxTeacher.load(folder, "int8").predict(queries, titles)
    # 0.988 for this seeded head (its logits spread only 0.02: the hard case); a collapse is far lower
    assert spearmanr(fp32, int8).statistic >= 0.95
    assert 0 < np.abs(fp32 - int8).max() < 0.1  # quantised, and not far off


def test_no_pairs_no_scores(exported) -> None:
    _, folder = exported
    scores = OnnxTeacher.load(folder, "int8").predict([], [])
    assert scores.dtype == np.float32 and scores.shape == (0,)


def test_the_guard_decides_on_both_figures() -> None:
    assert decide(0.400, 0.399, [0.99, 0.98], THRESHOLDS)[0] == "int8"
    assert decide(0.400, 0.410, [0.99, 0.98], THRESHOLDS)[0] == "int8"  # int8 better on dev: fine
    chosen, reason = decide(0.400, 0.396, [0.99, 0.98], THRESHOLDS)
    assert chosen == "fp32" and "0.0040 dev NDCG@10" in reason
    chosen, reason = decide(0.400, 0.400, [0.99, 0.90], THRESHOLDS)
    assert chosen == "fp32" and "Spearman with fp32 is 0.9450" in reason
    assert decide(0.400, 0.400, [], THRESHOLDS)[0] == "fp32"
    assert decide(float("nan"), 0.4, [1.0], THRESHOLDS)[0] == "fp32"


def _by_query(logits: dict[str, list[float]]) -> dict[str, dict[str, tuple[float, float, float]]]:
    """(bm25, logit, cosine) per product: BM25 and cosine flat, so the logits alone rank."""
    return {q: {f"{q}-p{i}": (1.0, float(x), 0.5) for i, x in enumerate(values)} for q, values in logits.items()}


def test_the_guard_keeps_int8_only_where_it_ranks_dev_as_fp32() -> None:
    fp32 = {"a": [3.0, 2.0, 1.0, 0.0], "b": [0.1, 0.4, 0.2, 0.3]}
    grades = {q: {f"{q}-p{i}": float(g) for i, g in enumerate(gains)} for q, gains in
              {"a": [2, 1, 0, 0], "b": [0, 2, 0, 1]}.items()}
    close = {"a": [3.01, 1.98, 1.0, 0.02], "b": [0.11, 0.41, 0.19, 0.3]}  # small shifts, same order
    kept = compare(grades, _by_query(fp32), _by_query(close), 0.0, 0.0, THRESHOLDS)
    assert kept.chosen == "int8" and kept.ndcg_fp32 == pytest.approx(1.0) and kept.ndcg_int8 == pytest.approx(1.0)
    assert kept.spearman_mean == pytest.approx(1.0) and kept.queries == 2
    assert kept.max_logit_shift == pytest.approx(0.02, abs=1e-6)
    collapsed = {"a": [0.0, 1.0, 2.0, 3.0], "b": [0.3, 0.1, 0.4, 0.2]}
    refused = compare(grades, _by_query(fp32), _by_query(collapsed), 0.0, 0.0, THRESHOLDS)
    assert refused.chosen == "fp32" and refused.ndcg_int8 < refused.ndcg_fp32 - 0.003


def test_the_teacher_folder_remembers_the_guards_choice(exported) -> None:
    _, folder = exported
    (folder / CHOICE_FILE).unlink(missing_ok=True)
    with pytest.raises(TeacherOnnxError, match="teacher_mix stage writes it"):
        OnnxTeacher.load(folder)
    by_query = _by_query({"a": [1.0, 0.0]})
    for wanted, shift in (("int8", 0.0), ("fp32", 5.0)):
        other = _by_query({"a": [1.0 - shift, 0.0 + shift]})
        report = compare({"a": {"a-p0": 1.0, "a-p1": 0.0}}, by_query, other, 0.0, 0.0, THRESHOLDS)
        write_choice(folder, report)
        loaded = OnnxTeacher.load(folder)
        assert loaded.precision == wanted and loaded.config == Teacher.load_config(folder) and wanted in loaded.name


def test_teacher_mix_keeps_the_chosen_graphs_dev_labels(exported) -> None:
    _, folder = exported
    texts = {f"q{i}": q for i, q in enumerate(QUERIES)}
    titles = {f"p{i}": t for i, t in enumerate(MORE_TITLES)}
    pairs = [(q, p) for q in texts for p in titles]
    fp32 = OnnxTeacher.load(folder, "fp32").predict([texts[q] for q, _ in pairs], [titles[p] for _, p in pairs])
    n = len(pairs)
    dev = LabeledPairs(np.array([q for q, _ in pairs]), np.array([p for _, p in pairs]), np.ones(n, np.float32), fp32,
                       np.full(n, 0.5, np.float32))
    # grades as the fp32 graph ranks, so NDCG@10 is 1 for fp32 and int8 may lose a little
    grades = {q: {p: float(rank < 3) for rank, p in enumerate(sorted(titles, key=lambda p: -fp32[pairs.index((q, p))]))}
              for q in texts}
    loose = GuardThresholds(max_ndcg_drop=0.5, min_spearman=0.5)
    kept, report = guard_teacher(folder, dev, texts, titles, grades, (0.0, 0.0), loose)
    assert report.chosen == "int8" and chosen_precision(folder) == "int8"
    assert report.ndcg_fp32 == pytest.approx(1.0) and report.queries == len(QUERIES)
    int8 = OnnxTeacher.load(folder, "int8").predict([texts[q] for q, _ in pairs], [titles[p] for _, p in pairs])
    np.testing.assert_array_equal(kept.teacher, int8)  # the chosen graph's logits, pair for pair
    impossible = GuardThresholds(max_ndcg_drop=0.5, min_spearman=1.01)
    kept, report = guard_teacher(folder, dev, texts, titles, grades, (0.0, 0.0), impossible)
    assert report.chosen == "fp32" and chosen_precision(folder) == "fp32" and kept is dev
