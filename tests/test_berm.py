"""BERM and BERM-O students, their vocabulary, losses and distillation, on tiny synthetic inputs.

Every model here is built in the test (30-word vocabulary, K = 3 neighbors, D = 384 random unit
vectors); nothing is mocked. The training test learns a synthetic relevance that depends on shared
words, on how close the item's I-Q neighbors are to the query and on BM25.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reranker.models.berm import Berm, BermConfig, check_batch, kernel_mus
from common.settings import OnnxThreads
from reranker.models.berm_o import BermO, BermOConfig
from reranker.serving.onnx_runner import OnnxBermO
from reranker.training.export import export_onnx
from reranker.text import Vocab, tokenize
from reranker.training.distill import (
    DistillConfig,
    MarginMSELoss,
    RankNetLoss,
    ScoreMSELoss,
    check_group,
    collate,
    sample_pairs,
    score_groups,
    train_student,
)

V, D, P, K = 32, 384, 4, 3
torch.set_num_threads(1)


def unit(*shape: int, g: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, D, generator=g), dim=-1)


def make_batch(n: int = 6, lq: int = 3, li: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    """A contract batch with padded tokens, some padded neighbors and one row with an empty path."""
    g = torch.Generator().manual_seed(seed)
    q_tokens = torch.randint(2, V, (n, lq), generator=g)
    q_tokens[0, -1] = 0
    i_tokens = torch.randint(1, V, (n, li), generator=g)
    i_tokens[:, -2:] = 0
    nb_mask = torch.rand(n, P, K, generator=g) > 0.3
    nb_mask[:, :, 0] = True
    nb_mask[1, 3] = False  # row 1 has no I-Q-I neighbors
    nb_vec = unit(n, P, K, g=g) * nb_mask[..., None]
    nb_w = torch.rand(n, P, K, generator=g) * nb_mask
    batch = {"q_tokens": q_tokens, "i_tokens": i_tokens, "q_vec": unit(n, g=g), "i_vec": unit(n, g=g),
             "nb_vec": nb_vec, "nb_w": nb_w, "nb_mask": nb_mask, "bm25": torch.rand(n, generator=g)}
    batch["t_vec"] = unit(n, g=g)  # drawn last: the other tensors are as before it existed
    return batch


def berm(**overrides) -> Berm:
    torch.manual_seed(1)
    return Berm(BermConfig(vocab_size=V, **overrides)).eval()


def berm_o(**overrides) -> BermO:
    torch.manual_seed(2)
    return BermO(BermOConfig(vocab_size=V, **overrides)).eval()


MODELS = pytest.mark.parametrize("make", [berm, berm_o], ids=["berm", "berm_o"])


# ----------------------------------------------------------------------------------------------
# vocabulary


def test_tokenizer_keeps_sizes_and_fractions() -> None:
    assert tokenize("Makita 1/2 in. Hammer-Drill, 3.5 Amp (Men's)") == [
        "makita", "1/2", "in", "hammer", "drill", "3.5", "amp", "men's"]


def test_vocab_build_encode_and_round_trip(tmp_path) -> None:
    vocab = Vocab.build(["drill bit", "cordless drill", "drill 1/2 in.", "bit set"], min_count=2, max_size=50)
    assert vocab.words == ["drill", "bit"]  # most frequent first, singletons dropped
    assert len(vocab) == 4
    assert vocab.encode("Cordless DRILL bit", max_len=2) == [1, 2]  # unknown, drill; cut at 2
    assert vocab.encode("", max_len=5) == []
    assert len(Vocab.build(["a a b b c c"], min_count=1, max_size=3)) == 3
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == vocab


# ----------------------------------------------------------------------------------------------
# both models: outputs, exact parts, masking, checkpoints


@MODELS
def test_output_shapes_and_parts_add_up(make) -> None:
    model, batch = make(), make_batch()
    with torch.no_grad():
        out = model(batch)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "score": (6,), "zero_order": (6,), "k_order": (6,), "bm25": (6,), "attention": (6, P, K)}
    torch.testing.assert_close(out["zero_order"] + out["k_order"] + out["bm25"], out["score"], atol=1e-5, rtol=0)
    assert torch.isfinite(out["score"]).all()


@MODELS
def test_attention_covers_real_neighbors_only(make) -> None:
    batch = make_batch()
    with torch.no_grad():
        attention = make()(batch)["attention"]
    assert (attention[~batch["nb_mask"]] == 0).all()
    sums = attention.sum(-1)  # [N, P]
    has = batch["nb_mask"].any(-1)
    torch.testing.assert_close(sums[has], torch.ones(int(has.sum())))
    assert (sums[~has] == 0).all()


@MODELS
def test_masked_neighbors_do_not_change_the_output(make) -> None:
    model, batch = make(), make_batch()
    changed = {**batch, "nb_vec": batch["nb_vec"].clone(), "nb_w": batch["nb_w"].clone()}
    hidden = ~batch["nb_mask"]
    changed["nb_vec"][hidden] = torch.randn(int(hidden.sum()), D) * 5
    changed["nb_w"][hidden] = 0.9
    with torch.no_grad():
        a, b = model(batch), model(changed)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@MODELS
def test_rows_with_no_neighbors_give_no_nan(make) -> None:
    model, batch = make(), make_batch()
    batch["nb_mask"][:, 1] = False  # nobody has Q-I-Q neighbors
    batch["nb_mask"][2] = False  # row 2 has no neighbors at all
    batch["nb_vec"] = batch["nb_vec"] * batch["nb_mask"][..., None]
    batch["nb_w"] = batch["nb_w"] * batch["nb_mask"]
    with torch.no_grad():
        out = model(batch)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert (out["attention"][:, 1] == 0).all() and (out["attention"][2] == 0).all()


@MODELS
def test_without_k_order_the_context_is_ignored(make) -> None:
    model, batch = make(use_k_order=False), make_batch()
    other = {**batch, "nb_vec": torch.randn_like(batch["nb_vec"]), "nb_w": torch.rand_like(batch["nb_w"])}
    with torch.no_grad():
        a, b = model(batch), model(other)
    assert (a["k_order"] == 0).all() and (a["attention"] == 0).all()
    assert torch.equal(a["score"], b["score"])
    assert torch.equal(a["score"], a["zero_order"] + a["bm25"])


@MODELS
def test_save_load_round_trip(make, tmp_path) -> None:
    model, batch = make(), make_batch()
    vocab = Vocab([f"w{i}" for i in range(V - 2)])
    model.save(tmp_path, extra={"split": "train-v1"}, vocab=vocab)
    loaded = type(model).load(tmp_path)
    assert loaded.config == model.config
    assert Vocab.load(tmp_path / "vocab.json") == vocab
    with torch.no_grad():
        a, b = model(batch), loaded(batch)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    manifest = (tmp_path / f"{model.name}_manifest.json").read_text()
    assert '"split": "train-v1"' in manifest and model.config.model_version in manifest


def test_load_rejects_unknown_config_keys(tmp_path) -> None:
    berm().save(tmp_path)
    path = tmp_path / "berm_config.json"
    path.write_text(path.read_text().replace('"paths"', '"paths": 4, "heads"'))
    with pytest.raises(ValueError) as err:
        Berm.load(tmp_path)
    assert str(err.value) == f"{path}: unknown config keys ['heads']"


def test_batch_check_names_the_bad_tensor() -> None:
    batch = make_batch()
    with pytest.raises(ValueError) as err:
        check_batch({**batch, "nb_vec": batch["nb_vec"][:, :, :2]}, P, D)
    assert str(err.value) == "nb_vec must be float32 [N, P, K, D] = [6, 4, 3, 384], got float32 (6, 4, 2, 384)"
    with pytest.raises(ValueError) as err:
        berm()({k: v for k, v in batch.items() if k != "bm25"})
    assert str(err.value) == "batch is missing keys ['bm25']"


# ----------------------------------------------------------------------------------------------
# 0-order: kernels


def test_identical_words_hit_the_exact_match_kernel() -> None:
    assert kernel_mus(11) == pytest.approx([1.0, 0.9, 0.7, 0.5, 0.3, 0.1, -0.1, -0.3, -0.5, -0.7, -0.9])
    zero = berm().zero_order
    q = torch.tensor([[5, 6], [7, 8], [1, 0]])
    i = torch.tensor([[5, 9, 6, 0], [5, 9, 6, 0], [1, 9, 6, 0]])
    with torch.no_grad():
        sim, _, _ = zero.interaction(q, i)
        feats = zero.features(q, i)  # [3, 11]
    assert sim[0, 0, 0].item() == pytest.approx(1.0) and sim[0, 1, 2].item() == pytest.approx(1.0)
    assert feats[0, 0].item() == pytest.approx(2 * math.log(2), abs=1e-4)  # both query words matched once
    assert feats[1, 0].item() < 1e-3  # disjoint words: no exact match
    assert (feats[2] == 0).all()  # an unknown word matches nothing, not even another unknown word


# ----------------------------------------------------------------------------------------------
# BERM-O: offline contexts and ONNX


def online_inputs(model: BermO, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    nv, nw, nm = batch["nb_vec"], batch["nb_w"], batch["nb_mask"]
    q_ctx = model.precompute_contexts(batch["q_vec"], nv[:, :2], nw[:, :2], nm[:, :2], side="query")
    i_ctx = model.precompute_contexts(batch["i_vec"], nv[:, 2:], nw[:, 2:], nm[:, 2:], side="item")
    tuned = (batch["t_vec"],) if model.config.use_tuned_query else ()
    return (batch["q_tokens"], batch["i_tokens"], batch["q_vec"], batch["i_vec"], *q_ctx, *i_ctx, batch["bm25"], *tuned)


def test_berm_o_forward_equals_online_with_precomputed_contexts() -> None:
    model, batch = berm_o(), make_batch()
    with torch.no_grad():
        out = model(batch)
        inputs = online_inputs(model, batch)
        score, zero_order, k_order = model.forward_online(*inputs)
    assert tuple(inputs[4].shape) == (6, 2, D) and tuple(inputs[5].shape) == (6, 2)
    assert inputs[9][1].tolist() == [1.0, 0.0]  # row 1: I-Q neighbors, no I-Q-I neighbors
    torch.testing.assert_close(score, out["score"], atol=1e-6, rtol=0)
    torch.testing.assert_close(zero_order, out["zero_order"], atol=1e-6, rtol=0)
    torch.testing.assert_close(k_order, out["k_order"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("use_k_order,tuned", [(True, False), (False, False), (True, True)])
def test_onnx_export_matches_torch(tmp_path, use_k_order: bool, tuned: bool) -> None:
    model = berm_o(use_k_order=use_k_order, use_tuned_query=tuned)
    onnx_model = OnnxBermO(export_onnx(model, tmp_path / "berm_o.onnx"), OnnxThreads(intra_threads=1))
    for n, lq, li, seed in [(3, 2, 6, 3), (11, 5, 9, 4)]:
        with torch.no_grad():
            inputs = online_inputs(model, make_batch(n, lq, li, seed))
            expected = model.forward_online(*inputs)
        got = onnx_model.run(*[t.numpy() for t in inputs])
        for want, have in zip(expected, got):
            assert have.shape == (n,)
            np.testing.assert_allclose(have, want.numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("use_k_order,tuned", [(True, False), (False, False), (True, True)])
def test_one_query_row_scores_every_pair_as_a_row_per_pair_does(tmp_path, use_k_order: bool, tuned: bool) -> None:
    # serving sends the query's inputs once; the graph must broadcast them exactly as repeated rows
    from reranker.serving.onnx_runner import PAIR_INPUTS, QUERY_INPUTS

    model = berm_o(use_k_order=use_k_order, use_tuned_query=tuned)
    onnx_model = OnnxBermO(export_onnx(model, tmp_path / "berm_o.onnx"), OnnxThreads(intra_threads=1))
    assert onnx_model.one_query_row
    with torch.no_grad():
        rows = dict(zip(PAIR_INPUTS, online_inputs(model, make_batch(7, 4, 6, 5))))
    assert ("t_vec" in rows) == tuned
    for name in QUERY_INPUTS:  # one query for all seven pairs: row 0's
        if name in rows:
            rows[name] = rows[name][:1].expand_as(rows[name]).contiguous()
    once = {name: value[:1] if name in QUERY_INPUTS else value for name, value in rows.items()}
    with torch.no_grad():
        want = model.forward_online(*rows.values())
        torch_once = model.forward_online(*once.values())
    got = onnx_model.run(*[t.numpy() for t in once.values()])
    for w, t, g in zip(want, torch_once, got):
        assert g.shape == (7,)
        torch.testing.assert_close(t, w, atol=1e-6, rtol=0)
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=0)
    onnx_model.one_query_row = False  # as for a graph exported before: the runner repeats the rows
    for w, g in zip(want, onnx_model.run(*[t.numpy() for t in once.values()])):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------
# losses


def test_losses_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError) as err:
        ScoreMSELoss()(torch.zeros(3), torch.zeros(2))
    assert str(err.value) == "scores and targets must be 1-d of one length, got (3,), (2,)"
    with pytest.raises(ValueError) as err:
        MarginMSELoss()(torch.zeros(3), torch.zeros(3), torch.zeros(3))
    assert str(err.value) == "pairs must be int64 [M, 2], got float32 (3,)"
    with pytest.raises(ValueError) as err:
        MarginMSELoss()(torch.zeros(3), torch.zeros(3), torch.tensor([[0, 3]]))
    assert str(err.value) == "pairs index out of range for 3 scores"
    with pytest.raises(ValueError) as err:
        RankNetLoss()(torch.zeros(3), torch.zeros(3), torch.zeros(2, dtype=torch.int64))
    assert str(err.value) == "scores, gains and groups must be 1-d of one length, got (3,), (3,), (2,)"
    group = {**make_batch(), "target": torch.zeros(5)}
    with pytest.raises(ValueError) as err:
        check_group(group, 7)
    assert str(err.value) == "group 7: target must be float32 [6], got float32 (5,)"


def test_losses_measure_the_right_things() -> None:
    targets = torch.tensor([2.0, 0.0, 1.0, 5.0])
    pairs = torch.tensor([[0, 1], [2, 1], [3, 0]])
    assert MarginMSELoss()(targets + 7.0, targets, pairs).item() == 0.0  # a shift costs no margin
    assert MarginMSELoss()(-targets, targets, pairs).item() > 1.0
    gains = torch.tensor([2.0, 0.0, float("nan"), 1.8])
    groups = torch.tensor([0, 0, 0, 1])
    ranknet = RankNetLoss(min_gap=0.5)
    assert ranknet(torch.tensor([3.0, -3.0, 0.0, 0.0]), gains, groups) < ranknet(
        torch.tensor([-3.0, 3.0, 0.0, 0.0]), gains, groups)
    scores = torch.zeros(4, requires_grad=True)
    none = ranknet(scores, torch.tensor([1.0, 1.2, float("nan"), 0.0]), groups)  # no pair 0.5 apart
    assert none.item() == 0.0 and none.requires_grad
    groups = torch.tensor([0, 0, 0, 1, 2, 2])
    sampled = sample_pairs(groups, per_item=20)
    assert (groups[sampled[:, 0]] == groups[sampled[:, 1]]).all()
    assert (sampled[:, 0] != sampled[:, 1]).all() and 3 not in sampled


# ----------------------------------------------------------------------------------------------
# distillation on a synthetic task


def synthetic_groups(count: int, seed: int, n: int = 8) -> list[dict[str, torch.Tensor]]:
    """target = shared query words + 1.5 * mean cos(I-Q neighbor, query) + 0.5 * bm25 - 1.5."""
    g = torch.Generator().manual_seed(seed)
    groups = []
    for _ in range(count):
        words = torch.randperm(V - 2, generator=g) + 2
        q_words, others = words[:2], words[2:]
        q_vec = unit(g=g)
        shared = torch.randint(0, 3, (n,), generator=g)
        i_tokens = torch.zeros(n, 6, dtype=torch.int64)
        for row in range(n):
            rest = others[torch.randperm(len(others), generator=g)[: 5 - int(shared[row])]]
            i_tokens[row, :5] = torch.cat([q_words[: int(shared[row])], rest])[torch.randperm(5, generator=g)]
        nb_mask = torch.rand(n, P, K, generator=g) > 0.2
        nb_vec = unit(n, P, K, g=g)
        closeness = torch.rand(n, 1, 1, generator=g)  # how much the item's I-Q neighbors are this query
        nb_vec[:, 2] = F.normalize(closeness * q_vec + (1 - closeness) * nb_vec[:, 2], dim=-1)
        nb_vec = nb_vec * nb_mask[..., None]
        cos_iq = (nb_vec[:, 2] @ q_vec).sum(-1) / nb_mask[:, 2].sum(-1).clamp(min=1)  # [n]
        bm25 = torch.rand(n, generator=g)
        groups.append({
            "q_tokens": q_words[None].repeat(n, 1), "i_tokens": i_tokens,
            "q_vec": q_vec[None].repeat(n, 1), "i_vec": unit(n, g=g), "nb_vec": nb_vec,
            "nb_w": torch.rand(n, P, K, generator=g) * nb_mask, "nb_mask": nb_mask, "bm25": bm25,
            "target": shared.float() + 1.5 * cos_iq + 0.5 * bm25 - 1.5,
            "gain": torch.where(torch.rand(n, generator=g) < 0.5, shared.float(), torch.tensor(float("nan"))),
        })
    return groups


def pearson(model: torch.nn.Module, groups: list[dict[str, torch.Tensor]]) -> float:
    scores = np.concatenate(score_groups(model, groups))
    return float(np.corrcoef(scores, np.concatenate([g["target"].numpy() for g in groups]))[0, 1])


def test_distillation_learns_a_synthetic_relevance() -> None:
    train, held_out = synthetic_groups(40, seed=10), synthetic_groups(12, seed=11)
    config = DistillConfig(epochs=12, lr=2e-2, batch_queries=8)
    student = berm()
    losses = train_student(student, train, config, progress=False).history
    assert losses[-1] < losses[0] / 2, losses
    assert pearson(student, held_out) > 0.8
    ablation = berm(use_k_order=False)  # the I-Q neighbors carry part of the relevance
    train_student(ablation, train, config, progress=False)
    assert pearson(ablation, held_out) < pearson(student, held_out) - 0.1

    for group, scores in zip(train, score_groups(student, train)):
        group["target"] = torch.from_numpy(scores)
    online = berm_o()
    train_student(online, train, config, progress=False)
    assert pearson(online, held_out) > 0.7


def test_training_is_seeded() -> None:
    groups = synthetic_groups(6, seed=5, n=4)
    config = DistillConfig(epochs=2, batch_queries=4)
    runs = [train_student(berm_o(), groups, config, progress=False) for _ in range(2)]
    assert runs[0] == runs[1]


def test_collate_pads_tokens_to_the_longest_in_the_step() -> None:
    a = {**make_batch(2, lq=2, li=4), "target": torch.zeros(2)}
    b = {**make_batch(3, lq=5, li=3, seed=1), "target": torch.ones(3), "gain": torch.ones(3)}
    step = collate([a, b])
    assert tuple(step.batch["q_tokens"].shape) == (5, 5) and tuple(step.batch["i_tokens"].shape) == (5, 4)
    assert (step.batch["q_tokens"][:2, 2:] == 0).all()
    assert step.group.tolist() == [0, 0, 1, 1, 1]
    assert torch.isnan(step.gain[:2]).all() and (step.gain[2:] == 1).all()


# ----------------------------------------------------------------------------------------------
# the bi-encoder cosine in the 0-order part, and the listwise KL loss


@MODELS
def test_zero_order_reads_the_bi_encoder_cosine_only_when_on(make) -> None:
    batch = make_batch()
    closer = {**batch, "i_vec": F.normalize(batch["q_vec"] + 0.1 * batch["i_vec"], dim=-1)}  # items near the query
    for use_cosine in (True, False):
        model = make(use_cosine=use_cosine, use_k_order=False)
        with torch.no_grad():
            far, near = model(batch)["zero_order"], model(closer)["zero_order"]
        if use_cosine:  # the cosine weight starts positive: an item closer to the query scores higher
            assert bool((near > far).all())
            out = model(closer)
            torch.testing.assert_close(out["zero_order"] + out["k_order"] + out["bm25"], out["score"], atol=1e-5, rtol=0)
        else:
            torch.testing.assert_close(near, far)


def test_zero_order_with_cosine_needs_the_vectors() -> None:
    model = berm(use_cosine=True)
    with pytest.raises(ValueError, match="q_vec and i_vec"):
        model.zero_order(torch.ones(2, 3, dtype=torch.long) * 2, torch.ones(2, 4, dtype=torch.long) * 3)


@pytest.mark.parametrize("use_cosine", [True, False])
def test_onnx_export_with_and_without_cosine_matches_torch(tmp_path, use_cosine: bool) -> None:
    model = berm_o(use_cosine=use_cosine)
    from reranker.training.export import example_online_inputs

    inputs = example_online_inputs(model.config, n=4)
    onnx = OnnxBermO(export_onnx(model, tmp_path / "m.onnx"))
    got = onnx.run(*[t.numpy() for t in inputs])[0]
    with torch.no_grad():
        want = model.forward_online(*inputs)[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_listwise_kl_golden_values() -> None:
    from reranker.training.distill import ListwiseKLLoss

    # two groups; T = 1: KL(softmax(t) || softmax(s)) per group, averaged over the groups
    scores = torch.tensor([0.0, 0.0, 1.0, 1.0])
    targets = torch.tensor([math.log(3.0), 0.0, 5.0, 5.0])
    groups = torch.tensor([0, 0, 1, 1])
    # group 0: p = (3/4, 1/4), q = (1/2, 1/2): 3/4 ln(3/2) + 1/4 ln(1/2); group 1: p = q, 0
    want = (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2
    assert ListwiseKLLoss(1.0)(scores, targets, groups).item() == pytest.approx(want, abs=1e-6)
    # the same lists shifted by a constant per group cost nothing (softmax is shift-invariant)
    assert ListwiseKLLoss(2.0)(targets + 3.0, targets, groups).item() == pytest.approx(0.0, abs=1e-6)
    # single-candidate groups add nothing and never make NaN
    assert ListwiseKLLoss()(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([0])).item() == 0.0
    with pytest.raises(ValueError, match="temperature"):
        ListwiseKLLoss(0.0)


def test_listwise_weight_changes_the_training_loss() -> None:
    from reranker.training.distill import DistillLoss

    scores, targets = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([2.0, 1.0, 0.0])
    gains, groups = torch.full((3,), float("nan")), torch.tensor([0, 0, 0])
    off = DistillLoss(DistillConfig(epochs=1, margin_weight=0.0))(scores, targets, gains, groups)
    on = DistillLoss(DistillConfig(epochs=1, margin_weight=0.0, listwise_weight=1.0))(scores, targets, gains, groups)
    assert on.item() > off.item() > 0


# ----------------------------------------------------------------------------------------------
# the tuned query encoder's cosine (reranker/training/query_encoder.py)


@MODELS
def test_a_model_reading_the_tuned_query_vector_requires_it_and_uses_it(make) -> None:
    model = make(use_tuned_query=True)
    batch = make_batch()
    without = {key: value for key, value in batch.items() if key != "t_vec"}
    with pytest.raises(ValueError, match=r"missing keys \['t_vec'\]"):
        model(without)
    with torch.no_grad():
        base = model(batch)
        moved = model({**batch, "t_vec": batch["i_vec"]})  # the tuned query vector on each item: cosine 1
    # only the 0-order part reads it, and the parts still add up
    torch.testing.assert_close(moved["k_order"], base["k_order"])
    assert not torch.allclose(moved["zero_order"], base["zero_order"])
    torch.testing.assert_close(moved["score"], moved["zero_order"] + moved["k_order"] + moved["bm25"])
    # a model that does not read it ignores it
    plain = make()
    with torch.no_grad():
        torch.testing.assert_close(plain(without)["score"], plain(batch)["score"])


def test_groups_with_tuned_query_vectors_train_a_model_that_reads_them() -> None:
    groups = [{**make_batch(5, seed=s), "target": torch.rand(5)} for s in range(4)]
    step = collate(groups)
    assert tuple(step.batch["t_vec"].shape) == (20, D)
    model = berm_o(use_tuned_query=True)
    history = train_student(model, groups, DistillConfig(epochs=2, batch_queries=2), progress=False).history
    assert len(history) == 2 and all(math.isfinite(h) for h in history)
