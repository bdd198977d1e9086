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
    train, heldout = (acts[:48], images[:48], concepts[:48]), (acts[48:], images[48:], concepts[48:])
    kwargs = dict(loss="both", seed=3, steps=60, batch_size=16, lr=0.05, temperature=0.1)
    W1, losses1, heldout1 = encoder.train_encoder(*train, heldout, **kwargs)
    W2, losses2, heldout2 = encoder.train_encoder(*train, heldout, **kwargs)
    assert W1.shape == (4, 6) and np.array_equal(W1, W2) and np.array_equal(losses1, losses2)
    assert np.array_equal(heldout1, heldout2) and heldout1.shape == (60,)
    assert losses1[-10:].mean() < losses1[:10].mean() and heldout1[-10:].mean() < heldout1[:10].mean()


def test_heldout_images_only_enter_the_heldout_loss():
    """The weights and training losses are those of the training images alone; the held-out loss of a
    step is that of the weights before its update, on near-equal consecutive batches."""
    rng = np.random.default_rng(1)
    acts, images = rng.standard_normal((40, 5)), rng.standard_normal((40, 3))
    concepts = rng.standard_normal((40, 3, 3))
    train = (acts[:30], images[:30], concepts[:30])
    kwargs = dict(loss="both", seed=0, steps=5, batch_size=4, lr=0.01, temperature=0.1)
    W, losses, heldout = encoder.train_encoder(*train, (acts[30:], images[30:], concepts[30:]), **kwargs)
    W_other, losses_other, _ = encoder.train_encoder(*train, (acts[:3], images[:3], concepts[:3]), **kwargs)
    assert np.array_equal(W, W_other) and np.array_equal(losses, losses_other)
    W0 = torch.randn(3, 5, generator=torch.Generator().manual_seed(0)) / np.sqrt(5)  # the initial weights
    held = [torch.as_tensor(np.asarray(a[30:], dtype=np.float32)) for a in (acts, images, concepts)]
    batches = [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]  # 10 images in ceil(10 / 4) = 3 near-equal batches
    expected = sum(
        float(encoder.alignment_loss(held[0][b] @ W0.T, held[1][b], held[2][b], "both", 0.1)) * len(b) for b in batches
    )
    assert heldout[0] == pytest.approx(expected / 10, rel=1e-6)
    with pytest.raises(ValueError, match="held-out"):
        encoder.train_encoder(*train, (acts[:0], images[:0], concepts[:0]), **kwargs)
