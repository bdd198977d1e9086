"""The evaluation of one MiCLIP unit set against its baselines (methods.md Sec. 9): unit x concept scores
per method, localisation and description rows, and the interventions of every method's units.

Scores of unit u for concept c, per method (:data:`clipmech.miclip.tables.METHODS`): the MiCLIP variants
cos(u_u, E_c(c)) with the encoder of their loss and seed; ``act_values`` the mean activation on c's
images; ``clip_dissect`` the soft-WPMI; ``netdissect`` the IoU; ``random`` no score (its units are drawn
per seed, its score column is NaN). Over the words only the MiCLIP variants and CLIP-Dissect score.

Dead units (:func:`clipmech.analyses.dead.dead_units` of the image-level activations) get no description,
are localised by no method (random draws among the live units) and have no ground truth.

Everything here reads the held-out images of the probe's split (:func:`heldout_objects` renumbers their
object table); Delta Acc is measured on the single-label ones of each concept
(:func:`clipmech.miclip.interventions.single_label_images`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import zarr

from clipmech.analyses import concepts, dead
from clipmech.data import shapes
from clipmech.data.concepts import Concepts
from clipmech.miclip import baselines, interventions, tables, units
from clipmech.miclip import natural as miclip_natural
from clipmech.models.prompt_embeddings import attribute_prompt_embeddings
from clipmech.sae.latents import TokenCodes, token_codes
from clipmech.stores.base import spill_array

log = logging.getLogger(__name__)
#: Images per SAE encode call when the latents of a unit set are computed from the probe.
SAE_BATCH_IMAGES = 64
#: Images per chunk of an SAE set's spilled image-level activations (:func:`sae_set`): rows are buffered in
#: memory until a chunk is whole, so each is written once.
SPILL_IMAGES = 512
#: Images whose pixels the interventions hold at a time (a concept's images are read in chunks of as many).
PIXEL_CHUNK = 256


@dataclass(frozen=True)
class UnitSet:
    """The units of one (model, site, kind) as the evaluation reads them (module docstring of
    :mod:`clipmech.miclip.units`).

    Attributes
    ----------
    acts_NU : numpy.ndarray, float64, or zarr.Array, float32, (N, U)
        Image-level activations, read a block of units at a time (:func:`clipmech.miclip.units.column_blocks`):
        a neuron set's in memory, an SAE set's spilled to disk (:func:`sae_set`).
    maps : numpy.ndarray or clipmech.miclip.units.LatentMaps, float32, (N, U, h, w), or None
        Activation maps (Network Dissection): an array of a neuron set, maps read from the codes of an SAE set;
        None for an SAE that does not read every patch.
    embed : callable
        Encoder weights W (E, D) -> unit embeddings (U, E), the typical activations bound.
    make_edit : callable
        Copies (:data:`clipmech.miclip.interventions.Copy`) -> an edit of the site for them.
    """

    acts_NU: np.ndarray | zarr.Array
    maps: np.ndarray | None
    embed: Callable[[np.ndarray], np.ndarray]
    make_edit: Callable


def neuron_set(acts_NU: np.ndarray, maps, channel_axis: int) -> UnitSet:
    """The channels of a site as units: ``acts_NU`` their image-level activations (float, (N, U): the mean over
    the patch tokens, :func:`clipmech.miclip.units.neuron_image_acts`, as the probe holds them), ``maps`` their
    activation maps (:class:`clipmech.miclip.units.NeuronMaps`, or None: no Network Dissection),
    ``channel_axis`` the channel axis of the site's activations the edits scale (-1 for (N, T, D), 1 for a
    ResNet stage's (N, C, h, w)); typical activation :func:`clipmech.miclip.units.typical_activation`."""
    acts_NU = np.asarray(acts_NU, dtype=np.float64)
    typical_U = units.typical_activation(acts_NU)
    return UnitSet(
        acts_NU,
        maps,
        functools.partial(units.neuron_embeddings, typical_U=typical_U),
        functools.partial(_neuron_edit, typical_U=typical_U, channel_axis=channel_axis),
    )


def sae_set(
    sae: torch.nn.Module,
    positions: np.ndarray,
    n_prefix_tokens: int,
    batches: Callable[[], Iterable[np.ndarray]],
    grid: tuple[int, int] | None = None,
    batch_images: int = SAE_BATCH_IMAGES,
    *,
    scratch: str | Path,
    unit_chunk: int = units.UNIT_CHUNK,
) -> UnitSet:
    """The latents of an SAE of the site as units, on the tokens at ``positions`` of site activations read in
    batches: ``batches()`` yields the (B, T, D) activations of the evaluated images in order (a probe store's,
    or a natural-image dataset's computed again, :func:`clipmech.miclip.natural.site_batches`), each batch's
    latents held as top-k codes (:func:`clipmech.sae.latents.token_codes`, ``batch_images`` images per encode
    call). Image-level activation the maximum over the patch tokens
    (:func:`clipmech.miclip.units.latent_image_acts`), typical activation the typical firing value
    (:func:`clipmech.miclip.units.typical_firing`), summed batch by batch over each latent's top images.

    With ``grid`` given and an SAE that reads every patch token, the codes of every image are kept for the maps
    (:class:`clipmech.miclip.units.LatentMaps`, Network Dissection) and ``batches()`` is read once; else no maps
    are built, nothing but the image-level activations is kept, and ``batches()`` is read twice.

    The (N, n) image-level activations are not held in memory (methods.md Sec. 9.3): they are spilled to
    ``scratch/image_acts``, a float32 zarr array (:func:`clipmech.stores.base.spill_array`; float32 holds them
    exactly, :meth:`clipmech.sae.latents.TokenCodes.image_max` is float32) in chunks of :data:`SPILL_IMAGES`
    images x ``unit_chunk`` latents, the set's ``acts_NU``, read ``unit_chunk`` latents at a time; each latent's
    top images are kept as a cutoff (:func:`clipmech.miclip.units.top_cutoff`). ``scratch`` must outlive the
    evaluation of the set (the stage's temporary directory).

    Raises
    ------
    ValueError
        If the SAE reads no patch token or its width is not the site's.
    """
    patch = np.asarray(positions) >= n_prefix_tokens
    if not patch.any():
        raise ValueError("MiCLIP's SAE latents need an SAE that reads the patch tokens (sae.tokens patch or all)")
    with_maps = grid is not None and patch.sum() == grid[0] * grid[1]

    def code_batches():
        for x_BTD in batches():
            if x_BTD.shape[-1] != sae.d:
                raise ValueError(f"the SAE has width {sae.d}, the site {x_BTD.shape[-1]}")
            yield token_codes(sae, x_BTD, positions, batch_images)

    kept = []
    spill = spill_array(Path(scratch) / "image_acts", (SPILL_IMAGES, sae.n_latents), unit_chunk)
    pending_Bn = np.empty((0, sae.n_latents), dtype=np.float32)
    for batch in code_batches():
        # float32 -> float64 -> float32: exact (the maxima of float32 codes)
        acts_Bn = units.latent_image_acts(batch, positions, n_prefix_tokens).astype(np.float32)
        pending_Bn = np.concatenate([pending_Bn, acts_Bn])
        whole = pending_Bn.shape[0] - pending_Bn.shape[0] % SPILL_IMAGES
        if whole:
            spill.append(pending_Bn[:whole], axis=0)
            pending_Bn = pending_Bn[whole:]
        if with_maps:
            kept.append(batch)
    spill.append(pending_Bn, axis=0)
    cutoff = units.top_cutoff(spill, units.TYPICAL_FRACTION, unit_chunk)
    total_n, count_n = np.zeros(sae.n_latents), np.zeros(sae.n_latents, dtype=np.int64)
    start = 0
    for batch in kept if with_maps else code_batches():
        chosen_Bn = units.top_mask(units.latent_image_acts(batch, positions, n_prefix_tokens), start, *cutoff)
        batch_total, batch_count = batch.firing_sums(patch, chosen_Bn)
        total_n += batch_total
        count_n += batch_count
        start += batch.n_images
    typical_U = np.divide(total_n, count_n, out=np.zeros_like(total_n), where=count_n > 0)
    maps = None
    if with_maps:
        codes = TokenCodes(
            np.concatenate([b.values_BK for b in kept]),
            np.concatenate([b.indices_BK for b in kept]),
            spill.shape[0],
            positions.size,
            sae.n_latents,
        )
        maps = units.LatentMaps(codes, positions, n_prefix_tokens, grid)
    W_dec = sae.W_dec.detach().cpu().double().numpy()
    return UnitSet(
        spill,
        maps,
        functools.partial(units.latent_embeddings, W_dec_Dn=W_dec, typical_U=typical_U),
        functools.partial(_sae_edit, sae=sae, positions=positions, typical_U=typical_U),
    )


def array_batches(acts, batch_images: int = SAE_BATCH_IMAGES) -> Callable[[], Iterable[np.ndarray]]:
    """What :func:`sae_set` reads of site activations held as an array or read lazily (a probe store's):
    a function yielding ``acts[start : start + batch_images]`` as float32 numpy, images in order."""
    return lambda: (
        np.asarray(acts[start : start + batch_images], dtype=np.float32)
        for start in range(0, acts.shape[0], batch_images)
    )


def heldout_objects(objects: pd.DataFrame, images: np.ndarray) -> pd.DataFrame:
    """The object table of the dataset images ``images`` (int, (H,)), their ``image_id`` renumbered to
    positions in ``images`` (0..H-1), rows in the table's order."""
    position = pd.Series(np.arange(len(images)), index=np.asarray(images, dtype=np.int64))
    kept = objects[objects["image_id"].isin(position.index)].copy()
    kept["image_id"] = position.loc[kept["image_id"].to_numpy()].to_numpy()
    return kept.reset_index(drop=True)


class HeldoutRows:
    """Rows ``images`` of an array (e.g. the memory-mapped masks of a dataset), read lazily: ``rows[first:stop]``
    is ``array[images[first:stop]]``, what :class:`clipmech.miclip.baselines.ConceptMasks` reads a chunk of
    images at a time, so the held-out images' masks are never all in memory.

    Parameters
    ----------
    array : numpy.ndarray or numpy.memmap, (N, ...)
    images : numpy.ndarray, int, (H,)
    """

    def __init__(self, array: np.ndarray, images: np.ndarray):
        self.array, self.images = array, np.asarray(images, dtype=np.intp)
        self.shape = (len(self.images), *array.shape[1:])

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):
            raise TypeError(f"HeldoutRows reads rows[first:stop] only, not rows[{key!r}]")
        return np.asarray(self.array[self.images[key]])


def _neuron_edit(copies, *, typical_U, channel_axis):
    return interventions.neuron_copies(copies, typical_U, channel_axis)


def _sae_edit(copies, *, sae, positions, typical_U):
    return interventions.sae_copies(sae, positions, copies, typical_U)


def _top_words(u_UE: np.ndarray, word_AE: np.ndarray, tau: int, unit_chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """D_u over the words (Eq. 4) by cosine, ``unit_chunk`` units at a time: the (U, A) cosines of 65,536 SAE
    latents and 30,000 words (15.7 GB in float64) are never held whole; the same (U, tau) indices and scores as
    ``units.describe(units.cosine(u_UE, word_AE), tau)`` (each row's cosines and top-tau are its own)."""
    parts = [
        units.describe(units.cosine(u_UE[first : first + unit_chunk], word_AE), tau)
        for first in range(0, u_UE.shape[0], unit_chunk)
    ]
    return np.concatenate([index for index, _ in parts]), np.concatenate([score for _, score in parts])


def method_scores(
    *,
    acts_NU,
    embed: Callable[[np.ndarray], np.ndarray],
    encoders: Mapping[str, np.ndarray],
    seeds: list[int],
    concept_CE: np.ndarray,
    word_AE: np.ndarray,
    reference_images_NE: np.ndarray,
    present_NF: np.ndarray,
    iou_UF: np.ndarray | None,
    clip_dissect: Mapping,
    tau: int,
    unit_chunk: int = units.UNIT_CHUNK,
) -> dict[tuple[str, int], dict]:
    """Unit x concept scores of every method (module docstring).

    Parameters
    ----------
    acts_NU : numpy.ndarray or zarr.Array, (N, U)
        Image-level unit activations (:attr:`UnitSet.acts_NU`), read ``unit_chunk`` units at a time
        (:func:`clipmech.miclip.units.column_blocks`).
    embed : callable
        W (E, D) -> unit embeddings (U, E) (:func:`clipmech.miclip.units.neuron_embeddings` or
        :func:`clipmech.miclip.units.latent_embeddings` with the typical activations bound).
    encoders : mapping of str to numpy.ndarray, (E, D)
        ``"<loss>/<seed>"`` -> encoder weights.
    seeds : list of int
    concept_CE, word_AE : numpy.ndarray
        Normalised reference text embeddings of the 16 concepts' prompts and of the words.
    reference_images_NE : numpy.ndarray
        Normalised reference image embeddings.
    present_NF : numpy.ndarray, bool, (N, 16)
    iou_UF : numpy.ndarray, (U, 16) or None
        Network Dissection IoU (None: not computed, the method is left out).
    clip_dissect : mapping
        ``top_k``, ``a``, ``lam``.
    tau : int
        Descriptions kept per unit over the words.
    unit_chunk : int

    Returns
    -------
    dict of (method, seed) to dict
        ``{"shapes": (U, 16) scores, "words": D_u over the words as ((U, tau) indices, (U, tau) scores), or
        None}``; ``random`` has shapes scores of NaN. Only the top-tau words are kept: U x A scores per
        method and seed would not fit in memory for 30,000 words.
    """
    scores: dict[tuple[str, int], dict[str, np.ndarray | None]] = {}
    for method, loss in tables.MICLIP_LOSS.items():
        for seed in seeds:
            u_UE = embed(encoders[f"{loss}/{seed}"])
            scores[method, seed] = {
                "shapes": units.cosine(u_UE, concept_CE),
                "words": _top_words(u_UE, word_AE, tau, unit_chunk),
            }
    scores["act_values", 0] = {"shapes": baselines.act_values(acts_NU, present_NF, unit_chunk), "words": None}
    similarity = {"shapes": reference_images_NE @ concept_CE.T, "words": reference_images_NE @ word_AE.T}
    wpmi = {
        vocabulary: baselines.soft_wpmi(
            acts_NU,
            sim,
            top_k=clip_dissect["top_k"],
            a=clip_dissect["a"],
            lam=clip_dissect["lam"],
            unit_chunk=unit_chunk,
        )
        for vocabulary, sim in similarity.items()
    }
    scores["clip_dissect", 0] = {"shapes": wpmi["shapes"], "words": units.describe(wpmi["words"], tau)}
    if iou_UF is not None:
        scores["netdissect", 0] = {"shapes": iou_UF, "words": None}
    for seed in seeds:
        scores["random", seed] = {"shapes": np.full((acts_NU.shape[1], concept_CE.shape[0]), np.nan), "words": None}
    return scores


def unit_sets(scores, tau: int, dead_U: np.ndarray) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """L_c of every method and seed among the live units (``dead_U``, bool (U,): the dead ones): (C, K) unit
    indices and scores, K = min(tau, live units) (random: drawn per seed among the live units, NaN scores)."""
    live = np.flatnonzero(~np.asarray(dead_U, dtype=bool))
    sets = {}
    for (method, seed), by_vocabulary in scores.items():
        if method == "random":
            index = live[units.random_units(live.size, by_vocabulary["shapes"].shape[1], tau, seed)]
            sets[method, seed] = index, np.full(index.shape, np.nan)
        else:
            shapes_UC = np.nan_to_num(by_vocabulary["shapes"][live], nan=-np.inf)
            index, score = units.localise(shapes_UC, tau)
            sets[method, seed] = live[index], np.where(np.isfinite(score), score, np.nan)
    return sets


def description_table(
    scores, tau: int, words: list[str], dead_U: np.ndarray, concepts=shapes.FEATURES, vocabulary: str = "shapes"
) -> pd.DataFrame:
    """D_u of every method (not ``random``) and seed over the ``concepts`` (the Shapes features; a natural-image
    dataset's, vocabulary ``concepts``), and over the words where scored, of the live units (``dead_U``,
    bool (U,): the dead ones, which get no rows)."""
    parts = []
    for (method, seed), by_vocabulary in scores.items():
        if method == "random":
            continue
        index, score = units.describe(np.nan_to_num(by_vocabulary["shapes"], nan=-np.inf), tau)
        score = np.where(np.isfinite(score), score, np.nan)
        parts.append(tables.description_rows(method, seed, vocabulary, list(concepts), index, score))
        if by_vocabulary["words"] is not None:
            parts.append(tables.description_rows(method, seed, "words", words, *by_vocabulary["words"]))
    rows = pd.concat(parts, ignore_index=True)
    return rows[~np.asarray(dead_U, dtype=bool)[rows["unit"].to_numpy()]].reset_index(drop=True)


def localisation_table(sets, concepts=shapes.FEATURES) -> pd.DataFrame:
    """:data:`clipmech.miclip.tables.LOCALISATION_COLUMNS` rows of :func:`unit_sets` (``concepts``: their names)."""
    return pd.concat(
        [
            tables.localisation_rows(method, seed, list(concepts), index, score)
            for (method, seed), (index, score) in sets.items()
        ],
        ignore_index=True,
    )


def intervention_table(
    *,
    model: torch.nn.Module,
    pixels_NCHW: torch.Tensor,
    images_NF: np.ndarray,
    texts: Mapping[str, torch.Tensor],
    sets,
    make_edit: Callable[[list[interventions.Copy]], Callable[[torch.Tensor], torch.Tensor]],
    site: str,
    forms: Mapping[str, list[float]],
    batch_size: int,
    device: str | torch.device,
    concepts=shapes.FEATURES,
    task_of: Callable[[str], tuple[int, int]] = interventions.task_of,
) -> pd.DataFrame:
    """Delta Acc of every method's L_c for every concept and intervention (:mod:`clipmech.miclip.interventions`).

    For each concept, the distinct (unit set, form, beta) of all methods and seeds run as copies of the
    concept's images in shared passes (:func:`clipmech.miclip.interventions.copy_predictions`), after the
    identity copy, whose accuracy is the "before" of all of them: methods that pick the same units share
    a copy. Concepts without images are skipped.

    Parameters
    ----------
    pixels_NCHW : torch.Tensor or callable
        The evaluated images, preprocessed, or a function of image indices (int64) -> their pixels, read
        :data:`PIXEL_CHUNK` images of a concept at a time (the stage's: preprocessed from the dataset's
        images, or a natural-image dataset's photographs decoded).
    images_NF : numpy.ndarray, bool, (N, F)
        The images each concept's accuracy is measured on (the evaluation: its single-label images,
        :func:`clipmech.miclip.interventions.single_label_images`).
    make_edit : callable
        Copies -> an edit of ``site`` for them (:func:`clipmech.miclip.interventions.neuron_copies` or
        :func:`clipmech.miclip.interventions.sae_copies` with the rest bound).
    forms : mapping of str to list of float
        Intervention form -> betas.
    batch_size : int
        Rows (image copies) per forward pass.
    concepts : sequence of str
        The concepts, the columns of ``images_NF`` and the rows of the sets' (C, K) unit indices.
    task_of : callable
        Concept -> (task index in ``texts``, index of its prompt in the task).

    Returns
    -------
    pandas.DataFrame
        :data:`clipmech.miclip.tables.INTERVENTION_COLUMNS` rows.
    """
    rows = []
    for f, concept in enumerate(concepts):
        images = np.flatnonzero(images_NF[:, f])
        if images.size == 0:
            continue
        task, target = task_of(concept)
        # (method, seed, form, beta, copy): the copy is (sorted units, form, beta), shared where they agree.
        wanted = [
            (method, int(seed), form, float(beta), (tuple(np.sort(index_CK[f]).tolist()), form, float(beta)))
            for (method, seed), (index_CK, _) in sets.items()
            for form, betas in forms.items()
            for beta in betas
        ]
        keys = list(dict.fromkeys([interventions.IDENTITY, *(copy for *_, copy in wanted)]))
        position = {copy: k for k, copy in enumerate(keys)}
        predicted = np.concatenate(
            [
                _chunk_predictions(model, pixels_NCHW, chunk, texts, keys, make_edit, site, batch_size, device)
                for chunk in (images[start : start + PIXEL_CHUNK] for start in range(0, images.size, PIXEL_CHUNK))
            ]
        )
        accuracy_K = [interventions.concept_accuracy(predicted[:, k, task], target) for k in range(len(keys))]
        for method, seed, form, beta, copy in wanted:
            after = accuracy_K[position[copy]]
            rows.append(
                {
                    "concept": concept,
                    "method": method,
                    "seed": seed,
                    "intervention": form,
                    "beta": beta,
                    "n_images": int(images.size),
                    "accuracy_before": accuracy_K[0],
                    "accuracy_after": after,
                    "delta_acc": 100.0 * (after - accuracy_K[0]),
                }
            )
    return pd.DataFrame(rows, columns=list(tables.INTERVENTION_COLUMNS))


def _chunk_predictions(model, pixels_NCHW, images, texts, keys, make_edit, site, batch_size, device) -> np.ndarray:
    """Predictions (n, len(keys), tasks) of the copies ``keys`` of the images ``images`` (at most
    :data:`PIXEL_CHUNK`, their pixels read here), ``batch_size`` copies per pass."""
    pixels = pixels_NCHW(images) if callable(pixels_NCHW) else pixels_NCHW[images]
    return np.concatenate(
        [
            interventions.copy_predictions(
                model,
                pixels,
                dict(texts),
                site=site,
                edit=make_edit(chunk),
                n_copies=len(chunk),
                batch_size=batch_size,
                device=device,
            )
            for chunk in (keys[start : start + batch_size] for start in range(0, len(keys), batch_size))
        ],
        axis=1,
    )


def evaluate_unit_set(
    unit_set: UnitSet,
    *,
    model: torch.nn.Module,
    tokenizer,
    pixels_NCHW: torch.Tensor,
    objects: pd.DataFrame,
    masks_NHW: np.ndarray | HeldoutRows,
    site: str,
    encoders: Mapping[str, np.ndarray],
    concept_data: Mapping[str, np.ndarray],
    reference_images_NE: np.ndarray,
    params: dict,
    k_top: int,
    device: str | torch.device,
    natural: Concepts | None = None,
    class_texts: Mapping[str, torch.Tensor] | None = None,
    unit_chunk: int = units.UNIT_CHUNK,
) -> dict[str, pd.DataFrame]:
    """MiCLIP and its baselines on one unit set (methods.md Sec. 9): scores, descriptions, localisation,
    description accuracy against the Algorithm 1 ground truth, and the interventions' Delta Acc on each
    concept's single-label images (:func:`clipmech.miclip.interventions.single_label_images`).

    Parameters
    ----------
    unit_set : UnitSet
        :func:`neuron_set` or :func:`sae_set` of the evaluated images.
    pixels_NCHW : torch.Tensor, float, (N, 3, S, S), or callable
        The evaluated (held-out) images, preprocessed, or a function of their indices (int64) -> their pixels
        (:func:`intervention_table`); ``objects`` and ``masks_NHW`` their object table
        (``image_id`` 0..N-1, :func:`heldout_objects`) and masks.
    encoders : mapping of str to numpy.ndarray, (E, D)
        ``"<loss>/<seed>"`` -> MiCLIP encoder weights.
    concept_data : mapping
        ``words``, ``concept_embeddings``, ``word_embeddings`` (rule ``embed_miclip_concepts``).
    reference_images_NE : numpy.ndarray, (N, E)
        Normalised reference image embeddings of the evaluated images (the probe's).
    params : dict
        ``seeds``, ``tau``, ``interventions`` (form -> betas), ``clip_dissect``, ``netdissect`` (quantile,
        resolution), ``batch_size``.
    k_top : int
        The top-k images of the ground truth (Algorithm 1).
    natural : clipmech.data.concepts.Concepts, optional
        The concepts of the evaluated images of a natural-image dataset (methods.md Sec. 9.8), in the order of
        ``concept_data["concept_embeddings"]``: they replace the Shapes features (presence and ground truth,
        description vocabulary ``concepts``); ``objects`` and ``masks_NHW`` are unused (None) and Network
        Dissection is left out. With ``class_texts`` (a dataset with one class per image) Delta Acc is measured
        on each class's labelled images; without (a captions dataset) the interventions are not run (empty tables).
    class_texts : mapping of str to torch.Tensor, optional
        ``{"class": (K, E)}``: the class embeddings of the target's zero-shot classifier over the dataset's
        classes (:func:`clipmech.sae.evaluate.class_prompts`), in the order of ``natural.names``.
    unit_chunk : int
        Units of ``unit_set.acts_NU`` read at a time (:func:`clipmech.miclip.units.column_blocks`): every
        statistic of the image-level activations is per unit, so no (N, U) array is held.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``descriptions``, ``localisation``, ``interventions``, ``description_accuracy``, ``delta_acc``,
        ``ablation`` (:mod:`clipmech.miclip.tables`).
    """
    seeds = [int(s) for s in params["seeds"]]
    tau = int(params["tau"])
    acts_NU = unit_set.acts_NU
    n_images, n_units = acts_NU.shape
    if natural is None:
        present_NF, counts_NF = concepts.presence(objects, n_images, np.arange(n_images))
        names, vocabulary = list(shapes.FEATURES), "shapes"
    else:
        present_NF = np.asarray(natural.present_NF, dtype=bool)
        counts_NF = present_NF.astype(np.float64)
        names, vocabulary = list(natural.names), miclip_natural.VOCABULARY
    iou_UF = None
    if unit_set.maps is not None and natural is None:
        masks = baselines.ConceptMasks(masks_NHW, objects, params["netdissect"]["resolution"])  # per image chunk
        iou_UF = baselines.netdissect_iou(unit_set.maps, masks, quantile=params["netdissect"]["quantile"])
    words = [str(w) for w in concept_data["words"]]
    scores = method_scores(
        acts_NU=acts_NU,
        embed=unit_set.embed,
        encoders=encoders,
        seeds=seeds,
        concept_CE=concept_data["concept_embeddings"],
        word_AE=concept_data["word_embeddings"],
        reference_images_NE=reference_images_NE,
        present_NF=present_NF,
        iou_UF=iou_UF,
        clip_dissect=params["clip_dissect"],
        tau=tau,
        unit_chunk=unit_chunk,
    )
    dead_U = np.concatenate([dead.dead_units(block_Nb) for _, block_Nb in units.column_blocks(acts_NU, unit_chunk)])
    descriptions = description_table(scores, tau, words, dead_U, names, vocabulary)
    sets = unit_sets(scores, tau, dead_U)
    log.info(
        "%s: %d units (%d dead: no description or localisation), %d method x seed unit sets",
        site,
        n_units,
        int(dead_U.sum()),
        len(sets),
    )

    truth_U = baselines.ground_truth(acts_NU, counts_NF, k_top, unit_chunk)
    per_seed = tables.description_accuracy(
        descriptions,
        truth_U,
        names,
        concept_data["concept_embeddings"],
        {w: i for i, w in enumerate(words)},
        concept_data["word_embeddings"],
        vocabulary,
    )
    description_summary = tables.summarise_descriptions(per_seed)
    log.info("description accuracy:\n%s", description_summary.to_string())

    if natural is not None and class_texts is None:  # captions: no single class per image to measure
        intervention_rows = pd.DataFrame(columns=list(tables.INTERVENTION_COLUMNS))
    elif natural is not None:  # one class per image: each labelled image is single-label
        position = {name: f for f, name in enumerate(names)}
        intervention_rows = intervention_table(
            model=model,
            pixels_NCHW=pixels_NCHW,
            images_NF=present_NF,
            texts=class_texts,
            sets=sets,
            make_edit=unit_set.make_edit,
            site=site,
            forms=params["interventions"],
            batch_size=params["batch_size"],
            device=device,
            concepts=names,
            task_of=lambda concept: (0, position[concept]),
        )
    else:
        intervention_rows = intervention_table(
            model=model,
            pixels_NCHW=pixels_NCHW,
            images_NF=interventions.single_label_images(objects, n_images),
            texts=attribute_prompt_embeddings(model, tokenizer, device),
            sets=sets,
            make_edit=unit_set.make_edit,
            site=site,
            forms=params["interventions"],
            batch_size=params["batch_size"],
            device=device,
        )
    deltas = tables.delta_table(intervention_rows, seeds)
    log.info("Delta Acc:\n%s", deltas.to_string())
    return {
        "descriptions": descriptions,
        "localisation": localisation_table(sets, names),
        "interventions": intervention_rows,
        "description_accuracy": description_summary,
        "delta_acc": deltas,
        "ablation": tables.ablation_table(description_summary, deltas),
    }
