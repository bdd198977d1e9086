"""OMP text decomposition of directions (clipmech.decomposition.text)."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import wordfreq

from clipmech.decomposition import pool, text, wordlist
from clipmech.models import loading


def test_vocabulary_is_wordfreq_top_list():
    words = wordlist.vocabulary(50)
    assert words == wordfreq.top_n_list("en", 50) and words[0] == "the"
    with pytest.raises(ValueError, match="positive"):
        wordlist.vocabulary(0)


def test_embed_texts_batches_like_one_pass():
    torch.manual_seed(0)
    model = open_clip.create_model("clipmech-rn-tiny", pretrained=None).eval()
    tokenizer = open_clip.get_tokenizer("clipmech-rn-tiny")
    texts = ["red", "a square", "blue circle", "the", "and"]
    batched = wordlist.embed_texts(model, tokenizer, texts, batch_size=2)
    assert batched.shape == (5, 64) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, loading.encode_text(model, tokenizer, texts).numpy(), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def dictionary():
    rng = np.random.default_rng(0)
    d_AE = rng.standard_normal((40, 16))
    return d_AE / np.linalg.norm(d_AE, axis=1, keepdims=True)


def test_sparse_codes_recover_a_known_sparse_direction(dictionary):
    target = 2.0 * (0.8 * dictionary[3] - 0.5 * dictionary[17])  # unnormalised: codes are of the unit direction
    code = text.sparse_codes(target[None], dictionary, n_components=4)
    assert set(code.support[0, :2].tolist()) == {3, 17}
    assert code.n_active[0] == 2  # stopped early: the residual is zero
    unit = target / np.linalg.norm(target)
    approx = text.sparse_directions(code, dictionary, 2, np.array([np.linalg.norm(target)]))
    np.testing.assert_allclose(approx[0], target, atol=1e-5)
    one = text.sparse_directions(code, dictionary, 1, np.ones(1))[0]
    first = code.support[0, 0].item()
    np.testing.assert_allclose(one, (unit @ dictionary[first]) * dictionary[first], atol=1e-5)  # 1-sparse = projection
    words = [f"w{i}" for i in range(40)]
    described = text.describe(code, words, 5)[0]
    assert described.startswith(f"w{first} (") and described.count("(") == 2
    with pytest.raises(ValueError, match="m must be"):
        text.sparse_directions(code, dictionary, 5, np.ones(1))


def test_sparse_approximation_improves_with_m(dictionary):
    rng = np.random.default_rng(1)
    targets = rng.standard_normal((6, 16))
    code = text.sparse_codes(targets, dictionary, n_components=12, batch_size=4)
    errors = [
        np.linalg.norm(text.sparse_directions(code, dictionary, m, np.linalg.norm(targets, axis=1)) - targets, axis=1)
        for m in (1, 4, 12)
    ]
    assert np.all(errors[0] > errors[1]) and np.all(errors[1] > errors[2])


def test_words_table_cosine_of_sparse_code(dictionary):
    rng = np.random.default_rng(2)
    u_HCE = rng.standard_normal((2, 3, 16))
    heads, neurons = np.array([0, 1, 1]), np.array([2, 0, 1])
    code = text.sparse_codes(u_HCE[heads, neurons], dictionary, n_components=16)
    table = text.words_table(heads, neurons, u_HCE, code, dictionary, [f"w{i}" for i in range(40)], 3)
    assert list(table.columns) == ["head", "neuron", "n_atoms", "cos_sparse_u", "words"]
    assert (table["cos_sparse_u"] > 0.999).all()  # 16 atoms span the 16-dim space
    assert table["words"].str.count(r"\(").eq(3).all()


def test_top_pairs_by_text_is_a_sort_of_all_cosines():
    rng = np.random.default_rng(3)
    u_HCE = rng.standard_normal((3, 7, 5))
    u_HCE[1, 4] = 0.0  # a dead pair is never selected
    z_KE = rng.standard_normal((2, 5))
    heads, neurons, cos = pool.top_pairs_by_text(u_HCE, z_KE, 20)
    assert heads.shape == (2, 20)
    for k in range(2):
        all_cos = [
            (u_HCE[h, n] @ z_KE[k] / np.linalg.norm(u_HCE[h, n]) / np.linalg.norm(z_KE[k]), h, n)
            for h in range(3)
            for n in range(7)
            if (h, n) != (1, 4)
        ]
        best = sorted(all_cos, reverse=True)[:20]
        np.testing.assert_allclose(cos[k], [b[0] for b in best], rtol=1e-12)
        assert list(zip(heads[k], neurons[k])) == [(b[1], b[2]) for b in best]
    with pytest.raises(ValueError, match="k must be"):
        pool.top_pairs_by_text(u_HCE, z_KE, 22)


def test_top_pairs_by_text_in_chunks_of_texts_equals_all_texts_at_once(monkeypatch):
    rng = np.random.default_rng(4)
    u_HCE, z_KE = rng.standard_normal((2, 6, 4)), rng.standard_normal((7, 4))
    whole = pool.top_pairs_by_text(u_HCE, z_KE, 5)
    monkeypatch.setattr(pool, "TEXT_CHUNK", 3)
    heads, neurons, cos = pool.top_pairs_by_text(u_HCE, z_KE, 5)
    np.testing.assert_array_equal(heads, whole[0])
    np.testing.assert_array_equal(neurons, whole[1])
    np.testing.assert_allclose(cos, whole[2], rtol=1e-12)  # a chunk's matrix product may round differently
