"""Unit tests of the SAE's token positions and its latents on store tokens (methods.md Sec. 7)."""

import numpy as np
import pytest
import scipy.sparse
import torch
import xarray as xr
from hand_saes import random_sae

from clipmech.sae import latents


def test_token_positions():
    np.testing.assert_array_equal(latents.token_positions("patch", 5, 1), [1, 2, 3, 4])
    np.testing.assert_array_equal(latents.token_positions("class", 5, 1), [0])
    np.testing.assert_array_equal(latents.token_positions("all", 5, 1), [0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="valid token sets are: patch, class, all"):
        latents.token_positions("cls", 5, 1)
    with pytest.raises(ValueError, match="class token"):
        latents.token_positions("class", 4, 0)


def test_latents_of_a_store_and_of_an_array_agree_with_encode():
    sae = random_sae(d=6, n_latents=10, k=3, seed=0)
    values_NTD = np.random.default_rng(0).standard_normal((5, 4, 6)).astype(np.float16)
    positions = latents.token_positions("patch", 4, 1)
    rows_BD = values_NTD[:, positions].reshape(-1, 6).astype(np.float32)
    with torch.inference_mode():
        expected_NTn = sae.encode(torch.from_numpy(rows_BD)).numpy().reshape(5, 3, 10)
    store = xr.DataArray(values_NTD, dims=("image", "token", "unit"))
    for acts in (store, values_NTD):
        for batch_images in (1, 2, 5):
            z_NTn = latents.token_latents(sae, acts, positions, batch_images)
            assert z_NTn.dtype == np.float32 and z_NTn.shape == (5, 3, 10)
            np.testing.assert_allclose(z_NTn, expected_NTn, rtol=1e-6, atol=1e-6)
    sparse = latents.sparse_latents(sae, rows_BD, batch_size=4)
    assert scipy.sparse.isspmatrix_csc(sparse) and (sparse.getnnz(axis=1) <= 3).all()
    np.testing.assert_array_equal(
        sparse.toarray(), np.concatenate([latents.encode(sae, rows_BD[i : i + 4]) for i in range(0, 15, 4)])
    )
    with pytest.raises(ValueError, match=r"\(N, T, D\)"):
        latents.token_latents(sae, values_NTD[:, 0], positions, 2)


def test_image_activation_of_a_latent_is_its_max_over_the_patch_tokens():
    z_NTU = np.zeros((2, 4, 3), dtype=np.float32)
    z_NTU[:, 0, :] = 9.0  # the class token: left out
    z_NTU[0, 2, 0], z_NTU[1, 3, 1], z_NTU[1, 1, 1] = 2.0, 1.5, 0.5
    patch_T = np.array([False, True, True, True])
    image_NU = latents.image_activations(z_NTU, patch_T)
    assert image_NU.dtype == np.float32
    np.testing.assert_array_equal(image_NU, [[2.0, 0.0, 0.0], [0.0, 1.5, 0.0]])
    # An SAE that reads the class token only: its value.
    np.testing.assert_array_equal(latents.image_activations(z_NTU[:, :1], np.zeros(1, dtype=bool)), z_NTU[:, 0])
    with pytest.raises(ValueError, match="marks"):
        latents.image_activations(z_NTU, patch_T[1:])


def test_image_activations_of_a_sparse_matrix_are_those_of_the_dense_one():
    """Any sign: an image whose patch tokens all store a negative value reads their maximum, one with a token
    storing nothing reads at least 0."""
    rng = np.random.default_rng(2)
    z_NTU = np.where(rng.random((6, 5, 4)) < 0.5, rng.standard_normal((6, 5, 4)), 0.0).astype(np.float32)
    z_NTU[0, 1:, 0] = [-3.0, -1.0, -2.0, -4.0]  # every patch token stored, all negative: -1
    z_NTU[1, 1:, 1] = [-3.0, 0.0, -2.0, -4.0]  # one patch token not stored: 0
    z_NTU[2, 0, 2], z_NTU[2, 1:, 2] = 7.0, 0.0  # the class token is left out
    for patch_T in (np.array([False, True, True, True, True]), np.ones(5, bool)):
        sparse = scipy.sparse.csc_matrix(z_NTU.reshape(-1, 4))
        image_NU = latents.sparse_image_activations(sparse, 6, patch_T)
        assert image_NU.dtype == np.float32
        np.testing.assert_array_equal(image_NU, latents.image_activations(z_NTU, patch_T))
    assert latents.sparse_image_activations(sparse, 6, np.array([False, True, True, True, True]))[0, 0] == -1.0
    class_only = scipy.sparse.csc_matrix(z_NTU[:, 0])
    np.testing.assert_array_equal(
        latents.sparse_image_activations(class_only, 6, np.zeros(1, bool)), z_NTU[:, 0].astype(np.float32)
    )
    with pytest.raises(ValueError, match="expected 5 images x 5 tokens"):
        latents.sparse_image_activations(sparse, 5, np.ones(5, bool))
