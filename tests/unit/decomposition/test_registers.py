"""Attention sink and register neurons (clipmech.decomposition.registers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from toys import random_attnpool_weights

from clipmech.decomposition import registers
from clipmech.hooks import pool_forward

H, C, GRID = 2, 6, (2, 3)
T = GRID[0] * GRID[1] + 1


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    weights = random_attnpool_weights(rng, T, C, 4, H)
    spatial = np.abs(rng.standard_normal((5, T - 1, C)))
    a_NTC = np.concatenate([spatial.mean(axis=1, keepdims=True), spatial], axis=1)  # token 0 = mean token
    return weights, a_NTC + weights.positional_embedding[None]


def _alpha(x_NTC, weights):
    return pool_forward.query_attention(
        torch.from_numpy(x_NTC), torch.from_numpy(weights.q_weight), torch.from_numpy(weights.q_bias),
        torch.from_numpy(weights.k_weight), weights.n_heads,
    ).numpy()  # fmt: skip


def test_closed_form_equals_recomputing_attention_with_the_neuron_zeroed(toy):
    weights, x_NTC = toy
    for token in (0, 4):
        got_NCH = registers.attention_after_zeroing(x_NTC, weights, token)
        assert got_NCH.shape == (5, C, H)
        for n in range(C):
            zeroed = x_NTC.copy()
            zeroed[:, :, n] = weights.positional_embedding[None, :, n]  # activation 0 everywhere, mean token too
            np.testing.assert_allclose(got_NCH[:, n], _alpha(zeroed, weights)[:, :, token], rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="token"):
        registers.attention_after_zeroing(x_NTC, weights, T)


def test_register_ranking_and_token_table(toy):
    weights, x_NTC = toy
    alpha_NHT = _alpha(x_NTC, weights)
    table = registers.register_neurons(x_NTC, alpha_NHT, weights, token=3, chunk_size=2)
    assert list(table["rank"]) == list(range(1, C + 1)) and sorted(table["neuron"]) == list(range(C))
    assert np.all(np.diff(table["abs_change"]) <= 0)
    change = registers.attention_after_zeroing(x_NTC, weights, 3) - alpha_NHT[:, None, :, 3]
    expected = np.abs(change.mean(axis=2)).mean(axis=0)
    np.testing.assert_allclose(table.set_index("neuron").loc[np.arange(C), "abs_change"], expected, rtol=1e-12)

    alpha = np.full((4, 2, T), 0.5 / T)
    alpha[:, :, 5] += 0.5  # token 5 (row 1, col 1) takes half of every head's attention
    tokens = registers.token_attention_table([alpha], GRID)
    assert tokens.loc[tokens["is_sink"], "token"].tolist() == [5]
    assert tokens.loc[5, ["row", "col"]].tolist() == [1, 1] and tokens.loc[0, "kind"] == "mean"
    assert tokens.loc[5, "max_attention_share"] == 1.0
    np.testing.assert_allclose(tokens["mean_attention"].sum(), 1.0)
    with pytest.raises(ValueError, match="grid"):
        registers.token_attention_table([alpha], (3, 3))
    with pytest.raises(ValueError, match="at least one image"):
        registers.token_attention_table([], GRID)
    rng = np.random.default_rng(3)
    alpha = rng.dirichlet(np.ones(T), size=(9, 2))
    whole = registers.token_attention_table([alpha], GRID)
    chunked = registers.token_attention_table((alpha[i : i + 4] for i in range(0, 9, 4)), GRID)
    pd.testing.assert_frame_equal(chunked, whole, check_exact=False, rtol=1e-13)
