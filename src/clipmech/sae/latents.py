"""The latents of a top-k SAE on the tokens of a site (methods.md Sec. 7): which tokens it reads, its
latent activations z = encode(x) on them and a latent's image-level activation, for the SAE evaluation (:mod:`clipmech.sae.evaluate`,
:mod:`clipmech.sae.alignment`), the MiCLIP units (:mod:`clipmech.miclip.units`) and the atlas
(:mod:`clipmech.atlas.units`).

Tokens come from an activation store (:func:`clipmech.stores.activations.site_activations`, float16) or an
array of site activations (N, T, D); they are cast to float32 and then to the SAE's dtype, encoded on the
SAE's device in batches (the caller's batch sizes: a batch is one ``encode`` call), and returned as float32
on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse
import torch
import xarray as xr

#: Which tokens of a site an SAE reads (``meta["tokens"]`` of its checkpoint).
TOKEN_SETS = ("patch", "class", "all")


def token_positions(tokens: str, n_tokens: int, n_prefix_tokens: int) -> np.ndarray:
    """Token indices an SAE reads: ``patch`` the patch tokens (after the prefix), ``class`` token 0, ``all`` all.

    Returns
    -------
    numpy.ndarray, int64, (T',)
        Increasing.

    Raises
    ------
    ValueError
        For another token set, or ``class`` on a tower without prefix tokens.
    """
    if tokens == "patch":
        return np.arange(n_prefix_tokens, n_tokens)
    if tokens == "class":
        if n_prefix_tokens < 1:
            raise ValueError("tokens 'class' need a class token; this tower has no prefix tokens")
        return np.zeros(1, dtype=np.int64)
    if tokens == "all":
        return np.arange(n_tokens)
    raise ValueError(f"unknown token set {tokens!r}; valid token sets are: {', '.join(TOKEN_SETS)}")


def read_tokens(acts: xr.DataArray, images: Sequence[int], positions: np.ndarray, batch_size: int):
    """Yield the selected tokens of image batches, float32 (B, T', D), in the order of ``images``.

    Parameters
    ----------
    acts : xarray.DataArray, dims (image, token, unit)
        From :func:`clipmech.stores.activations.site_activations`, dims renamed (image, token, unit).
    images : sequence of int
        Positions along the image dim.
    positions : numpy.ndarray, int, (T',)
        From :func:`token_positions`.
    batch_size : int
    """
    images = np.asarray(images, dtype=np.int64)
    for start in range(0, images.size, batch_size):
        batch = acts.isel(image=images[start : start + batch_size], token=positions)
        yield np.asarray(batch.values, dtype=np.float32)


@torch.inference_mode()
def encode(sae: torch.nn.Module, x_BD: np.ndarray) -> np.ndarray:
    """z = ``sae.encode(x)`` of the rows of ``x_BD`` in one call, on the SAE's device and dtype: float32 (B, n)."""
    parameter = next(sae.parameters())
    x = torch.from_numpy(np.ascontiguousarray(x_BD))
    return sae.encode(x.to(device=parameter.device, dtype=parameter.dtype)).float().cpu().numpy()


@torch.inference_mode()
def token_latents(sae: torch.nn.Module, acts, positions: np.ndarray, batch_images: int) -> np.ndarray:
    """The SAE's latents on the tokens at ``positions`` of every image, float32 (N, T', n).

    Parameters
    ----------
    sae : clipmech.sae.model.TopKSAE
    acts : xarray.DataArray or numpy.ndarray, (N, T, D)
        The site's activations: a store's (:func:`clipmech.stores.activations.site_activations`, read lazily
        ``batch_images`` images at a time) or an array.
    positions : numpy.ndarray, int, (T',)
        From :func:`token_positions`.
    batch_images : int
        Images encoded per call (their T' tokens each).

    Raises
    ------
    ValueError
        If the activations are not (N, T, D) (SAE latents of ResNet stages are not supported).
    """
    if len(acts.shape) != 3:
        raise ValueError(f"SAE latents need (N, T, D) site activations, got shape {tuple(acts.shape)}")
    n_images = acts.shape[0]
    z_NTn = np.zeros((n_images, positions.size, sae.n_latents), dtype=np.float32)
    for start in range(0, n_images, batch_images):
        x_NTD = np.asarray(acts[start : start + batch_images], dtype=np.float32)[:, positions]
        z_Bn = encode(sae, x_NTD.reshape(-1, x_NTD.shape[-1]))
        z_NTn[start : start + x_NTD.shape[0]] = z_Bn.reshape(x_NTD.shape[0], positions.size, -1)
    return z_NTn


def image_activations(z_NTU: np.ndarray, patch_T: np.ndarray) -> np.ndarray:
    """The image-level activation of SAE latents (methods.md Sec. 7.4): the maximum over the image's patch
    tokens, the class token excluded; for an SAE that reads no patch token (``tokens: class``), the class
    token's value. The SAE concept alignment (:mod:`clipmech.sae.alignment`) and the atlas
    (:mod:`clipmech.atlas.units`) read every latent (and the alignment's baseline units) this way.

    Parameters
    ----------
    z_NTU : numpy.ndarray, (N, T', U)
        Activations of U units on the T' tokens an SAE reads (:func:`token_positions`) of N images.
    patch_T : numpy.ndarray, bool, (T',)
        Which of the T' tokens are patch tokens.

    Returns
    -------
    numpy.ndarray, float32, (N, U)

    Raises
    ------
    ValueError
        If ``patch_T`` does not mark the T' tokens.
    """
    patch_T = np.asarray(patch_T, dtype=bool)
    if patch_T.shape != (z_NTU.shape[1],):
        raise ValueError(f"patch_T marks {patch_T.shape} tokens, the activations have {z_NTU.shape[1]}")
    tokens = z_NTU[:, patch_T] if patch_T.any() else z_NTU
    return np.asarray(tokens, dtype=np.float32).max(axis=1)


def sparse_image_activations(z_BU, n_images: int, patch_T: np.ndarray) -> np.ndarray:
    """:func:`image_activations` of token activations given as a sparse matrix, from its stored entries: the
    maximum over an image's patch tokens of the stored values, and of 0 where some of those tokens store
    nothing (any sign: the baselines' units are not >= 0).

    Parameters
    ----------
    z_BU : scipy.sparse matrix, (N x T', U)
        Token activations, image-major (row n T' + t is token t of image n).
    n_images : int
        N.
    patch_T : numpy.ndarray, bool, (T',)

    Returns
    -------
    numpy.ndarray, float32, (N, U)

    Raises
    ------
    ValueError
        If the rows are not N x T'.
    """
    patch_T = np.asarray(patch_T, dtype=bool)
    n_tokens = patch_T.size
    if z_BU.shape[0] != n_images * n_tokens:
        raise ValueError(f"token activations have {z_BU.shape[0]} rows, expected {n_images} images x {n_tokens} tokens")
    tokens = patch_T if patch_T.any() else np.ones(n_tokens, dtype=bool)
    coo = scipy.sparse.coo_matrix(z_BU)
    kept = tokens[coo.row % n_tokens]
    cell = (coo.row[kept] // n_tokens) * z_BU.shape[1] + coo.col[kept]
    max_NU = np.full(n_images * z_BU.shape[1], -np.inf, dtype=np.float32)
    np.maximum.at(max_NU, cell, coo.data[kept].astype(np.float32))
    stored_NU = np.bincount(cell, minlength=max_NU.size)
    max_NU = np.where(stored_NU < tokens.sum(), np.maximum(max_NU, 0.0), max_NU)
    return max_NU.reshape(n_images, z_BU.shape[1])


def sparse_latents(sae: torch.nn.Module, x_BD: np.ndarray, batch_size: int) -> scipy.sparse.csc_matrix:
    """The SAE's latents z = encode(x) of every token (row), ``batch_size`` rows per call, float32 (B, n),
    sparse (k non-zeros a row)."""
    parts = [
        scipy.sparse.csr_matrix(encode(sae, x_BD[start : start + batch_size]))
        for start in range(0, x_BD.shape[0], batch_size)
    ]
    return scipy.sparse.vstack(parts).tocsc()
