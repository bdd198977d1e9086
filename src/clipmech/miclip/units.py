"""Units of a site, their activations and their MiCLIP embeddings (methods.md Sec. 9.3; MiCLIP Sec. 3.2).

A unit set is (model, site, kind). Kind ``neurons``: the channels of the site, the last axis of an
(N, T, D) transformer site, axis 1 of a ResNet stage (N, C, h, w). Kind ``sae``: the latents of a
top-k SAE (:class:`clipmech.sae.model.TopKSAE`) of the site, on the tokens it reads
(:func:`clipmech.sae.latents.token_positions`; latents: :func:`clipmech.sae.latents.token_codes`, held as
top-k codes, never dense).

Image-level activation (methods.md Sec. 9.3), one definition wherever MiCLIP reads a unit (encoder
input, ground truth, baselines, typical activation): a neuron's is its mean over the patch tokens,
prefix (class) tokens excluded, a ResNet channel's its mean over the feature map's positions
(:func:`neuron_image_acts`, Algorithm 1's ``mean`` reduction); an SAE latent's is its maximum over the
patch tokens the SAE reads (:func:`latent_image_acts`). Activation maps (Network Dissection only): ViT
patch tokens reshaped to the patch grid (prefix tokens dropped), ResNet spatial maps; read a chunk of images
and units at a time (:class:`NeuronMaps` from the site's activations, :class:`LatentMaps` from an SAE's codes).

Unit embeddings: neuron i, u_i = E_n(a_i e_i); SAE latent i, u_i = E_n(a_i d_i), d_i its unit-norm
decoder column; a_i is the unit's typical activation (neurons: :func:`typical_activation`, SAE latents:
:func:`typical_firing`). Cosine is scale-free but not sign-free: a neuron whose typical activation is
negative points the other way. A unit whose typical activation is 0 has the zero embedding, whose
cosine to every concept is defined as 0.
"""

from __future__ import annotations

import numpy as np
import torch

from clipmech.hooks.sites import hooked
from clipmech.sae.latents import TokenCodes
from clipmech.sae.streaming import split_images as _split_images
from clipmech.stores.activation_extraction import reduce_tokens

#: Unit kinds of a unit set.
KINDS = ("neurons", "sae")
#: The fraction of images (a unit's top images) that give its typical activation.
TYPICAL_FRACTION = 0.01
#: Units per column block of the (N, U) image-level activations the evaluation reads at a time
#: (:func:`column_blocks`): a block holds N x UNIT_CHUNK float64 values and their int64 sort order.
UNIT_CHUNK = 256


def split_images(n_images: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MiCLIP's train / held-out split of the probed images: the last ``round(holdout * n_images)`` of a
    permutation drawn by ``numpy.random.default_rng(seed)`` are held out
    (:func:`clipmech.sae.streaming.split_images`, the SAE's rule).

    Returns
    -------
    train, heldout : numpy.ndarray, int64
        Sorted image indices, disjoint, together every image once.

    Raises
    ------
    ValueError
        If ``holdout`` is outside [0, 1) or leaves no training or no held-out image.
    """
    train, heldout = _split_images(n_images, holdout, seed)
    if heldout.size == 0:
        raise ValueError(f"holdout {holdout} of {n_images} images holds out no image")
    return train, heldout


def site_activations(
    model: torch.nn.Module, pixels_NCHW: torch.Tensor, site: str, *, batch_size: int, device: str | torch.device
) -> np.ndarray:
    """The site's activation on every image, float32: (N, T, D) for a transformer site, (N, C, h, w) for a ResNet stage.

    Raises
    ------
    ValueError
        For an unknown site (:func:`clipmech.hooks.sites.hooked`) or batch_size < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts = []
    with torch.inference_mode(), hooked(model, capture=[site]) as cache:
        for start in range(0, pixels_NCHW.shape[0], batch_size):
            cache.reset()
            model.encode_image(pixels_NCHW[start : start + batch_size].to(device))
            parts.append(cache[site].float().cpu().numpy())
    return np.concatenate(parts)


def neuron_image_acts(site_acts: np.ndarray, n_prefix_tokens: int) -> np.ndarray:
    """Image-level neuron activations (module docstring), float64 (N, D): the mean over the patch tokens of
    (N, T, D), the first ``n_prefix_tokens`` left out, or over the positions of a ResNet stage (N, C, h, w),
    computed in float32 by Algorithm 1's ``mean`` reduction
    (:func:`clipmech.stores.activation_extraction.reduce_tokens`), as the activation store holds it.

    Raises
    ------
    ValueError
        If the array is neither 3-D nor 4-D, or a 3-D one has no patch token.
    """
    site_acts = np.asarray(site_acts, dtype=np.float32)
    if site_acts.ndim == 4:
        tokens_NTD, n_prefix_tokens = site_acts.reshape(*site_acts.shape[:2], -1).transpose(0, 2, 1), 0
    elif site_acts.ndim == 3:
        tokens_NTD = site_acts
    else:
        raise ValueError(f"site activations must be (N, T, D) or (N, C, h, w), got shape {site_acts.shape}")
    if tokens_NTD.shape[1] <= n_prefix_tokens:
        raise ValueError(f"{tokens_NTD.shape[1]} tokens hold no patch token after {n_prefix_tokens} prefix tokens")
    mean_N1D = reduce_tokens(torch.from_numpy(np.ascontiguousarray(tokens_NTD))[:, None], "mean", n_prefix_tokens)
    return mean_N1D[:, 0].numpy().astype(np.float64)


def latent_image_acts(codes: TokenCodes, positions: np.ndarray, n_prefix_tokens: int) -> np.ndarray:
    """Image-level SAE latent activations, float64 (N, n): the maximum over the patch tokens among the SAE's
    ``positions`` (:meth:`clipmech.sae.latents.TokenCodes.image_max` of its top-k codes,
    :func:`clipmech.sae.latents.token_codes`), for an SAE that reads patch tokens (the typical firing value
    reads them too).

    Raises
    ------
    ValueError
        If the SAE reads no patch token (``tokens: class``).
    """
    patch = np.asarray(positions) >= n_prefix_tokens
    if not patch.any():
        raise ValueError("MiCLIP's SAE latents need an SAE that reads the patch tokens (sae.tokens patch or all)")
    return codes.image_max(patch).astype(np.float64)


def neuron_maps(site_acts: np.ndarray, n_prefix_tokens: int, grid: tuple[int, int]) -> np.ndarray:
    """Activation maps of the neurons, float32 (N, D, h, w): the patch tokens of (N, T, D) on the grid, or a ResNet map.

    Raises
    ------
    ValueError
        If the tokens after the prefix are not rows x cols of ``grid``.
    """
    site_acts = np.asarray(site_acts, dtype=np.float32)
    if site_acts.ndim == 4:
        return site_acts
    patches = site_acts[:, n_prefix_tokens:]
    if patches.shape[1] != grid[0] * grid[1]:
        raise ValueError(
            f"{patches.shape[1]} patch tokens after {n_prefix_tokens} prefix tokens do not fill the {grid} grid"
        )
    return patches.transpose(0, 2, 1).reshape(site_acts.shape[0], site_acts.shape[2], *grid)


class NeuronMaps:
    """Activation maps of the neurons (:func:`neuron_maps`), an (N, U, rows, cols) float32 array read lazily
    from the site's activations: ``maps[first:stop, a:b]`` (slices of step 1; ``:`` for all) reads channels
    a .. b - 1 of images first .. stop - 1, float32 (stop - first, b - a, rows, cols), what Network Dissection
    reads a chunk of images and units at a time (:func:`clipmech.miclip.baselines.netdissect_iou`). Any other
    key raises TypeError.

    Parameters
    ----------
    site_acts : xarray.DataArray or numpy.ndarray, (N, T, D) or ResNet (N, C, h, w)
        Indexed by position (a probe store's, :func:`clipmech.miclip.probe_store.open_probe_store`).
    n_prefix_tokens : int
    grid : tuple of int
        (rows, cols) of the patch grid (unused for a ResNet stage, whose maps are its activations).
    """

    ndim = 4
    dtype = np.dtype(np.float32)

    def __init__(self, site_acts, n_prefix_tokens: int, grid: tuple[int, int]):
        self.site_acts, self.n_prefix_tokens, self.grid = site_acts, n_prefix_tokens, tuple(grid)
        shape = tuple(site_acts.shape)
        self.unit_axis = 1 if len(shape) == 4 else 2
        self.shape = shape if len(shape) == 4 else (shape[0], shape[2], *self.grid)

    def __getitem__(self, key) -> np.ndarray:
        images, units = _image_unit_slices(key, "NeuronMaps")
        index = (images,) + (slice(None),) * (self.unit_axis - 1) + (units,)
        return neuron_maps(np.asarray(self.site_acts[index], dtype=np.float32), self.n_prefix_tokens, self.grid)


class LatentMaps:
    """Activation maps of SAE latents on the patch grid, an (N, n, rows, cols) float32 array read lazily from
    top-k codes: ``maps[first:stop, a:b]`` (slices of step 1; ``:`` for all) is the dense
    (stop - first, b - a, rows, cols) array of latents a .. b - 1 on images first .. stop - 1, their patch
    tokens (:meth:`clipmech.sae.latents.TokenCodes.columns`), what Network Dissection reads a chunk of images
    and latents at a time (:func:`clipmech.miclip.baselines.netdissect_iou`). Any other key raises TypeError. The codes of every
    image are held (sparse, k values a token).

    Parameters
    ----------
    codes : clipmech.sae.latents.TokenCodes
    positions : numpy.ndarray, int, (T',)
        The token positions the SAE reads.
    n_prefix_tokens : int
    grid : tuple of int
        (rows, cols) of the patch grid.

    Raises
    ------
    ValueError
        If the SAE does not read every patch token.
    """

    ndim = 4
    dtype = np.dtype(np.float32)

    def __init__(self, codes: TokenCodes, positions: np.ndarray, n_prefix_tokens: int, grid: tuple[int, int]):
        self.patch = np.asarray(positions) >= n_prefix_tokens
        if self.patch.sum() != grid[0] * grid[1]:
            raise ValueError(f"the SAE reads {int(self.patch.sum())} patch tokens; maps need all {grid[0] * grid[1]}")
        self.codes, self.grid = codes, tuple(grid)
        self.shape = (codes.n_images, codes.n_latents, *self.grid)

    def __getitem__(self, key) -> np.ndarray:
        images, latents = _image_unit_slices(key, "LatentMaps")
        patches = self.codes.columns(latents, images)[:, self.patch]
        return patches.transpose(0, 2, 1).reshape(patches.shape[0], patches.shape[2], *self.grid)


def _image_unit_slices(key, name: str) -> tuple[slice, slice]:
    """The (images, units) slices of ``maps[first:stop, a:b]`` (steps of 1 only); TypeError for another key."""
    if not (
        isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, slice) and k.step in (None, 1) for k in key)
    ):
        raise TypeError(f"{name} reads maps[first:stop, a:b] only, not maps[{key!r}]")
    return key


def column_blocks(acts_NU, unit_chunk: int = UNIT_CHUNK):
    """The columns of image-level activations ``unit_chunk`` units at a time (methods.md Sec. 9.3: every
    statistic of a unit reads its own column only).

    Parameters
    ----------
    acts_NU : numpy.ndarray or zarr.Array, float, (N, U)
        In memory, or spilled to disk (:func:`clipmech.miclip.evaluation.sae_set`) and read a block at a time.
    unit_chunk : int
        Units per block.

    Yields
    ------
    first : int
        The first unit of the block.
    block_Nb : numpy.ndarray, float64, (N, b)
        Units ``first .. first + b - 1``, b = ``unit_chunk`` but for the last block.

    Raises
    ------
    ValueError
        If ``acts_NU`` is not 2-D or ``unit_chunk`` < 1.
    """
    if len(acts_NU.shape) != 2:
        raise ValueError(f"column_blocks needs (N, U) activations, got shape {acts_NU.shape}")
    if unit_chunk < 1:
        raise ValueError(f"unit_chunk must be >= 1, got {unit_chunk}")
    for first in range(0, acts_NU.shape[1], unit_chunk):
        yield first, np.asarray(acts_NU[:, first : first + unit_chunk], dtype=np.float64)


def top_images(acts_NU: np.ndarray, fraction: float) -> np.ndarray:
    """Each unit's top ``fraction`` of the images by image-level activation (at least 1; ties broken
    towards the lower image index), int64 (K, U)."""
    n_top = max(1, int(fraction * acts_NU.shape[0]))
    return np.argsort(-np.asarray(acts_NU, dtype=np.float64), axis=0, kind="stable")[:n_top]


def top_cutoff(acts_NU, fraction: float, unit_chunk: int = UNIT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's top images (:func:`top_images`) as a cutoff, two numbers per unit instead of an (N, U) mask:
    image n is among unit u's top images iff its activation exceeds ``value_U[u]``, or equals it and
    n <= ``image_U[u]`` (ties go to the lower image index), :func:`top_mask`.

    Parameters
    ----------
    acts_NU : numpy.ndarray or zarr.Array, float, (N, U), N >= 1
        Read ``unit_chunk`` units at a time (:func:`column_blocks`).

    Returns
    -------
    value_U : numpy.ndarray, float64, (U,)
        The activation of each unit's last top image.
    image_U : numpy.ndarray, int64, (U,)
        Its index.
    """
    value_U, image_U = np.empty(acts_NU.shape[1]), np.empty(acts_NU.shape[1], dtype=np.int64)
    for first, block_Nb in column_blocks(acts_NU, unit_chunk):
        last_b = top_images(block_Nb, fraction)[-1]
        value_U[first : first + block_Nb.shape[1]] = block_Nb[last_b, np.arange(block_Nb.shape[1])]
        image_U[first : first + block_Nb.shape[1]] = last_b
    return value_U, image_U


def top_mask(acts_BU: np.ndarray, first_image: int, value_U: np.ndarray, image_U: np.ndarray) -> np.ndarray:
    """Which of images ``first_image .. first_image + B - 1`` (their activations ``acts_BU``, (B, U)) are
    among each unit's top images given its cutoff (:func:`top_cutoff`), bool (B, U)."""
    acts_BU = np.asarray(acts_BU, dtype=np.float64)
    images_B1 = first_image + np.arange(acts_BU.shape[0])[:, None]
    return (acts_BU > value_U) | ((acts_BU == value_U) & (images_B1 <= image_U))


def typical_activation(acts_NU: np.ndarray, fraction: float = TYPICAL_FRACTION) -> np.ndarray:
    """A neuron's typical activation: the mean of its image-level activation over its top ``fraction`` of
    the images (at least 1 image; ties broken towards the lower image index), float64 (U,)."""
    acts_NU = np.asarray(acts_NU, dtype=np.float64)
    return np.take_along_axis(acts_NU, top_images(acts_NU, fraction), axis=0).mean(axis=0)


def typical_firing(
    codes: TokenCodes, patch_T: np.ndarray, acts_Nn: np.ndarray, fraction: float = TYPICAL_FRACTION
) -> np.ndarray:
    """An SAE latent's typical activation, its typical firing value where it fires: the mean of its
    non-zero activations on the patch tokens of its top ``fraction`` of the images by image-level
    activation (:func:`latent_image_acts`; at least 1 image, ties to the lower index), float64 (n,); 0
    for a latent that fires on none of them.

    Parameters
    ----------
    codes : clipmech.sae.latents.TokenCodes
        The latents' top-k codes on the T' tokens of the N images.
    patch_T : numpy.ndarray, bool, (T',)
        The patch tokens among the T'.
    acts_Nn : numpy.ndarray, float, (N, n)
        Image-level latent activations.
    """
    total_n, count_n = codes.firing_sums(patch_T, top_image_mask(acts_Nn, fraction))
    return np.divide(total_n, count_n, out=np.zeros_like(total_n), where=count_n > 0)


def top_image_mask(acts_NU: np.ndarray, fraction: float) -> np.ndarray:
    """Which images are among each unit's top ``fraction`` (:func:`top_images`), bool (N, U)."""
    return top_mask(acts_NU, 0, *top_cutoff(acts_NU, fraction))


def neuron_embeddings(W_ED: np.ndarray, typical_U: np.ndarray) -> np.ndarray:
    """u_i = E_n(a_i e_i) = a_i W[:, i] for every neuron, float64 (U, E)."""
    return (np.asarray(W_ED, dtype=np.float64) * np.asarray(typical_U, dtype=np.float64)[None, :]).T


def latent_embeddings(W_ED: np.ndarray, W_dec_Dn: np.ndarray, typical_U: np.ndarray) -> np.ndarray:
    """u_i = E_n(a_i d_i) = a_i W d_i for every SAE latent, float64 (n, E)."""
    directions_En = np.asarray(W_ED, dtype=np.float64) @ np.asarray(W_dec_Dn, dtype=np.float64)
    return (directions_En * np.asarray(typical_U, dtype=np.float64)[None, :]).T


def cosine(a_UE: np.ndarray, b_CE: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b``, float64 (U, C); 0 for a zero row."""
    a = np.asarray(a_UE, dtype=np.float64)
    b = np.asarray(b_CE, dtype=np.float64)
    norm_a = np.linalg.norm(a, axis=1, keepdims=True)
    norm_b = np.linalg.norm(b, axis=1, keepdims=True)
    a = np.divide(a, norm_a, out=np.zeros_like(a), where=norm_a > 0)
    b = np.divide(b, norm_b, out=np.zeros_like(b), where=norm_b > 0)
    return a @ b.T


def top_indices(scores_XY: np.ndarray, tau: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``tau`` columns of highest score (SelectTop-tau of Eqs. 3, 4), ties to the lower index.

    Returns
    -------
    index_XK, score_XK : numpy.ndarray, (X, min(tau, Y))
        Int64 and float64, descending per row.

    Raises
    ------
    ValueError
        If tau < 1.
    """
    if tau < 1:
        raise ValueError(f"tau must be >= 1, got {tau}")
    scores_XY = np.asarray(scores_XY, dtype=np.float64)
    order = np.argsort(-scores_XY, axis=1, kind="stable")[:, :tau]
    return order, np.take_along_axis(scores_XY, order, axis=1)


def localise(scores_UC: np.ndarray, tau: int) -> tuple[np.ndarray, np.ndarray]:
    """L_c (Eq. 3): the top-tau units of every concept by a unit x concept score; (C, tau) indices and scores."""
    return top_indices(np.asarray(scores_UC).T, tau)


def describe(scores_UC: np.ndarray, tau: int) -> tuple[np.ndarray, np.ndarray]:
    """D_u (Eq. 4): the top-tau concepts of every unit by a unit x concept score; (U, tau) indices and scores."""
    return top_indices(scores_UC, tau)


def random_units(n_units: int, n_concepts: int, tau: int, seed: int) -> np.ndarray:
    """The random-unit control: per concept, ``tau`` distinct units drawn by ``numpy.random.default_rng(seed)``,
    concept by concept, int64 (C, min(tau, n_units))."""
    rng = np.random.default_rng(seed)
    k = min(tau, n_units)
    return np.stack([rng.choice(n_units, size=k, replace=False) for _ in range(n_concepts)]).astype(np.int64)
