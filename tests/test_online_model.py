"""BERM-O as served: the artifact folder, the ONNX path against the torch path, unknown items, bad artifacts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from indexer.embeddings import embed, load_bi_encoder
from indexer.faiss_store import VectorStore
from indexer.graph import ClickGraph
from indexer.records import Product
from reranker.graph.context import ContextBuilder
from reranker.graph.neighbors import NeighborSampler
from reranker.models.berm_o import BermO
from common.results import Candidate
from reranker.serving import ArtifactError
from reranker.serving.online import OnlineReranker
from reranker.serving.text_encoder import TextEncoder
from reranker.text import Vocab
from tests.tiny_artifact import build_tiny_artifact

TITLES = {
    "p1": "cordless drill 18 volt with battery", "p2": "hammer drill bit set 10 piece",
    "p3": "garden hose 50 ft heavy duty", "p4": "copper pipe fitting 1/2 in",
    "p5": "led light bulb 60 watt soft white", "p6": "ceiling fan with led light kit",
    "p7": "wood screws box of 100", "p8": "drywall screws coarse thread",
    "p9": "paint roller 9 in cover", "p10": "interior paint white eggshell gallon",
}
QUERIES = ["cordless drill", "drill bits", "garden hose", "led bulb", "ceiling fan", "wood screws", "white paint"]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return build_tiny_artifact(tmp_path_factory.mktemp("art") / "serving", TITLES, QUERIES, seed=3)


@pytest.fixture(scope="module")
def online(artifact):
    model = OnlineReranker.load(artifact)
    model.warm_up()
    return model


def candidates(ids=None):
    ids = ids or list(TITLES)
    return [Candidate(pid, float(len(ids) - i), i + 1) for i, pid in enumerate(ids)]


def test_artifact_records_its_versions(artifact, online):
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["model_version"] == "berm-o-2" and manifest["items"] == len(TITLES)
    assert online.version == f"berm-o-2+{manifest['artifact_id']}"


def test_the_artifacts_check_sees_it_whole_before_the_swap_and_its_fields_join_the_manifest(tmp_path):
    from common.artifacts import ServingManifest

    seen = []

    def check(built):
        seen.append((built.name, OnlineReranker.load(built).version, (tmp_path / "serving").exists()))
        return {"onnx_vs_torch_max_abs_diff": 0.25}

    folder = build_tiny_artifact(tmp_path / "serving", TITLES, QUERIES, seed=3, check=check)
    manifest = ServingManifest.read(folder)
    assert seen == [("serving.building", manifest.version, False)]
    assert manifest.onnx_vs_torch_max_abs_diff == 0.25 and manifest.profile == "tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["serving"]


def test_one_score_per_candidate_in_input_order_and_parts_add_up(online):
    out = online.rerank("cordless drill", candidates(), explain=True)
    assert [s.product_id for s in out.scored] == list(TITLES) and out.unscored == []
    for s in out.scored:
        e = s.explanation
        assert s.score == pytest.approx(e.zero_order + e.k_order + e.bm25_part, abs=1e-5)
        assert e.neighbors and {n.path for n in e.neighbors} <= {"Q-I", "Q-I-Q", "I-Q", "I-Q-I"}
    assert len({round(s.score, 6) for s in out.scored}) > 1  # the scores depend on the item
    assert set(out.timings_ms) == {"query_context", "item_lookup", "onnx"}


def test_onnx_path_matches_the_torch_path(artifact, online):
    """The served scores equal BERM-O's torch forward with contexts built on the fly."""
    torch_model = BermO.load(artifact)
    sampler = NeighborSampler(ClickGraph.load(artifact / "graph.json"), per_path=5, seed=3)
    builder = ContextBuilder(sampler, Vocab.load(artifact / "vocab.json"), VectorStore.load(artifact, "query_store"),
                             VectorStore.load(artifact, "item_store"),
                             {p: Product(p, t) for p, t in TITLES.items()}, load_bi_encoder())
    for query in ("garden hose", "cordless screwdriver"):  # a logged query and an unseen one
        query_id = query if query in QUERIES else None
        ids = list(TITLES)
        bm25 = [float(len(ids) - i) for i in range(len(ids))]
        with torch.inference_mode():
            expected = torch_model(builder.build(query, query_id, ids, bm25))["score"].numpy()
        served = np.array([s.score for s in online.rerank(query, candidates(ids)).scored])
        np.testing.assert_allclose(served, expected, atol=2e-3)  # item contexts are stored as float16


def test_served_text_vectors_are_the_bi_encoders(artifact):
    texts = ["cordless drill", "Behr Premium Plus 1 gal. #ECC-10-2 Ultra-Pure White Flat", "café " * 300]  # > 256 tokens
    texts += [" ".join(TITLES[p] for p in list(TITLES)[: 1 + n % 5]) for n in range(17)]  # several groups, mixed lengths
    served = TextEncoder(artifact).encode(texts)
    np.testing.assert_allclose(served, embed(load_bi_encoder(), texts, progress=False), atol=1e-5)
    assert TextEncoder(artifact).encode([]).shape == (0, served.shape[1])


def test_unknown_items_with_text_are_scored_and_without_text_reported(online):
    batch = candidates(["p1", "p2"]) + [Candidate("new", 0.5, 3, "cordless drill kit"), Candidate("ghost", 0.1, 4)]
    out = online.rerank("cordless drill", batch, explain=True)
    assert [s.product_id for s in out.scored] == ["p1", "p2", "new"]
    assert out.unscored == ["ghost"]
    assert not online.knows("new")


def test_an_item_sent_with_its_text_gets_the_word_match_of_the_known_one(online):
    # a longer title than any known one in the request: the batch is padded to it
    long_title = TITLES["p1"] + " and a long list of words after it"
    batch = candidates(["p2", "p1"]) + [Candidate("p1-copy", 0.5, 3, TITLES["p1"]), Candidate("long", 0.4, 4, long_title)]
    by_id = {s.product_id: s for s in online.rerank("cordless drill", batch).scored}
    assert by_id["p1-copy"].explanation.zero_order == pytest.approx(by_id["p1"].explanation.zero_order, abs=1e-5)
    alone = online.rerank("cordless drill", candidates(["p2", "p1"])).scored
    assert [s.explanation.zero_order for s in alone] == pytest.approx(
        [by_id["p2"].explanation.zero_order, by_id["p1"].explanation.zero_order], abs=1e-5)


def test_missing_or_corrupt_artifact_gives_one_line(artifact, tmp_path):
    with pytest.raises(ArtifactError, match="no model artifact there"):
        OnlineReranker.load(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(artifact, broken)
    (broken / "pair.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(ArtifactError) as err:
        OnlineReranker.load(broken)
    assert "corrupt artifact" in str(err.value) and "\n" not in str(err.value)
    (broken / "items.npz").unlink()
    with pytest.raises(ArtifactError, match="missing items.npz"):
        OnlineReranker.load(broken)


def test_an_unknown_item_is_embedded_once_and_kept_by_id_and_text(artifact):
    model = OnlineReranker.load(artifact, item_cache_size=2)
    sent = candidates(["p1"]) + [Candidate("new", 0.5, 2, "cordless drill kit")]
    first = {s.product_id: s.score for s in model.rerank("cordless drill", sent).scored}
    assert model.cached_items == 1
    again = {s.product_id: s.score for s in model.rerank("cordless drill", sent).scored}
    assert again == pytest.approx(first, abs=1e-6) and model.cached_items == 1
    # a changed title is another item; the oldest goes past the cache's size
    model.rerank("cordless drill", [Candidate("new", 0.5, 1, "garden hose reel")])
    model.rerank("cordless drill", [Candidate("other", 0.5, 1, "led bulb")])
    assert model.cached_items == 2
    uncached = OnlineReranker.load(artifact, item_cache_size=0)
    assert {s.product_id: s.score for s in uncached.rerank("cordless drill", sent).scored} == pytest.approx(first, abs=1e-6)
    assert uncached.cached_items == 0


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A stand-in for the teacher-distilled query encoder: the bi-encoder with one layer nudged (seeded)."""
    import copy

    encoder = copy.deepcopy(load_bi_encoder())
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        weight = encoder[0].auto_model.encoder.layer[-1].output.dense.weight
        weight.add_(0.05 * torch.randn(weight.shape, generator=g))
    folder = build_tiny_artifact(tmp_path_factory.mktemp("tuned") / "serving", TITLES, QUERIES, seed=3,
                                 tuned_encoder=encoder)
    return folder, encoder


def test_an_artifact_with_the_tuned_query_encoder_serves_what_torch_computes(tuned):
    artifact, encoder = tuned
    assert json.loads((artifact / "manifest.json").read_text())["use_tuned_query"] is True
    online = OnlineReranker.load(artifact)
    torch_model = BermO.load(artifact)
    assert torch_model.config.use_tuned_query
    sampler = NeighborSampler(ClickGraph.load(artifact / "graph.json"), per_path=5, seed=3)
    builder = ContextBuilder(sampler, Vocab.load(artifact / "vocab.json"), VectorStore.load(artifact, "query_store"),
                             VectorStore.load(artifact, "item_store"),
                             {p: Product(p, t) for p, t in TITLES.items()}, load_bi_encoder(), tuned_encoder=encoder)
    ids = list(TITLES)
    bm25 = [float(len(ids) - i) for i in range(len(ids))]
    for query in ("garden hose", "cordless screwdriver"):
        query_id = query if query in QUERIES else None
        with torch.inference_mode():
            expected = torch_model(builder.build(query, query_id, ids, bm25))["score"].numpy()
        served = np.array([s.score for s in online.rerank(query, candidates(ids)).scored])
        np.testing.assert_allclose(served, expected, atol=2e-3)
    # the tuned vector differs from the zero-shot one, so the model really reads its own encoder
    assert not np.allclose(embed(encoder, ["garden hose"], progress=False), embed(load_bi_encoder(), ["garden hose"], progress=False), atol=1e-3)
    # an artifact missing the tuned encoder's files says so in one line
    (artifact / "query_encoder" / "text_encoder.onnx").unlink()
    with pytest.raises(ArtifactError, match="missing query_encoder/text_encoder.onnx"):
        OnlineReranker.load(artifact)
