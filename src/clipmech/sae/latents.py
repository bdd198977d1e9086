"""The latents of a top-k SAE on the tokens of a site (methods.md Sec. 7): which tokens it reads, its
latent activations z = encode(x) on them, held sparse, and a latent's image-level activation, for the SAE
evaluation (:mod:`clipmech.sae.evaluate`, :mod:`clipmech.sae.alignment`), the MiCLIP units
(:mod:`clipmech.miclip.units`) and the atlas (:mod:`clipmech.atlas.units`).

Tokens come from an activation store (:func:`clipmech.stores.activations.site_activations`, float16) or an
array of site activations (N, T, D); they are cast to float32 and then to the SAE's dtype and encoded on the
SAE's device in batches (:func:`encode_codes`). A token's latents are held as its top-k code, the k values
ReLU(TopK_k(pre)) and their latent indices (:class:`TokenCodes`), or as a ``scipy.sparse`` matrix of them
(:func:`sparse_latents`): never as a dense (tokens x n) array, which at n = 65,536 latents takes 256 KiB per
token. Only the encoder's own pre-activations are dense, one bounded slice of tokens at a time
(:data:`ENCODE_ELEMENTS`). Whatever is read from the codes (a latent's image-level activation, its maps,
its firing on chosen images) equals what the dense latents give: the codes hold every non-zero latent.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch
import xarray as xr

#: Which tokens of a site an SAE reads (``meta["tokens"]`` of its checkpoint).
TOKEN_SETS = ("patch", "class", "all")
#: The most pre-activation elements (tokens x latents) of one encoder call, 64 MiB in float32: a batch of
#: more tokens is encoded in slices of ``max(1, ENCODE_ELEMENTS // n)`` tokens (4,096 tokens at n = 4,096).
ENCODE_ELEMENTS = 1 << 24


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
def encode_codes(sae: torch.nn.Module, x_BD: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The top-k codes of the rows of ``x_BD``: ``sae.topk(sae.pre_activations(x))`` on the SAE's device and
    dtype, in slices of at most ``ENCODE_ELEMENTS // n`` rows (:data:`ENCODE_ELEMENTS`).

    The dense latents ``sae.encode(x)`` hold exactly these values at these indices and zeros elsewhere.

    Parameters
    ----------
    sae : clipmech.sae.model.TopKSAE
    x_BD : numpy.ndarray, float, (B, d)

    Returns
    -------
    values_BK : numpy.ndarray, float32, (B, k)
        ReLU'd, so >= 0 (a kept pre-activation below 0 gives a 0).
    indices_BK : numpy.ndarray, int64, (B, k)
        Distinct latent indices of each row.
    """
    parameter = next(sae.parameters())
    rows = max(1, ENCODE_ELEMENTS // sae.n_latents)
    values, indices = [np.zeros((0, sae.k), np.float32)], [np.zeros((0, sae.k), np.int64)]
    for start in range(0, len(x_BD), rows):
        x = torch.from_numpy(np.ascontiguousarray(x_BD[start : start + rows], dtype=np.float32))
        values_BK, indices_BK = sae.topk(sae.pre_activations(x.to(device=parameter.device, dtype=parameter.dtype)))
        values.append(values_BK.float().cpu().numpy())
        indices.append(indices_BK.cpu().numpy())
    return np.concatenate(values), np.concatenate(indices)


@dataclass(frozen=True, eq=False)
class TokenCodes:
    """An SAE's latents on the T' tokens it reads of N images, as top-k codes (module docstring).

    Attributes
    ----------
    values_BK : numpy.ndarray, float32, (N x T', k)
        ReLU'd top-k values (>= 0), rows image-major (row n T' + t is token t of image n).
    indices_BK : numpy.ndarray, int64, (N x T', k)
        Their latent indices, distinct within a row.
    n_images, n_tokens, n_latents : int
        N, T' and n.
    """

    values_BK: np.ndarray
    indices_BK: np.ndarray
    n_images: int
    n_tokens: int
    n_latents: int

    def _tokens(self, patch_T: np.ndarray) -> np.ndarray:
        patch_T = np.asarray(patch_T, dtype=bool)
        if patch_T.shape != (self.n_tokens,):
            raise ValueError(f"patch_T marks {patch_T.shape} tokens, the codes have {self.n_tokens}")
        return patch_T

    def image_max(self, patch_T: np.ndarray) -> np.ndarray:
        """The latents' image-level activations, float32 (N, n): :func:`image_activations` of the dense
        latents (the maximum over the patch tokens, or the class token's value when ``patch_T`` marks none),
        computed from the codes (``torch.Tensor.scatter_reduce`` with ``amax``; a latent absent from every
        code of the image reads 0, as do the dense latents, which are >= 0).

        Raises
        ------
        ValueError
            If ``patch_T`` (bool, (T',)) does not mark the T' tokens.
        """
        patch_T = self._tokens(patch_T)
        tokens = patch_T if patch_T.any() else np.ones(self.n_tokens, dtype=bool)
        k = self.values_BK.shape[1]
        values = self.values_BK.reshape(self.n_images, self.n_tokens, k)[:, tokens].reshape(self.n_images, -1)
        indices = self.indices_BK.reshape(self.n_images, self.n_tokens, k)[:, tokens].reshape(self.n_images, -1)
        image_Nn = torch.zeros(self.n_images, self.n_latents, dtype=torch.float32)
        image_Nn.scatter_reduce_(1, torch.from_numpy(indices), torch.from_numpy(values), reduce="amax")
        return image_Nn.numpy()

    @functools.cached_property
    def csc(self) -> scipy.sparse.csc_matrix:
        """The latents as a sparse (N x T', n) float32 matrix (:func:`codes_matrix`), built once."""
        return codes_matrix(self.values_BK, self.indices_BK, self.n_latents)

    def columns(self, latents: np.ndarray | slice, images: slice = slice(None)) -> np.ndarray:
        """The dense latents of some latents on a range of images (step 1; default all), float32 (n, T', L),
        from the rows of those images in :attr:`csc` (costing the non-zeros of those latents, nothing dense
        beyond the block)."""
        first, stop, _ = images.indices(self.n_images)
        stop = max(first, stop)
        block = self.csc[first * self.n_tokens : stop * self.n_tokens, latents].toarray()
        return block.reshape(stop - first, self.n_tokens, block.shape[1])

    def firing_sums(self, patch_T: np.ndarray, chosen_Nn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per latent, the sum (float64) and the count (int64) of its non-zero activations on the patch tokens
        of the images chosen for it, (n,) each.

        Parameters
        ----------
        patch_T : numpy.ndarray, bool, (T',)
            The patch tokens among the T'.
        chosen_Nn : numpy.ndarray, bool, (N, n)
            Which images count for each latent.
        """
        patch_T = self._tokens(patch_T)
        k = self.values_BK.shape[1]
        values = self.values_BK.reshape(self.n_images, self.n_tokens, k)[:, patch_T]
        indices = self.indices_BK.reshape(self.n_images, self.n_tokens, k)[:, patch_T]
        images = np.broadcast_to(np.arange(self.n_images)[:, None, None], indices.shape)
        kept = (values != 0) & np.asarray(chosen_Nn, dtype=bool)[images, indices]
        latents = indices[kept]
        total_n = np.bincount(latents, weights=values[kept].astype(np.float64), minlength=self.n_latents)
        return total_n, np.bincount(latents, minlength=self.n_latents)


def token_codes(sae: torch.nn.Module, acts, positions: np.ndarray, batch_images: int) -> TokenCodes:
    """The SAE's top-k codes on the tokens at ``positions`` of every image (:class:`TokenCodes`).

    Parameters
    ----------
    sae : clipmech.sae.model.TopKSAE
    acts : xarray.DataArray or numpy.ndarray, (N, T, D)
        The site's activations: a store's (:func:`clipmech.stores.activations.site_activations`, read lazily
        ``batch_images`` images at a time) or an array.
    positions : numpy.ndarray, int, (T',)
        From :func:`token_positions`.
    batch_images : int
        Images read at a time (their T' tokens each; :func:`encode_codes` slices them further).

    Raises
    ------
    ValueError
        If the activations are not (N, T, D) (SAE latents of ResNet stages are not supported).
    """
    if len(acts.shape) != 3:
        raise ValueError(f"SAE latents need (N, T, D) site activations, got shape {tuple(acts.shape)}")
    n_images = acts.shape[0]
    values, indices = [np.zeros((0, sae.k), np.float32)], [np.zeros((0, sae.k), np.int64)]
    for start in range(0, n_images, batch_images):
        x_NTD = np.asarray(acts[start : start + batch_images], dtype=np.float32)[:, positions]
        values_BK, indices_BK = encode_codes(sae, x_NTD.reshape(-1, x_NTD.shape[-1]))
        values.append(values_BK)
        indices.append(indices_BK)
    return TokenCodes(np.concatenate(values), np.concatenate(indices), n_images, positions.size, sae.n_latents)


def image_activations(z_NTU: np.ndarray, patch_T: np.ndarray) -> np.ndarray:
    """The image-level activation of SAE latents (methods.md Sec. 7.4): the maximum over the image's patch
    tokens, the class token excluded; for an SAE that reads no patch token (``tokens: class``), the class
    token's value. The SAE concept alignment (:mod:`clipmech.sae.alignment`) and the atlas
    (:mod:`clipmech.atlas.units`) read every latent (and the alignment's baseline units) this way; from top-k
    codes, :meth:`TokenCodes.image_max` computes the same.

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


def codes_matrix(values_BK: np.ndarray, indices_BK: np.ndarray, n_latents: int) -> scipy.sparse.csc_matrix:
    """Top-k codes (values float (B, k), distinct latent indices int (B, k) per row) as the sparse (B, n)
    float32 matrix of the latents, the zero values left out."""
    rows = np.repeat(np.arange(values_BK.shape[0]), values_BK.shape[1])
    matrix = scipy.sparse.csc_matrix(
        (np.asarray(values_BK, dtype=np.float32).ravel(), (rows, np.asarray(indices_BK).ravel())),
        shape=(values_BK.shape[0], n_latents),
        dtype=np.float32,
    )
    matrix.eliminate_zeros()
    return matrix


def sparse_latents(sae: torch.nn.Module, x_BD: np.ndarray, batch_size: int) -> scipy.sparse.csc_matrix:
    """The SAE's latents z = encode(x) of every token (row), float32 (B, n), sparse (at most k non-zeros a
    row; :func:`codes_matrix`), from the top-k codes of ``batch_size`` rows at a time (:func:`encode_codes`,
    which slices further)."""
    values, indices = [np.zeros((0, sae.k), np.float32)], [np.zeros((0, sae.k), np.int64)]
    for start in range(0, x_BD.shape[0], batch_size):
        values_BK, indices_BK = encode_codes(sae, x_BD[start : start + batch_size])
        values.append(values_BK)
        indices.append(indices_BK)
    return codes_matrix(np.concatenate(values), np.concatenate(indices), sae.n_latents)
