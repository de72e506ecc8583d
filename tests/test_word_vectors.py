"""Static word vectors distilled from the packaged MiniLM (reranker/training/word_vectors.py) and
the students' word embeddings started from them.

The real model runs on a 76-word hardware vocabulary (a second or two of forward passes); the
pooled vectors are cached once for the module, as the pipeline caches them next to vocab.json.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reranker.models.berm import Berm, BermConfig, ZeroOrder
from reranker.models.berm_o import BermO, BermOConfig
from reranker.text import Vocab
from reranker.training.word_vectors import (
    sif_weights,
    start_word_vectors,
    static_word_vectors,
    vocab_digest,
)

WORDS = ("drill drills faucet faucets white black red blue green wood wooden oak pine door doors window "
         "hammer screwdriver wrench saw nail nails screw screws bolt tile tiles floor flooring carpet rug "
         "lamp light lights bulb bulbs ceiling fan fans toilet sink shower vanity cabinet kitchen bathroom "
         "paint brush roller ladder shovel rake hose mower grass garden fence gate lock key hinge inch ft "
         "steel copper brass chrome nickel 1/2 3/4 pack set kit cordless battery volt").split()
VOCAB = Vocab(WORDS)
# Measured at 32 and 64 dims: related 0.44-0.97, unrelated -0.29 to -0.005; N(0, 1) vectors would
# put all of them near 0 (|cos| ~ 0.15 at 64 dims).
RELATED = [("drill", "drills"), ("screw", "screws"), ("tile", "tiles"), ("white", "black"), ("red", "blue"),
           ("copper", "brass")]
UNRELATED = [("drill", "faucet"), ("screw", "carpet"), ("white", "drill"), ("oak", "bulb"), ("hammer", "lamp")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("words") / "word_vectors.npz"
    static_word_vectors(VOCAB, 32, cache=path)  # the forward passes, once for the module
    return path


@pytest.mark.parametrize("dim", [32, 64])
def test_vectors_have_one_float32_row_per_id_and_zero_reserved_rows(cache, dim):
    vectors = static_word_vectors(VOCAB, dim, cache=cache)
    assert vectors.shape == (len(VOCAB), dim) and vectors.dtype == np.float32
    assert not vectors[:2].any()  # padding and unknown
    assert np.isfinite(vectors).all() and (np.linalg.norm(vectors[2:], axis=1) > 0).all()
    assert np.sqrt(np.mean(vectors[2:] ** 2)) == pytest.approx(1.0, rel=1e-4)  # the N(0, 1) init's scale


def test_cache_is_reused_for_its_vocabulary_and_rebuilt_for_another(cache, tmp_path):
    before = cache.stat().st_mtime_ns
    cached = static_word_vectors(VOCAB, 32, cache=cache)
    assert cache.stat().st_mtime_ns == before
    stale = tmp_path / "word_vectors.npz"  # a cache left by another vocabulary
    np.savez(stale, digest=np.array("another vocabulary"), pooled=np.ones((len(WORDS), 384), np.float32))
    rebuilt = static_word_vectors(VOCAB, 32, cache=stale)  # the model again, from scratch
    with np.load(stale) as data:
        assert str(data["digest"]) == vocab_digest(VOCAB)
    assert np.array_equal(rebuilt, cached)  # deterministic: the same vocabulary, the same vectors
    assert vocab_digest(Vocab(WORDS[::-1])) != vocab_digest(VOCAB)  # the ids are part of the key


@pytest.mark.parametrize("dim", [32, 64])
@pytest.mark.parametrize("sif", [1e-4, None])
def test_related_words_are_closer_than_unrelated_ones(cache, dim, sif):
    vectors = static_word_vectors(VOCAB, dim, sif_coefficient=sif, cache=cache)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def cos(a: str, b: str) -> float:
        return float(unit[VOCAB.id(a)] @ unit[VOCAB.id(b)])

    related = {pair: cos(*pair) for pair in RELATED}
    unrelated = {pair: cos(*pair) for pair in UNRELATED}
    assert min(related.values()) > max(unrelated.values()) + 0.3, (related, unrelated)


def test_frequent_words_get_the_smallest_weights(cache):
    weights = sif_weights(13000, 1e-4)  # the quick profile's vocabulary size
    assert (np.diff(weights) > 0).all() and 0 < weights[0] < 0.01 and 0.9 < weights[-1] < 1
    weighted = np.linalg.norm(static_word_vectors(VOCAB, 32, cache=cache)[2:], axis=1)
    flat = np.linalg.norm(static_word_vectors(VOCAB, 32, sif_coefficient=None, cache=cache)[2:], axis=1)
    ratio = weighted / flat  # sif_weights(len(WORDS)) up to one common factor
    np.testing.assert_allclose(ratio / ratio[-1], sif_weights(len(WORDS), 1e-4) / sif_weights(len(WORDS), 1e-4)[-1],
                               rtol=1e-4)


def test_zero_order_starts_from_the_vectors_and_trains_them(cache):
    vectors = static_word_vectors(VOCAB, 32, cache=cache)
    zero_order = ZeroOrder(len(VOCAB), 32, n_kernels=7)
    zero_order.init_word_vectors(vectors)
    assert torch.equal(zero_order.embed.weight.detach(), torch.from_numpy(vectors))
    q = torch.tensor([[VOCAB.id("white"), VOCAB.id("drill")]])
    i = torch.tensor([[VOCAB.id("black"), VOCAB.id("drills"), VOCAB.id("kit"), 0]])
    zero_order(q, i).sum().backward()
    grad = zero_order.embed.weight.grad
    for word in ("white", "drill", "black", "drills", "kit"):
        assert grad[VOCAB.id(word)].abs().sum() > 0, word
    assert not grad[0].any()  # padding


def test_zero_order_refuses_vectors_of_the_wrong_shape_or_with_nan():
    zero_order = ZeroOrder(len(VOCAB), 32, n_kernels=7)
    with pytest.raises(ValueError, match=r"\[vocab_size, word_dim\] = \[78, 32\], got \(78, 64\)"):
        zero_order.init_word_vectors(np.zeros((len(VOCAB), 64), np.float32))
    bad = np.zeros((len(VOCAB), 32), np.float32)
    bad[5, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        zero_order.init_word_vectors(bad)


@pytest.mark.parametrize("model_cls, config_cls, dim, word_init, sif", [
    (Berm, BermConfig, 64, "minilm", 1e-4), (BermO, BermOConfig, 32, "minilm", 1e-4),
    (BermO, BermOConfig, 32, "minilm-unweighted", None)])
def test_students_start_as_their_config_says_and_record_it(cache, tmp_path, model_cls, config_cls, dim, word_init,
                                                           sif):
    torch.manual_seed(0)
    random_model = model_cls(config_cls(vocab_size=len(VOCAB)))
    before = random_model.zero_order.embed.weight.detach().clone()
    start_word_vectors(random_model, VOCAB, cache=cache)  # "random": nothing to do
    assert torch.equal(random_model.zero_order.embed.weight, before)

    model = model_cls(config_cls(vocab_size=len(VOCAB), word_init=word_init))
    start_word_vectors(model, VOCAB, cache=cache)
    assert model.zero_order.embed.weight.requires_grad
    assert np.array_equal(model.zero_order.embed.weight.detach().numpy(),
                          static_word_vectors(VOCAB, dim, sif_coefficient=sif, cache=cache))
    model.save(tmp_path, vocab=VOCAB)
    config_path = tmp_path / f"{model.name}_config.json"
    assert json.loads(config_path.read_text())["word_init"] == word_init
    assert model_cls.load(tmp_path).config.word_init == word_init
    old = json.loads(config_path.read_text())
    del old["word_init"]  # a config saved before the key existed
    config_path.write_text(json.dumps(old))
    assert model_cls.load(tmp_path).config.word_init == "random"


def test_unknown_word_init_is_refused():
    with pytest.raises(ValueError, match="word_init must be one of random, minilm, minilm-unweighted, got 'glove'"):
        BermOConfig(vocab_size=10, word_init="glove")
