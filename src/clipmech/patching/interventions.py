"""Scaling concept-selective vision units and the change in image-text alignment (methods.md Sec. 8;
causal-tracing paper Sec. 4.3).

For a concept f, the top-n distinct vision units by AUROC for f (:mod:`clipmech.patching.concepts`, across
all vision unit sites; a CLIP-ResNet channel that is a unit of both the last stage and the attention-pool
input, :func:`clipmech.patching.concepts.channel_site`, is one unit, taken at the site where its AUROC is
higher) are each multiplied once by a factor s at every token (ResNet stages: every spatial position)
on the images that contain f (x0 ablates them, x2 amplifies them), through
:func:`clipmech.hooks.sites.hooked` edits. The effect is the change of the image embedding's cosine
similarity to the concept's text, d_target = cos(e_s, t_f) - cos(e_1, t_f), and the mean change to the
texts of the other concepts of the same type, d_unrelated = mean_{g != f, type g = type f}
(cos(e_s, t_g) - cos(e_1, t_g)); texts are the zero-shot prompts of
:func:`clipmech.models.zeroshot.attribute_prompts` ("a red shape", "a square", "a shape at the top left").
Both are averaged over the images, with percentile bootstrap 95 % CIs over images.

The clean embedding e_1 is the unhooked model's, computed on the same batches as the edited ones, so
x1 changes nothing, exactly, at MLP neurons and ResNet stage channels. An edit of
``visual.attnpool.hook_x`` makes the pool recompute its output from x (:mod:`clipmech.hooks.sites`),
which equals the module's own output to float rounding (about 1e-7 in float32).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from clipmech.data import shapes
from clipmech.hooks.sites import hooked, resolve
from clipmech.models import zeroshot
from clipmech.patching import concepts

#: Columns of the intervention table, one row per concept x scale.
INTERVENTION_COLUMNS = (
    "concept",
    "concept_type",
    "scale",
    "n_images",
    "n_units",
    "d_cos_target",
    "d_cos_target_low",
    "d_cos_target_high",
    "d_cos_unrelated",
    "d_cos_unrelated_low",
    "d_cos_unrelated_high",
)
#: The channel axis of each unit-site layout.
CHANNEL_AXES = {"(N, T, D_mlp)": -1, "(N, C, h, w)": 1, "(N, T, C)": -1}


def concept_prompts() -> list[str]:
    """The text of every concept, in ``FEATURES`` order: its zero-shot attribute prompt."""
    prompts = {}
    for task in zeroshot.ATTRIBUTE_TASKS:
        names, texts = zeroshot.attribute_prompts(task)
        prompts.update(zip(names, texts))
    return [prompts[feature] for feature in shapes.FEATURES]


def top_units(table: pd.DataFrame, concept: str, n_units: int) -> dict[str, np.ndarray]:
    """The ``n_units`` distinct vision units with the highest AUROC for a concept (fewer if the tower has fewer).

    A channel is one unit: where it is a unit of two sites (a CLIP-ResNet's last stage output and the
    attention-pool input, :func:`clipmech.patching.concepts.channel_site`) it is chosen once, at the site
    of its higher AUROC, so scaling the chosen units scales every channel once.

    Parameters
    ----------
    table : pandas.DataFrame
        AUROC rows (:data:`clipmech.patching.concepts.AUROC_COLUMNS`); only ``tower == "visual"`` is used.
    concept : str
        One of ``FEATURES``.
    n_units : int

    Returns
    -------
    dict of str to numpy.ndarray, int64
        Site -> sorted unit indices, sites in table order, no channel at two sites; empty if the
        concept's AUROC is NaN everywhere. Ties are broken by table order.

    Raises
    ------
    ValueError
        If ``concept`` is not a feature or ``n_units`` < 1.
    """
    if concept not in shapes.FEATURES:
        raise ValueError(f"unknown concept {concept!r}; concepts are: {', '.join(shapes.FEATURES)}")
    if n_units < 1:
        raise ValueError(f"n_units must be >= 1, got {n_units}")
    rows = table[(table["tower"] == "visual") & (table["concept"] == concept) & table["auroc"].notna()]
    ranked = rows.sort_values("auroc", ascending=False, kind="stable")
    channel = [concepts.channel_site(site, layer) for site, layer in zip(ranked["site"], ranked["layer"])]
    chosen = ranked[~pd.DataFrame({"site": channel, "unit": ranked["unit"].to_numpy()}).duplicated().to_numpy()]
    chosen = chosen.head(n_units)
    order = list(dict.fromkeys(rows["site"]))
    return {
        site: np.sort(chosen.loc[chosen["site"] == site, "unit"].to_numpy(dtype=np.int64))
        for site in order
        if (chosen["site"] == site).any()
    }


def scale_edits(
    model: torch.nn.Module, units: Mapping[str, np.ndarray], scale: float
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Edits for :func:`clipmech.hooks.sites.hooked` that multiply the given channels of each site by ``scale``.

    The channel axis is the last one of ``mlp.hook_post`` (N, T, D_mlp) and ``attnpool.hook_x`` (N, T, C),
    axis 1 of a ResNet stage output (N, C, h, w); every token or position is scaled.

    Raises
    ------
    ValueError
        On creation if a site is not a unit site (the message lists the layouts allowed); during the
        forward if a unit index is outside the site's channels.
    """
    edits = {}
    for site, indices in units.items():
        layout = resolve(model, site).layout
        if layout not in CHANNEL_AXES:
            raise ValueError(
                f"site {site!r} has layout {layout}; units are channels of {', '.join(CHANNEL_AXES)} sites"
            )
        edits[site] = _scaler(site, CHANNEL_AXES[layout], torch.as_tensor(np.asarray(indices), dtype=torch.long), scale)
    return edits


def _scaler(site: str, axis: int, indices: torch.Tensor, scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def edit(act: torch.Tensor) -> torch.Tensor:
        n_channels = act.shape[axis]
        if indices.numel() and (int(indices.max()) >= n_channels or int(indices.min()) < 0):
            raise ValueError(f"site {site!r}: unit indices must lie in 0..{n_channels - 1}, got {indices.tolist()}")
        factor = torch.ones(n_channels, dtype=act.dtype, device=act.device)
        factor[indices.to(act.device)] = scale
        shape = [1] * act.ndim
        shape[axis] = n_channels
        return act * factor.reshape(shape)

    return edit


def image_embeddings(
    model: torch.nn.Module,
    pixels_NCHW: torch.Tensor,
    *,
    batch_size: int,
    device: str | torch.device = "cpu",
    edit: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
) -> np.ndarray:
    """L2-normalised image embeddings, float64 (N, E), optionally with :func:`clipmech.hooks.sites.hooked` edits.

    Raises
    ------
    ValueError
        If ``batch_size`` < 1, or as :func:`clipmech.hooks.sites.hooked`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts = []
    with torch.inference_mode(), hooked(model, edit=edit or {}):
        for start in range(0, pixels_NCHW.shape[0], batch_size):
            parts.append(model.encode_image(pixels_NCHW[start : start + batch_size].to(device)).double().cpu())
    return torch.nn.functional.normalize(torch.cat(parts), dim=-1).numpy()


def cosine_changes(
    model: torch.nn.Module,
    pixels_NCHW: torch.Tensor,
    text_PE: np.ndarray,
    units: Mapping[str, np.ndarray],
    scales: Sequence[float],
    *,
    batch_size: int,
    device: str | torch.device = "cpu",
) -> dict[float, np.ndarray]:
    """Change of every image's cosine similarity to every text when the units are scaled.

    Parameters
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
    pixels_NCHW : torch.Tensor, float, (N, 3, S, S)
    text_PE : numpy.ndarray, float, (P, E)
        L2-normalised text embeddings.
    units : mapping of str to numpy.ndarray
        Site -> unit (channel) indices (:func:`top_units`).
    scales : sequence of float
    batch_size : int
    device : str or torch.device

    Returns
    -------
    dict of float to numpy.ndarray, float64, (N, P)
        Scale -> cos(e_scaled, t_p) - cos(e_clean, t_p).
    """
    text_PE = np.asarray(text_PE, dtype=np.float64)
    clean_NP = image_embeddings(model, pixels_NCHW, batch_size=batch_size, device=device) @ text_PE.T
    changes = {}
    for scale in scales:
        edit = scale_edits(model, units, scale)
        scaled_NE = image_embeddings(model, pixels_NCHW, batch_size=batch_size, device=device, edit=edit)
        changes[float(scale)] = scaled_NE @ text_PE.T - clean_NP
    return changes


def bootstrap_mean(values_N: np.ndarray, n_resamples: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean of ``values_N`` and its percentile bootstrap 95 % CI (``scipy.stats.bootstrap``); the CI is NaN
    with fewer than 2 values."""
    values_N = np.asarray(values_N, dtype=np.float64)
    mean = float(values_N.mean()) if values_N.size else np.nan
    if values_N.size < 2:
        return mean, np.nan, np.nan
    ci = stats.bootstrap(
        (values_N,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=0.95,
        method="percentile",
        vectorized=True,
        rng=rng,
    ).confidence_interval
    return mean, float(ci.low), float(ci.high)


def concept_interventions(
    model: torch.nn.Module,
    pixels_NCHW: torch.Tensor,
    present_NF: np.ndarray,
    table: pd.DataFrame,
    text_FE: np.ndarray,
    *,
    n_units: int,
    scales: Sequence[float],
    n_resamples: int,
    rng: np.random.Generator,
    batch_size: int,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """The paper's intervention for every concept (methods.md Sec. 8; causal-tracing paper Sec. 4.3).

    Parameters
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
    pixels_NCHW : torch.Tensor, float, (N, 3, S, S)
        Preprocessed images.
    present_NF : numpy.ndarray, bool, (N, 16)
        Concept presence per image (:func:`clipmech.analyses.concepts.image_presence`).
    table : pandas.DataFrame
        The AUROC table of the model on these images (:func:`clipmech.patching.concepts.auroc_table` rows).
    text_FE : numpy.ndarray, float, (16, E)
        L2-normalised embeddings of :func:`concept_prompts`.
    n_units : int
        Distinct units per concept (paper: 50; :func:`top_units`).
    scales : sequence of float
        Factors (paper: 0 and 2).
    n_resamples : int
        Bootstrap resamples.
    rng : numpy.random.Generator
        Draws every bootstrap, concept by concept, scale by scale.
    batch_size : int
    device : str or torch.device

    Returns
    -------
    pandas.DataFrame
        :data:`INTERVENTION_COLUMNS`, one row per concept that some image has and whose AUROC is
        defined, and scale; ``n_units`` the distinct units scaled (each once), d_cos in cosine units,
        ``_low`` / ``_high`` the 95 % CI bounds.
    """
    types_F = np.asarray(shapes.FEATURE_TYPES)
    rows = []
    for f, concept in enumerate(shapes.FEATURES):
        images = np.flatnonzero(present_NF[:, f])
        units = top_units(table, concept, n_units)
        if images.size == 0 or not units:
            continue
        unrelated = np.flatnonzero((types_F == types_F[f]) & (np.arange(len(types_F)) != f))
        changes = cosine_changes(
            model, pixels_NCHW[images], text_FE, units, scales, batch_size=batch_size, device=device
        )
        for scale, change_NP in changes.items():
            target = bootstrap_mean(change_NP[:, f], n_resamples, rng)
            other = bootstrap_mean(change_NP[:, unrelated].mean(axis=1), n_resamples, rng)
            rows.append(
                {
                    "concept": concept,
                    "concept_type": types_F[f],
                    "scale": scale,
                    "n_images": int(images.size),
                    "n_units": int(sum(len(i) for i in units.values())),
                    **dict(zip(INTERVENTION_COLUMNS[5:8], target)),
                    **dict(zip(INTERVENTION_COLUMNS[8:], other)),
                }
            )
    return pd.DataFrame(rows, columns=list(INTERVENTION_COLUMNS))
