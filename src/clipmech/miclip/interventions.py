"""Interventions on the units of a concept and the change of zero-shot accuracy (methods.md Sec. 9;
MiCLIP Sec. 3.3, Eq. 5, Sec. 4.3, Table 2).

Eq. 5 on the top-tau units L_c of a concept, at every token (ResNet: every spatial position), through
:func:`clipmech.hooks.sites.hooked` edits of the live site. Many interventions run in one forward pass
(:func:`copy_predictions`): each image is repeated once per intervention at the site's block, so the
layers before it run once per image, and copy k gets the k-th edit (:func:`neuron_copies`,
:func:`sae_copies`); copy 0 of every pass may be the identity, the "before" of the others.

- neurons (channels of the site): scaling x_i -> beta x_i, adding x_i -> x_i + beta a_i (a_i the unit's
  typical activation, :func:`clipmech.miclip.units.typical_activation`: its mean patch-token activation
  averaged over its top 1 % of the images);
- SAE latents: scaling x -> x + sum_{i in L_c} (beta - 1) f_i(x) d_i, adding x -> x + sum_i beta a_i d_i,
  f_i(x) the latent's activation on the token, d_i its decoder column and a_i its typical firing value
  (:func:`clipmech.miclip.units.typical_firing`: the mean of its non-zero patch-token activations on its
  top 1 % of the images), on the tokens the SAE reads. The SAE's reconstruction error is kept (the input
  is edited, not replaced by its reconstruction), so scaling by 1 and adding 0 change nothing, exactly.

Accuracy (:func:`concept_accuracy`): on the single-label images of concept c (:func:`single_label_images`:
every object carries c, so c is the one right answer of its attribute type; positions are distinct
within a scene, and by default so are shapes and colours, so these are c's single-object scenes), the
fraction whose zero-shot prediction among the prompts of c's type
(:func:`clipmech.models.zeroshot.attribute_prompts`, the target's own text tower) is c, as the paper's
single-label accuracy. Delta Acc = accuracy after - before, in percentage points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from clipmech.data import shapes
from clipmech.hooks.rows import expand_rows, repeat_rows
from clipmech.hooks.sites import hooked, resolve
from clipmech.models import zeroshot
from clipmech.models.towers import tower

#: Intervention forms of Eq. 5.
FORMS = ("scale", "add")


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"unknown intervention {form!r}; valid interventions are: {', '.join(FORMS)}")


#: One intervention: (unit indices, form, beta); the identity is ``((), "scale", 1.0)``.
Copy = tuple[Sequence[int], str, float]
#: The intervention that changes nothing, exactly (the "before" copy of every pass).
IDENTITY: Copy = ((), "scale", 1.0)


def _copy_index(units: Sequence[int], n_units: int) -> np.ndarray:
    index = np.asarray(units, dtype=np.int64).reshape(-1)
    if index.size and (index.min() < 0 or index.max() >= n_units):
        raise ValueError(f"unit indices must lie in 0..{n_units - 1}, got {index.tolist()}")
    return index


def _copy_coefficients(
    copies: Sequence[Copy], typical_U: np.ndarray, *, relative: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per copy and unit, float64 (K, U): the factor of the scale form (beta on the chosen units and 1
    elsewhere; ``relative``: beta - 1 and 0, the change) and the offset of the add form (beta a_u on the
    chosen units, 0 elsewhere)."""
    typical_U = np.asarray(typical_U, dtype=np.float64)
    factor_KU = np.full((len(copies), typical_U.size), 0.0 if relative else 1.0)
    offset_KU = np.zeros((len(copies), typical_U.size))
    for k, (units, form, beta) in enumerate(copies):
        _check_form(form)
        index = _copy_index(units, typical_U.size)
        if form == "scale":
            factor_KU[k, index] = beta - 1.0 if relative else beta
        else:
            offset_KU[k, index] = beta * typical_U[index]
    return torch.from_numpy(factor_KU), torch.from_numpy(offset_KU)


def neuron_copies(
    copies: Sequence[Copy], typical_U: np.ndarray, channel_axis: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """An edit of a site's channels for K interventions at once (Eq. 5), one per copy of each image.

    The site's tensor holds n images x K copies, image-major (row ``i * K + k`` is copy k of image i, the
    layout :func:`copy_predictions` makes). Copy k = (units, form, beta): ``scale`` x_u -> beta x_u,
    ``add`` x_u -> x_u + beta a_u (a_u the unit's typical activation), on the chosen channels at every
    token or position; every other channel is multiplied by 1 and shifted by 0, so it is unchanged,
    exactly, and so is every channel of the identity copy.

    Parameters
    ----------
    copies : sequence of (sequence of int, {"scale", "add"}, float)
    typical_U : numpy.ndarray, (U,)
        Typical activations of all U channels of the site (used by ``add``).
    channel_axis : int
        -1 for (N, T, D) sites, 1 for ResNet stages (N, C, h, w).

    Raises
    ------
    ValueError
        On creation for another form or a unit outside 0..U-1; during the forward if the site does not
        have U channels or its rows are not a multiple of K.
    """
    factor_KU, offset_KU = _copy_coefficients(copies, typical_U, relative=False)
    n_copies, n_units = factor_KU.shape

    def edit(act: torch.Tensor) -> torch.Tensor:
        if act.shape[channel_axis] != n_units or act.shape[0] % n_copies:
            raise ValueError(
                f"the site has {act.shape[channel_axis]} channels and {act.shape[0]} rows; the edit is for "
                f"{n_units} channels and a multiple of {n_copies} rows"
            )
        x = act.movedim(channel_axis, -1)
        x_nKRU = x.reshape(-1, n_copies, int(np.prod(x.shape[1:-1], dtype=np.int64)), n_units)
        factor, offset = (t.to(device=act.device, dtype=act.dtype)[None, :, None, :] for t in (factor_KU, offset_KU))
        return (x_nKRU * factor + offset).reshape(x.shape).movedim(-1, channel_axis)

    return edit


def sae_copies(
    sae: torch.nn.Module, positions: np.ndarray, copies: Sequence[Copy], typical_U: np.ndarray
) -> Callable[[torch.Tensor], torch.Tensor]:
    """An edit of an (N, T, D) site along SAE decoder directions for K interventions at once (Eq. 5, module
    docstring), on the tokens at ``positions``; rows as in :func:`neuron_copies`.

    Copy k = (latents, form, beta): ``scale`` x -> x + sum_i (beta - 1) f_i(x) d_i, ``add`` x -> x + sum_i
    beta a_i d_i. The identity copy, and every copy on the tokens outside ``positions``, is unchanged,
    exactly (the SAE's reconstruction error is kept). The copies of an image are equal at the site (they
    differ only by their edits here), so f(x) is encoded once per image, from its copy 0.

    Parameters
    ----------
    sae : clipmech.sae.model.TopKSAE
    positions : numpy.ndarray, int64
        The token positions the SAE reads.
    copies : sequence of (sequence of int, {"scale", "add"}, float)
    typical_U : numpy.ndarray, (n_latents,)

    Raises
    ------
    ValueError
        On creation for another form or a latent outside 0..n-1; during the forward if the rows are not a
        multiple of K.
    """
    coeff_KU, offset_KU = _copy_coefficients(copies, typical_U, relative=True)
    n_copies = coeff_KU.shape[0]
    parameter = next(sae.parameters())
    W_dec_DU = sae.W_dec.detach()
    offset_KD = (offset_KU.to(W_dec_DU) @ W_dec_DU.T).double()
    # Only the latents some copy scales enter the product (at most tau per copy, of n).
    scaled = torch.nonzero(coeff_KU.abs().sum(dim=0) > 0).flatten()
    column_n = torch.full((coeff_KU.shape[1],), scaled.numel(), dtype=torch.int64)  # S: not scaled
    column_n[scaled] = torch.arange(scaled.numel())
    coeff_KS, W_dec_DS = coeff_KU[:, scaled], W_dec_DU[:, scaled.to(W_dec_DU.device)]
    pos = torch.as_tensor(np.asarray(positions, dtype=np.int64))

    def edit(act_NTD: torch.Tensor) -> torch.Tensor:
        if act_NTD.shape[0] % n_copies:
            raise ValueError(f"the site has {act_NTD.shape[0]} rows, not a multiple of the {n_copies} copies")
        index = pos.to(act_NTD.device)
        x_nKPD = act_NTD[:, index].reshape(-1, n_copies, index.numel(), act_NTD.shape[-1])
        delta_nKPD = offset_KD.to(device=act_NTD.device, dtype=act_NTD.dtype)[None, :, None, :]
        if scaled.numel():
            # The copies of an image are equal up to the site, so its latents are encoded once, from copy 0.
            x_BD = x_nKPD[:, 0].reshape(-1, x_nKPD.shape[-1]).to(device=parameter.device, dtype=parameter.dtype)
            z_nPS = _scaled_latents(sae, x_BD, column_n.to(parameter.device), scaled.numel())
            z_nPS = z_nPS.reshape(x_nKPD.shape[0], x_nKPD.shape[2], -1)
            scaled_nKPS = z_nPS[:, None] * coeff_KS.to(z_nPS)[None, :, None, :]
            delta_nKPD = delta_nKPD + (scaled_nKPS @ W_dec_DS.T).to(device=act_NTD.device, dtype=act_NTD.dtype)
        out = act_NTD.clone()
        out[:, index] = (x_nKPD + delta_nKPD).reshape(act_NTD.shape[0], index.numel(), act_NTD.shape[-1])
        return out

    return edit


def _scaled_latents(sae: torch.nn.Module, x_BD: torch.Tensor, column_n: torch.Tensor, n_scaled: int) -> torch.Tensor:
    """The latents f_i(x) of the S scaled latents, (B, S), from the top-k codes of ``x_BD`` (never the dense (B, n)
    latents): ``column_n`` (int64, (n,)) is each latent's column among them, S for the others."""
    values_BK, indices_BK = sae.topk(sae.pre_activations(x_BD))
    z_BS = values_BK.new_zeros(x_BD.shape[0], n_scaled + 1)  # column S gathers the unscaled latents, dropped
    return z_BS.scatter_(1, column_n[indices_BK], values_BK)[:, :n_scaled]


def _repeat_copies(model: torch.nn.Module, site: str, n_copies: int):
    """Register the hook (:func:`clipmech.hooks.rows.expand_rows`) that repeats each row ``n_copies`` times
    where the copies of an image start to differ: on the output of the site's block for a block output
    (``hook_resid_post``, ResNet stages too), else on the input of the site's block (attention-pool sites:
    of the pool). It runs before the site's own hooks; returns the handle."""
    resolved = resolve(model, site)
    if resolved.layer is not None and resolved.hook.endswith("hook_resid_post"):
        return expand_rows(resolved.module, repeat_rows(n_copies), output=True)
    module = resolved.module if resolved.layer is None else tower(model, resolved.tower).blocks[resolved.layer]
    return expand_rows(module, repeat_rows(n_copies))


@torch.inference_mode()
def copy_predictions(
    model: torch.nn.Module,
    pixels_NCHW: torch.Tensor,
    texts: dict[str, torch.Tensor],
    *,
    site: str,
    edit: Callable[[torch.Tensor], torch.Tensor],
    n_copies: int,
    batch_size: int,
    device: str | torch.device,
) -> np.ndarray:
    """Zero-shot predictions of K edited copies of every image, the copies sharing the forward pass up to the
    site's block: int64 (N, K, n_tasks).

    A hook repeats each row K times (row ``i * K + k`` is copy k of image i) at the output of the site's
    block for a block output (``hook_resid_post``, ResNet stages too), else at the input of the site's
    block (attention-pool sites: of the pool), so the layers before it run once per image; ``edit``
    (:func:`neuron_copies`, :func:`sae_copies`) then edits copy k with the k-th intervention. A pass holds
    at most ``batch_size`` rows after the repeat (at least one image).

    Parameters
    ----------
    texts : dict of str to torch.Tensor, (P_task, E)
        Task (in :data:`clipmech.models.zeroshot.ATTRIBUTE_TASKS` order) -> the model's prompt embeddings.

    Raises
    ------
    ValueError
        For an unknown site (the message lists the valid ones) or ``n_copies`` < 1.
    """
    if n_copies < 1:
        raise ValueError(f"n_copies must be >= 1, got {n_copies}")
    with hooked(model, edit={site: edit}):
        handle = _repeat_copies(model, site, n_copies)
        try:
            # Each pass of max(1, batch_size // K) images returns its K copies as consecutive rows.
            predicted_RT = predictions(
                model, pixels_NCHW, texts, batch_size=max(1, batch_size // n_copies), device=device
            )
        finally:
            handle.remove()
    return predicted_RT.reshape(pixels_NCHW.shape[0], n_copies, predicted_RT.shape[1])


@torch.inference_mode()
def predictions(
    model: torch.nn.Module,
    pixels_NCHW: torch.Tensor,
    texts: dict[str, torch.Tensor],
    *,
    batch_size: int,
    device: str | torch.device,
) -> np.ndarray:
    """Zero-shot predictions for every attribute task of every row ``model.encode_image`` returns, int64
    (N, n_tasks): of the model as it is, so of its edits and repeats where hooks are registered (under
    :func:`copy_predictions`, N x K rows).

    Parameters
    ----------
    texts : dict of str to torch.Tensor, (P_task, E)
        Task -> the model's prompt embeddings, in the order of the output's tasks: the attribute tasks in
        :data:`clipmech.models.zeroshot.ATTRIBUTE_TASKS` order, or a natural-image dataset's ``class`` task.
    """
    parts = []
    for start in range(0, pixels_NCHW.shape[0], batch_size):
        image_NE = model.encode_image(pixels_NCHW[start : start + batch_size].to(device))
        parts.append(np.stack([zeroshot.classify(image_NE, prompts) for prompts in texts.values()], axis=1))
    return np.concatenate(parts)


def single_label_images(objects: pd.DataFrame, n_images: int) -> np.ndarray:
    """The images whose label of each concept's attribute type is that concept alone: every object of the
    image carries the concept (an image without objects has none), bool (N, 16), ``FEATURES`` order.

    Parameters
    ----------
    objects : pandas.DataFrame
        The object table (image_id in 0..N-1, shape, colour, position).
    n_images : int
    """
    counts_NF = shapes.feature_counts(objects, n_images)
    n_objects_N = np.bincount(objects["image_id"].to_numpy(dtype=np.int64), minlength=n_images)
    return (counts_NF == n_objects_N[:, None]) & (n_objects_N[:, None] > 0)


def concept_accuracy(predicted_N: np.ndarray, concept_index: int) -> float:
    """The fraction of images predicted as the concept (the images all contain it); NaN for none."""
    predicted_N = np.asarray(predicted_N)
    return float(np.mean(predicted_N == concept_index)) if predicted_N.size else float("nan")


def task_of(concept: str) -> tuple[int, int]:
    """(task index in ATTRIBUTE_TASKS, class index within the task's prompts) of a Shapes concept.

    Raises
    ------
    ValueError
        For a name that is no task's class.
    """
    for t, task in enumerate(zeroshot.ATTRIBUTE_TASKS):
        names, _ = zeroshot.attribute_prompts(task)
        if concept in names:
            return t, names.index(concept)
    raise ValueError(f"{concept!r} is no class of the zero-shot tasks {', '.join(zeroshot.ATTRIBUTE_TASKS)}")
