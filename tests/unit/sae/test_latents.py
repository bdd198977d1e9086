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


def _dense(sae, rows_BD):
    with torch.inference_mode():
        return sae.encode(torch.from_numpy(rows_BD)).numpy()


def test_codes_of_a_store_and_of_an_array_are_the_dense_latents(monkeypatch):
    sae = random_sae(d=6, n_latents=10, k=3, seed=0)
    values_NTD = np.random.default_rng(0).standard_normal((5, 4, 6)).astype(np.float16)
    positions = latents.token_positions("patch", 4, 1)
    rows_BD = values_NTD[:, positions].reshape(-1, 6).astype(np.float32)
    expected_NTn = _dense(sae, rows_BD).reshape(5, 3, 10)
    store = xr.DataArray(values_NTD, dims=("image", "token", "unit"))
    for acts in (store, values_NTD):
        for batch_images in (1, 2, 5):
            codes = latents.token_codes(sae, acts, positions, batch_images)
            assert codes.values_BK.dtype == np.float32 and codes.values_BK.shape == (15, 3)
            assert (codes.n_images, codes.n_tokens, codes.n_latents) == (5, 3, 10)
            np.testing.assert_allclose(codes.columns(slice(None)), expected_NTn, rtol=1e-6, atol=1e-6)
    # One encoder call per batch of images gives the dense encode of that batch exactly; so do slices of rows.
    codes = latents.token_codes(sae, values_NTD, positions, 5)
    np.testing.assert_array_equal(codes.columns(slice(None)), expected_NTn)
    monkeypatch.setattr(latents, "ENCODE_ELEMENTS", 4 * 10)  # 4 rows per encoder call
    sliced = latents.encode_codes(sae, rows_BD)
    np.testing.assert_array_equal(
        latents.codes_matrix(*sliced, 10).toarray(),
        np.concatenate([_dense(sae, rows_BD[i : i + 4]) for i in range(0, 15, 4)]),
    )
    assert latents.encode_codes(sae, rows_BD[:0])[0].shape == (0, 3)
    sparse = latents.sparse_latents(sae, rows_BD, batch_size=4)
    assert scipy.sparse.isspmatrix_csc(sparse) and (sparse.getnnz(axis=1) <= 3).all()
    np.testing.assert_array_equal(
        sparse.toarray(), np.concatenate([_dense(sae, rows_BD[i : i + 4]) for i in range(0, 15, 4)])
    )
    with pytest.raises(ValueError, match=r"\(N, T, D\)"):
        latents.token_codes(sae, values_NTD[:, 0], positions, 2)


def test_what_the_codes_give_equals_what_the_dense_latents_give():
    """Image-level activations, columns and firing sums read from the top-k codes equal the dense latents'
    (exactly; the sums to float64 rounding), with a class token, with latents that never fire and a kept
    top-k value that the ReLU zeroes."""
    rng = np.random.default_rng(1)
    sae = random_sae(d=8, n_latents=40, k=5, seed=1)
    with torch.no_grad():
        sae.b_enc[7] = -50.0  # never fires
        sae.b_enc[:20] -= 2.0  # often a kept pre-activation below 0: a code value of 0
    acts_NTD = rng.standard_normal((12, 10, 8)).astype(np.float32)
    positions = np.arange(10)  # the class token and 9 patches
    patch_T = positions >= 1
    codes = latents.token_codes(sae, acts_NTD, positions, 12)
    z_NTn = _dense(sae, acts_NTD.reshape(-1, 8)).reshape(12, 10, 40)
    assert (codes.values_BK == 0).any() and (z_NTn[..., 7] == 0).all()
    np.testing.assert_array_equal(codes.columns(slice(None)), z_NTn)
    np.testing.assert_array_equal(codes.columns(np.array([3, 7, 0])), z_NTn[..., [3, 7, 0]])
    assert codes.csc.nnz == np.count_nonzero(z_NTn)
    np.testing.assert_array_equal(codes.image_max(patch_T), latents.image_activations(z_NTn, patch_T))
    class_only = latents.token_codes(sae, acts_NTD, positions[:1], 12)
    np.testing.assert_array_equal(
        class_only.image_max(np.zeros(1, bool)), latents.image_activations(z_NTn[:, :1], np.zeros(1, bool))
    )
    chosen_Nn = rng.random((12, 40)) < 0.3
    total_n, count_n = codes.firing_sums(patch_T, chosen_Nn)
    patches_NPn = z_NTn[:, patch_T].astype(np.float64)
    counted = (patches_NPn != 0) & chosen_Nn[:, None, :]
    np.testing.assert_array_equal(count_n, counted.sum(axis=(0, 1)))
    np.testing.assert_allclose(total_n, np.where(counted, patches_NPn, 0.0).sum(axis=(0, 1)), rtol=1e-12)
    with pytest.raises(ValueError, match="marks"):
        codes.image_max(patch_T[1:])


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
