"""The MiCLIP loss and encoder (clipmech.miclip.encoder): hand-computed InfoNCE, symmetry, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clipmech.miclip import encoder


def test_infonce_matches_a_hand_computed_2x2_case():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    # S = cos / tau with tau = 1: [[1, 1/sqrt2], [0, 1/sqrt2]]
    s = 1 / math.sqrt(2)
    rows = -(1 - math.log(math.exp(1) + math.exp(s))) - (s - math.log(1 + math.exp(s)))
    cols = -(1 - math.log(math.exp(1) + 1)) - (s - math.log(2 * math.exp(s)))
    expected = (rows + cols) / 4
    assert float(encoder.symmetric_infonce(a, b, 1.0)) == pytest.approx(expected, abs=1e-12)
    assert float(encoder.symmetric_infonce(b, a, 1.0)) == pytest.approx(expected, abs=1e-12)


def test_infonce_is_symmetric_and_scale_free():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    assert float(encoder.symmetric_infonce(a, b, 0.07)) == pytest.approx(float(encoder.symmetric_infonce(b, a, 0.07)))
    assert float(encoder.symmetric_infonce(3 * a, b, 0.07)) == pytest.approx(
        float(encoder.symmetric_infonce(a, b, 0.07))
    )
    with pytest.raises(ValueError, match="temperature"):
        encoder.symmetric_infonce(a, b, 0.0)
    with pytest.raises(ValueError, match="valid losses are: both, input, output"):
        encoder.alignment_loss(a, b, b[:, None], "neither", 0.07)


def test_training_is_deterministic_and_lowers_the_loss():
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((64, 6))
    images = acts @ rng.standard_normal((6, 4))
    concepts = np.repeat(images[:, None], 2, axis=1)
    kwargs = dict(loss="both", seed=3, steps=60, batch_size=16, lr=0.05, temperature=0.1)
    W1, losses1 = encoder.train_encoder(acts, images, concepts, **kwargs)
    W2, losses2 = encoder.train_encoder(acts, images, concepts, **kwargs)
    assert W1.shape == (4, 6) and np.array_equal(W1, W2) and np.array_equal(losses1, losses2)
    assert losses1[-10:].mean() < losses1[:10].mean()
