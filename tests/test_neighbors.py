"""Metapath neighbor sampling and BERM's input tensors, on a tiny hand-made click graph.

The bi-encoder is the real all-MiniLM-L6-v2 (loaded once for the module), so the unseen-query
fallback is tested on real similarities.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from indexer.embeddings import DIM, embed, load_bi_encoder
from indexer.faiss_store import VectorStore
from indexer.graph import ClickGraph
from indexer.records import Product
from reranker.graph import PATHS, NeighborSampler
from reranker.graph.context import ContextBuilder, ContextError

QUERIES = {
    "q1": "cordless drill",
    "q2": "paint brushes",
    "q3": "drill bits",
    "q4": "claw hammer",
    "q5": "cordless drills",  # a dev query: in the query store, never in the graph
}
PRODUCTS = {
    "p1": "DeWalt 20V MAX Cordless Drill Driver Kit",
    "p2": "Ryobi 18V Cordless Impact Driver",
    "p3": "Makita Corded Hammer Drill 1/2 in.",
    "p4": "Estwing 16 oz. Claw Hammer",
    "p5": "Behr Premium Plus White Interior Paint 1 gal.",
    "p6": "Drill Bit Set for Wood and Metal (29-Piece)",
    "p7": "Purdy 2 in. Angled Paint Brush",
    "p8": "Husky Tool Box with Drawers",
    "p9": "Milwaukee M18 Cordless Drill Driver",  # in the item store, no clicks
    "p10": "Estwing 20 oz. Framing Hammer",  # added after the stores were built
}
EDGES = [
    ("q1", "p1", 0.9), ("q1", "p2", 0.6), ("q1", "p6", 0.1),
    ("q2", "p7", 0.8), ("q2", "p5", 0.3),
    ("q3", "p6", 0.7), ("q3", "p1", 0.2),
    ("q4", "p4", 0.9), ("q4", "p3", 0.4),
]


@pytest.fixture(scope="module")
def encoder():
    return load_bi_encoder()


@pytest.fixture(scope="module")
def stores(encoder):
    query_ids = list(QUERIES)
    item_ids = [pid for pid in PRODUCTS if pid != "p10"]
    query_store = VectorStore.build(query_ids, embed(encoder, [QUERIES[q] for q in query_ids], progress=False))
    item_store = VectorStore.build(item_ids, embed(encoder, [PRODUCTS[p] for p in item_ids], progress=False))
    return query_store, item_store


@pytest.fixture
def graph() -> ClickGraph:
    return ClickGraph.from_edges(EDGES)


def star(weights: list[float]) -> ClickGraph:
    """One query 'hub' joined to items i00, i01, ... with the given weights."""
    return ClickGraph.from_edges(("hub", f"i{n:02d}", w) for n, w in enumerate(weights))


EMPTY_STORE = VectorStore.build([], np.zeros((0, 4), dtype=np.float32))


def test_embed_is_normalised_float32(encoder) -> None:
    vectors = embed(encoder, ["cordless drill", "paint brush", "cordless drills"], progress=False)
    assert vectors.shape == (3, DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]
    assert embed(encoder, [], progress=False).shape == (0, DIM)


def test_logged_query_paths_have_exact_weights_and_exclude_itself(graph, stores) -> None:
    query_store, _ = stores
    paths = NeighborSampler(graph).query_paths("q1", None, query_store)
    assert paths["Q-I"] == [("p1", 0.9), ("p2", 0.6), ("p6", 0.1)]
    # q3 is reached through p1 (0.9 * 0.2) and p6 (0.1 * 0.7): the best path counts; q1 is left out
    assert paths["Q-I-Q"] == [("q3", pytest.approx(0.18))]


def test_item_paths_exclude_the_item_itself(graph, stores) -> None:
    _, item_store = stores
    paths = NeighborSampler(graph).item_paths("p6", None, item_store)
    assert paths["I-Q"] == [("q3", 0.7), ("q1", 0.1)]
    # p1 through q3 (0.7 * 0.2 = 0.14) beats p1 through q1 (0.1 * 0.9 = 0.09)
    assert paths["I-Q-I"] == [("p1", pytest.approx(0.14)), ("p2", pytest.approx(0.06))]


def test_unseen_query_borrows_its_nearest_logged_query(graph, stores, encoder) -> None:
    query_store, _ = stores
    vec = embed(encoder, ["cordless drills"], progress=False)[0]
    similarity = float(vec @ query_store.vector("q1"))
    assert similarity > 0.8
    # q5 itself is in the query store but not in the graph, so it can never be its own stand-in
    paths = NeighborSampler(graph, fallback_k=1).query_paths("q5", vec, query_store)
    assert [pid for pid, _ in paths["Q-I"]] == ["p1", "p2", "p6"]
    assert [w for _, w in paths["Q-I"]] == pytest.approx([0.9 * similarity, 0.6 * similarity, 0.1 * similarity], rel=1e-5)
    # the stand-in is a real, similar query: it shows up in the second-order path of the virtual node
    assert dict(paths["Q-I-Q"]) == pytest.approx({"q1": 0.81 * similarity, "q3": 0.18 * similarity}, rel=1e-5)


def test_unseen_query_with_several_stand_ins_keeps_the_best(graph, stores, encoder) -> None:
    query_store, _ = stores
    vec = embed(encoder, ["cordless drills"], progress=False)[0]
    sims = {q: max(float(vec @ query_store.vector(q)), 0.0) for q in ("q1", "q2", "q3", "q4")}
    three = sorted(sims, key=sims.get, reverse=True)[:3]
    assert three[0] == "q1"
    paths = NeighborSampler(graph, per_path=10, fallback_k=3).query_paths(None, vec, query_store)
    expected: dict[str, float] = {}
    for q in three:
        for pid, w in graph.items_of(q):
            expected[pid] = max(expected.get(pid, 0.0), w * sims[q])
    assert dict(paths["Q-I"]) == pytest.approx(expected, rel=1e-5)
    weights = [w for _, w in paths["Q-I"]]
    assert weights == sorted(weights, reverse=True)


def test_unseen_item_borrows_its_nearest_clicked_item(graph, stores) -> None:
    _, item_store = stores
    vec = item_store.vector("p9")
    similarity = float(vec @ item_store.vector("p1"))
    paths = NeighborSampler(graph, fallback_k=1).item_paths("p9", vec, item_store)
    assert paths["I-Q"] == [("q1", pytest.approx(0.9 * similarity, rel=1e-5)), ("q3", pytest.approx(0.2 * similarity, rel=1e-5))]
    assert "p9" not in dict(paths["I-Q-I"]) and "p1" in dict(paths["I-Q-I"])


def test_item_paths_many_matches_one_by_one(graph, stores) -> None:
    _, item_store = stores
    ids = ["p9", "p1", "p8", "p9", "p5"]
    many = NeighborSampler(graph, fallback_k=2).item_paths_many(ids, item_store.vectors_of(ids), item_store)
    single = NeighborSampler(graph, fallback_k=2)
    assert many == [single.item_paths(pid, item_store.vector(pid), item_store) for pid in ids]
    assert many[2]["I-Q"] and many[1]["I-Q"] == [("q1", 0.9), ("q3", 0.2)]


def test_unseen_node_without_vector_gets_no_neighbors(graph, stores) -> None:
    query_store, _ = stores
    assert NeighborSampler(graph).query_paths("q5", None, query_store) == {"Q-I": [], "Q-I-Q": []}


def test_sampling_is_deterministic_and_capped() -> None:
    weights = list(np.random.default_rng(1).uniform(0.05, 1.0, size=30))
    first = NeighborSampler(star(weights), per_path=5, seed=13).query_paths("hub", None, EMPTY_STORE)["Q-I"]
    again = NeighborSampler(star(weights), per_path=5, seed=13).query_paths("hub", None, EMPTY_STORE)["Q-I"]
    assert first == again and len(first) == 5
    assert [w for _, w in first] == sorted((w for _, w in first), reverse=True)
    others = [NeighborSampler(star(weights), per_path=5, seed=s).query_paths("hub", None, EMPTY_STORE)["Q-I"]
              for s in range(1, 8)]
    assert any(sample != first for sample in others)
    assert all(len(sample) == 5 for sample in others)


def test_unseen_query_sample_survives_float_noise_in_its_vector() -> None:
    # the bi-encoder's output moves by ~1e-7 with torch's thread count (serving runs it on one
    # thread, training on all); the neighbors drawn for that query must not change with it
    hubs = ClickGraph.from_edges([("hub", f"i{n:02d}", w) for n, w in enumerate(np.linspace(0.1, 1.0, 30))])
    hub_vec = np.zeros((1, 8), dtype=np.float32)
    hub_vec[0, 0] = 1.0
    store = VectorStore.build(["hub"], hub_vec)
    vec = np.full(8, 0.05, dtype=np.float32)
    vec[0] = 1.0
    noisy = vec + np.float32(1e-7) * np.random.default_rng(0).standard_normal(8).astype(np.float32)
    assert vec.tobytes() != noisy.tobytes()
    clean_sample = NeighborSampler(hubs, per_path=5).query_paths(None, vec, store)["Q-I"]
    noisy_sample = NeighborSampler(hubs, per_path=5).query_paths(None, noisy, store)["Q-I"]
    assert len(clean_sample) == 5
    assert [node for node, _ in clean_sample] == [node for node, _ in noisy_sample]


def test_sampling_follows_weights() -> None:
    heavy_and_zero = [1.0] * 8 + [0.0] * 8
    for seed in range(40):
        picked = NeighborSampler(star(heavy_and_zero), per_path=5, seed=seed).query_paths("hub", None, EMPTY_STORE)["Q-I"]
        assert len(picked) == 5 and all(w == 1.0 for _, w in picked)
    # with too few positive ones, all of them come first and zero-weight ones fill the rest
    picked = NeighborSampler(star([0.5, 0.2] + [0.0] * 8), per_path=5).query_paths("hub", None, EMPTY_STORE)["Q-I"]
    assert picked[:2] == [("i00", 0.5), ("i01", 0.2)] and len(picked) == 5
    # heavy neighbors are drawn far more often than light ones
    light = 0
    for seed in range(100):
        picked = NeighborSampler(star([1.0] * 5 + [0.01] * 5), per_path=3, seed=seed).query_paths("hub", None, EMPTY_STORE)["Q-I"]
        light += sum(w == 0.01 for _, w in picked)
    assert light < 15  # about 300 * 0.01 / 1.01 * (a little over 1) expected


def test_small_neighborhoods_are_returned_whole_and_cache_is_safe(graph, stores) -> None:
    query_store, _ = stores
    sampler = NeighborSampler(graph, per_path=2)
    paths = sampler.query_paths("q1", None, query_store)
    picked = list(paths["Q-I"])
    assert len(picked) == 2 and set(picked) <= {("p1", 0.9), ("p2", 0.6), ("p6", 0.1)}
    assert picked[0][1] > picked[1][1]
    paths["Q-I"].clear()  # callers get copies: the cache is untouched
    assert sampler.query_paths("q1", None, query_store)["Q-I"] == picked
    assert NeighborSampler(graph, per_path=5).query_paths("q2", None, query_store)["Q-I"] == [("p7", 0.8), ("p5", 0.3)]


class TinyVocab:
    """Stands in for reranker.text.Vocab: known words get fixed ids, others 1, no padding."""

    WORDS = ["cordless", "drill", "drills", "hammer", "claw", "estwing", "dewalt", "20v", "max", "driver", "kit"]

    def encode(self, text: str, max_len: int) -> list[int]:
        ids = {word: n + 2 for n, word in enumerate(self.WORDS)}
        return [ids.get(word, 1) for word in text.lower().split()][:max_len]


@pytest.fixture
def builder(graph, stores, encoder) -> ContextBuilder:
    query_store, item_store = stores
    products = {pid: Product(pid, title) for pid, title in PRODUCTS.items()}
    return ContextBuilder(NeighborSampler(graph, per_path=5), TinyVocab(), query_store, item_store, products,
                          bi_encoder=encoder, per_path=4, max_query_tokens=12, max_title_tokens=6)


def test_context_builder_shapes_dtypes_and_masks(builder, stores) -> None:
    query_store, item_store = stores
    ids = ["p1", "p4", "p9", "p10"]
    batch = builder.build("cordless drill", "q1", ids, [3.0, 1.0, 2.0, 1.0])
    assert set(batch) == {"q_tokens", "i_tokens", "q_vec", "i_vec", "nb_vec", "nb_w", "nb_mask", "bm25"}
    n, p, k = 4, len(PATHS), 4
    assert batch["q_tokens"].dtype == torch.int64 and batch["q_tokens"].tolist() == [[2, 3]] * n
    assert batch["i_tokens"].dtype == torch.int64 and batch["i_tokens"].shape == (n, 6)
    assert batch["i_tokens"][0].tolist() == [8, 9, 10, 2, 3, 11]  # DeWalt 20V MAX Cordless Drill Driver | Kit: cut at 6
    assert batch["i_tokens"][1].tolist() == [7, 1, 1, 6, 5, 0]  # Estwing 16 oz. Claw Hammer + padding
    for key in ("q_vec", "i_vec"):
        assert batch[key].dtype == torch.float32 and batch[key].shape == (n, DIM)
    assert batch["nb_vec"].dtype == torch.float32 and batch["nb_vec"].shape == (n, p, k, DIM)
    assert batch["nb_w"].dtype == torch.float32 and batch["nb_w"].shape == (n, p, k)
    assert batch["nb_mask"].dtype == torch.bool and batch["nb_mask"].shape == (n, p, k)
    assert batch["bm25"].dtype == torch.float32 and batch["bm25"].tolist() == pytest.approx([1.0, 0.0, 0.5, 0.0])

    np.testing.assert_allclose(batch["q_vec"][2].numpy(), query_store.vector("q1"))
    np.testing.assert_allclose(batch["i_vec"][1].numpy(), item_store.vector("p4"))
    # p10 is not in the item store: embedded from its title
    np.testing.assert_allclose(batch["i_vec"][3].numpy(), embed(builder.bi_encoder, [PRODUCTS["p10"]], progress=False)[0], atol=1e-5)

    # query side, the same on every row: Q-I = p1, p2, p6; Q-I-Q = q3
    mask, weight, vec = batch["nb_mask"], batch["nb_w"], batch["nb_vec"]
    assert mask[:, 0].tolist() == [[True, True, True, False]] * n
    assert mask[:, 1].tolist() == [[True, False, False, False]] * n
    assert weight[0, 0].tolist() == pytest.approx([0.9, 0.6, 0.1, 0.0])
    assert weight[3, 1].tolist() == pytest.approx([0.18, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(vec[1, 0, 1].numpy(), item_store.vector("p2"))
    np.testing.assert_allclose(vec[2, 1, 0].numpy(), query_store.vector("q3"))
    # item side of p4: I-Q = q4, I-Q-I = p3 (0.9 * 0.4)
    assert mask[1, 2].tolist() == [True, False, False, False] and weight[1, 2, 0].item() == pytest.approx(0.9)
    assert weight[1, 3].tolist() == pytest.approx([0.36, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(vec[1, 3, 0].numpy(), item_store.vector("p3"))
    np.testing.assert_allclose(vec[1, 2, 0].numpy(), query_store.vector("q4"))
    # p9 and p10 have no clicks: they still get neighbors through their nearest clicked products
    assert mask[2, 2].any() and mask[3, 2].any()
    # padding is zero everywhere the mask is off
    assert torch.all(vec[~mask] == 0) and torch.all(weight[~mask] == 0)
    assert torch.all(vec[mask].norm(dim=-1) > 0.99)


def test_context_builder_unseen_query_and_bm25_ties(builder, encoder) -> None:
    batch = builder.build("cordless drills", None, ["p2", "p6"], [5.0, 5.0])
    assert batch["bm25"].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(batch["q_vec"][0].numpy(), embed(encoder, ["cordless drills"], progress=False)[0], atol=1e-5)
    neighbors = builder.neighbor_ids(None, batch["q_vec"][0].numpy(), "p2", batch["i_vec"][0].numpy())
    assert list(neighbors) == list(PATHS)
    # the nearest stand-in is "cordless drill", so its best item leads (3 stand-ins: more items join)
    assert neighbors["Q-I"][0][0] == "p1" and {"p2", "p6"} <= {pid for pid, _ in neighbors["Q-I"]}
    assert len(neighbors["Q-I"]) == 4 and neighbors["I-Q"] == [("q1", 0.6)]
    assert batch["nb_mask"][:, 0].tolist() == [[True] * 4] * 2
    np.testing.assert_allclose(batch["nb_vec"][1, 0, 0].numpy(), builder.item_store.vector("p1"))
    assert batch["nb_w"][0, 0].tolist() == pytest.approx([w for _, w in neighbors["Q-I"]])


def test_context_builder_edge_cases(builder) -> None:
    empty = builder.build("cordless drill", "q1", [], [])
    assert empty["nb_vec"].shape == (0, len(PATHS), 4, DIM) and empty["i_tokens"].shape == (0, 1)
    assert empty["q_tokens"].shape[0] == 0
    with pytest.raises(ContextError, match="2 BM25 scores for 1"):
        builder.build("cordless drill", "q1", ["p1"], [1.0, 2.0])
    with pytest.raises(ContextError, match="not in the catalog"):
        builder.build("cordless drill", "q1", ["p404"], [1.0])
    no_encoder = ContextBuilder(builder.sampler, builder.vocab, builder.query_store, builder.item_store,
                                builder.products, bi_encoder=None, per_path=4)
    with pytest.raises(ContextError, match="no bi-encoder"):
        no_encoder.build("brand new query", None, ["p1"], [1.0])
