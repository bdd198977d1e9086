"""Interventions on the units of a concept and the change of zero-shot accuracy (methods.md Sec. 9;
MiCLIP Sec. 3.3, Eq. 5, Sec. 4.3, Table 2).

Eq. 5 on the top-tau units L_c of a concept, at every token (ResNet: every spatial position), through
:func:`clipmech.hooks.sites.hooked` edits of the live site:

- neurons (channels of the site): scaling x_i -> beta x_i, adding x_i -> x_i + beta a_i (a_i the unit's
  typical activation, :func:`clipmech.miclip.units.typical_activation`);
- SAE latents: scaling x -> x + sum_{i in L_c} (beta - 1) f_i(x) d_i, adding x -> x + sum_i beta a_i d_i,
  f_i(x) the latent's activation on the token and d_i its decoder column, on the tokens the SAE reads.
  The SAE's reconstruction error is kept (the input is edited, not replaced by its reconstruction), so
  scaling by 1 and adding 0 change nothing, exactly.

Accuracy (:func:`concept_accuracy`): on the images that contain concept c, the fraction whose zero-shot
prediction among the prompts of c's type (:func:`clipmech.models.zeroshot.attribute_prompts`, the target's
own text tower) is c. Delta Acc = accuracy after - before, in percentage points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from clipmech.hooks.sites import hooked
from clipmech.models import zeroshot

#: Intervention forms of Eq. 5.
FORMS = ("scale", "add")


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"unknown intervention {form!r}; valid interventions are: {', '.join(FORMS)}")


def neuron_edit(
    units: Sequence[int], form: str, beta: float, typical_U: np.ndarray, channel_axis: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """An edit of a site's channels ``units`` (Eq. 5): ``scale`` x_i -> beta x_i, ``add`` x_i -> x_i + beta a_i.

    Parameters
    ----------
    units : sequence of int
    form : {"scale", "add"}
    beta : float
    typical_U : numpy.ndarray, (U,)
        Typical activations of all units of the site (used by ``add``).
    channel_axis : int
        -1 for (N, T, D) sites, 1 for ResNet stages (N, C, h, w).

    Raises
    ------
    ValueError
        For another form; during the forward, if a unit is outside the site's channels.
    """
    _check_form(form)
    index = torch.as_tensor(np.asarray(units, dtype=np.int64))
    typical = torch.as_tensor(np.asarray(typical_U, dtype=np.float64))

    def edit(act: torch.Tensor) -> torch.Tensor:
        n_channels = act.shape[channel_axis]
        if index.numel() and (int(index.max()) >= n_channels or int(index.min()) < 0):
            raise ValueError(f"unit indices must lie in 0..{n_channels - 1}, got {index.tolist()}")
        out = act.movedim(channel_axis, -1).clone()
        chosen = index.to(act.device)
        if form == "scale":
            out[..., chosen] = out[..., chosen] * beta
        else:
            out[..., chosen] = out[..., chosen] + (beta * typical[index]).to(device=act.device, dtype=act.dtype)
        return out.movedim(-1, channel_axis)

    return edit


def sae_edit(
    sae: torch.nn.Module, positions: np.ndarray, units: Sequence[int], form: str, beta: float, typical_U: np.ndarray
) -> Callable[[torch.Tensor], torch.Tensor]:
    """An edit of an (N, T, D) site along the decoder directions of SAE latents ``units`` (Eq. 5, module docstring),
    on the tokens at ``positions``; the other tokens pass unchanged.

    Raises
    ------
    ValueError
        For another form.
    """
    _check_form(form)
    index = torch.as_tensor(np.asarray(units, dtype=np.int64))
    pos = torch.as_tensor(np.asarray(positions, dtype=np.int64))
    parameter = next(sae.parameters())
    W_dec_Dk = sae.W_dec.detach()[:, index]
    typical_k = torch.as_tensor(np.asarray(typical_U, dtype=np.float64)[np.asarray(units, dtype=np.int64)])

    def edit(act_NTD: torch.Tensor) -> torch.Tensor:
        x_NTD = act_NTD[:, pos.to(act_NTD.device)]
        if form == "scale":
            z_Bn = sae.encode(x_NTD.reshape(-1, x_NTD.shape[-1]).to(device=parameter.device, dtype=parameter.dtype))
            coeff_Bk = (beta - 1.0) * z_Bn[:, index.to(z_Bn.device)]
            delta_BD = coeff_Bk @ W_dec_Dk.T
            delta_NTD = delta_BD.reshape(x_NTD.shape).to(device=act_NTD.device, dtype=act_NTD.dtype)
        else:
            delta_D = (W_dec_Dk.double() @ (beta * typical_k).to(W_dec_Dk.device)).to(act_NTD.device, act_NTD.dtype)
            delta_NTD = delta_D.expand_as(x_NTD)
        out = act_NTD.clone()
        out[:, pos.to(act_NTD.device)] = x_NTD + delta_NTD
        return out

    return edit


@torch.inference_mode()
def predictions(
    model: torch.nn.Module,
    pixels_NCHW: torch.Tensor,
    texts: dict[str, torch.Tensor],
    *,
    batch_size: int,
    device: str | torch.device,
    edit: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
) -> np.ndarray:
    """Zero-shot predictions of every image for every attribute task, with optional site edits, int64 (N, K).

    Parameters
    ----------
    texts : dict of str to torch.Tensor, (P_task, E)
        Task (in :data:`clipmech.models.zeroshot.ATTRIBUTE_TASKS` order) -> the model's prompt embeddings.
    """
    parts = []
    with hooked(model, edit=dict(edit or {})):
        for start in range(0, pixels_NCHW.shape[0], batch_size):
            image_NE = model.encode_image(pixels_NCHW[start : start + batch_size].to(device))
            parts.append(
                np.stack([zeroshot.classify(image_NE, texts[task]) for task in zeroshot.ATTRIBUTE_TASKS], axis=1)
            )
    return np.concatenate(parts)


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
