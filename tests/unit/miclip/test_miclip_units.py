"""MiCLIP's image-level activations, typical activations and train / held-out split (clipmech.miclip.units)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from clipmech.miclip import evaluation, units
from clipmech.sae.latents import TokenCodes
from clipmech.stores.activation_extraction import reduce_tokens
from clipmech.stores.base import spill_array


def test_a_neurons_image_level_activation_is_its_mean_over_the_patch_tokens():
    rng = np.random.default_rng(0)
    site_acts = rng.standard_normal((3, 5, 4)).astype(np.float32)
    site_acts[:, 0] = 100.0  # the class token is left out
    acts = units.neuron_image_acts(site_acts, 1)
    assert acts.dtype == np.float64
    np.testing.assert_allclose(acts, site_acts[:, 1:].mean(axis=1), rtol=1e-6)
    stored = reduce_tokens(torch.from_numpy(site_acts)[:, None], "mean", 1)[:, 0].numpy()
    assert np.array_equal(acts, stored.astype(np.float64))  # Algorithm 1's mean, as the store holds it
    resnet = rng.standard_normal((3, 4, 2, 2)).astype(np.float32)  # (N, C, h, w): every position
    np.testing.assert_allclose(units.neuron_image_acts(resnet, 0), resnet.mean(axis=(2, 3)), rtol=1e-6)
    with pytest.raises(ValueError, match="no patch token"):
        units.neuron_image_acts(site_acts[:, :1], 1)


def _codes(latents_NTn):
    """Dense latents as codes that list every latent of every token (k = n)."""
    n_images, n_tokens, n_latents = latents_NTn.shape
    values = np.asarray(latents_NTn, dtype=np.float32).reshape(-1, n_latents)
    indices = np.broadcast_to(np.arange(n_latents), values.shape).copy()
    return TokenCodes(values, indices, n_images, n_tokens, n_latents)


def test_a_latents_image_level_activation_is_its_max_over_the_patch_tokens():
    latents = np.zeros((2, 3, 2), dtype=np.float32)  # tokens at positions 0 (class), 1, 2
    latents[:, 0, 0] = 9.0
    latents[0, 1, 0], latents[0, 2, 0], latents[1, 2, 1] = 2.0, 3.0, 1.5
    acts = units.latent_image_acts(_codes(latents), np.array([0, 1, 2]), 1)
    assert acts.dtype == np.float64
    np.testing.assert_array_equal(acts, [[3.0, 0.0], [0.0, 1.5]])
    with pytest.raises(ValueError, match="patch tokens"):
        units.latent_image_acts(_codes(latents[:, :1]), np.array([0]), 1)


def test_a_latents_typical_activation_is_its_mean_nonzero_firing_on_its_top_images():
    # 100 images, so the top 1 % is one image; latent 0 fires on 2 of 3 patches of its top image
    latents = np.zeros((100, 4, 3))  # token 0 the class token, left out
    latents[:, 0, :] = 50.0
    latents[7, 1:, 0] = [4.0, 0.0, 2.0]
    latents[3, 1:, 0] = [1.0, 1.0, 1.0]  # not a top image of latent 0
    latents[5, 1:, 1] = [0.0, 0.5, 0.0]
    patch = np.array([False, True, True, True])
    acts = latents[:, 1:].max(axis=1)
    typical = units.typical_firing(_codes(latents), patch, acts)
    np.testing.assert_array_equal(typical, [3.0, 0.5, 0.0])  # latent 2 never fires
    assert units.typical_activation(acts)[0] == 4.0  # a neuron's: the mean image-level activation instead
    np.testing.assert_array_equal(units.top_image_mask(acts, 0.01)[[7, 5], [0, 1]], [True, True])
    assert units.top_image_mask(acts, 0.01).sum(axis=0).tolist() == [1, 1, 1]


def test_latent_maps_are_the_patch_tokens_on_the_grid():
    rng = np.random.default_rng(0)
    latents = np.where(rng.random((3, 5, 6)) < 0.4, rng.random((3, 5, 6)), 0.0).astype(np.float32)
    maps = units.LatentMaps(_codes(latents), np.arange(5), 1, (2, 2))
    assert maps.shape == (3, 6, 2, 2) and maps.ndim == 4
    expected = latents[:, 1:].transpose(0, 2, 1).reshape(3, 6, 2, 2)
    np.testing.assert_array_equal(maps[:, 2:5], expected[:, 2:5])
    np.testing.assert_array_equal(maps[:, :], expected)
    np.testing.assert_array_equal(maps[1:3, 2:5], expected[1:3, 2:5])  # an image range: rows of those images
    np.testing.assert_array_equal(maps[2:, :1], expected[2:, :1])
    assert maps[3:3, :].shape == (0, 6, 2, 2)
    with pytest.raises(TypeError, match=r"maps\[first:stop, a:b\] only"):
        maps[0]
    with pytest.raises(TypeError, match=r"maps\[first:stop, a:b\] only"):
        maps[::2, :]
    with pytest.raises(ValueError, match="maps need all 4"):
        units.LatentMaps(_codes(latents), np.arange(4), 1, (2, 2))


def test_the_split_is_disjoint_complete_and_seeded():
    train, heldout = units.split_images(40, 0.5, seed=0)
    assert train.size == heldout.size == 20 and not np.intersect1d(train, heldout).size
    assert np.array_equal(np.union1d(train, heldout), np.arange(40))
    assert np.array_equal(train, np.sort(train)) and np.array_equal(heldout, np.sort(heldout))
    again = units.split_images(40, 0.5, seed=0)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], heldout)
    assert not np.array_equal(units.split_images(40, 0.5, seed=1)[1], heldout)
    with pytest.raises(ValueError, match="holds out no image"):
        units.split_images(3, 0.1, seed=0)


def test_heldout_objects_are_renumbered_to_their_images_positions():
    objects = pd.DataFrame({"image_id": [0, 1, 1, 4, 6], "shape": ["circle", "square", "circle", "triangle", "square"]})
    kept = evaluation.heldout_objects(objects, np.array([1, 4]))
    assert kept["image_id"].tolist() == [0, 0, 1] and kept["shape"].tolist() == ["square", "circle", "triangle"]


def test_a_units_top_image_cutoff_is_its_stably_sorted_top_images_read_a_block_of_units_at_a_time(tmp_path):
    """The (value, image) cutoff of :func:`top_cutoff` marks exactly the first K of each unit's stable
    descending sort (ties to the lower image), over a spilled float32 array read in blocks that do not divide U,
    and over any range of images (:func:`top_mask` of a batch)."""
    rng = np.random.default_rng(4)
    acts = rng.integers(0, 4, size=(250, 11)).astype(np.float32)  # many ties; top 1 %: 2 images
    acts[:, 3] = 0.0  # a dead unit: its first two images
    spilled = spill_array(tmp_path / "acts", (64, 11), 4)
    spilled.append(acts, axis=0)
    expected = np.zeros(acts.shape, dtype=bool)
    order = np.argsort(-acts.astype(np.float64), axis=0, kind="stable")[:2]
    expected[order, np.arange(11)] = True
    value_U, image_U = units.top_cutoff(spilled, 0.01, unit_chunk=4)
    np.testing.assert_array_equal(units.top_mask(acts, 0, value_U, image_U), expected)
    np.testing.assert_array_equal(units.top_mask(acts[100:170], 100, value_U, image_U), expected[100:170])
    np.testing.assert_array_equal(units.top_image_mask(acts, 0.01), expected)
    assert image_U[3] == 1 and expected[:, 3].tolist()[:3] == [True, True, False]
    blocks = list(units.column_blocks(spilled, 4))
    assert [first for first, _ in blocks] == [0, 4, 8] and blocks[-1][1].shape == (250, 3)
    assert blocks[0][1].dtype == np.float64
    with pytest.raises(ValueError, match="unit_chunk"):
        next(units.column_blocks(acts, 0))


def test_word_descriptions_by_unit_blocks_equal_the_whole_cosine_matrix():
    rng = np.random.default_rng(3)
    u_UE, word_AE = rng.normal(size=(11, 6)), rng.normal(size=(40, 6))
    u_UE[4] = 0.0  # a dead unit: every cosine 0, ties to the lower word index
    whole = units.describe(units.cosine(u_UE, word_AE), 5)
    for ours, expected in zip(evaluation._top_words(u_UE, word_AE, 5, unit_chunk=3), whole, strict=True):
        np.testing.assert_array_equal(ours, expected)
