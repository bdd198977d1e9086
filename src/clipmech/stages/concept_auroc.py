"""Concept selectivity (AUROC) of the units of both towers (methods.md Sec. 8): the stage of rule ``concept_auroc``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from clipmech.analyses.concepts import auroc, caption_presence, image_presence
from clipmech.data import datasets, tables
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.patching import concepts as patching_concepts

log = logging.getLogger(__name__)


def concept_auroc(*, model: ModelSpec, dataset_dir: str, out: dict, concepts: dict, device: str, threads: int) -> None:
    """AUROC of every unit of both towers for each of the 16 Shapes concepts (methods.md Sec. 8;
    :mod:`clipmech.patching.concepts`): vision units on the dataset's images, text units on their
    captions (:func:`clipmech.patching.concepts.image_captions`).

    Writes ``out["auroc"]`` (one row per unit x concept: ``tower, site, layer, unit, concept,
    concept_type, auroc, n_pos, n_neg``), ``out["summary"]`` (one row per tower, site, layer and
    concept: ``n_units``, ``n_selective`` = units with AUROC >= ``concepts["threshold"]``,
    ``n_selective_tower`` = the concept's selective units in the whole tower, and
    ``modality_invariant``, True on every row of a concept with selective units in both towers); rule
    ``plot_concepts`` draws the AUROCs. ``concepts``: ``batch_size``, ``threshold``.

    Raises
    ------
    ValueError
        If the dataset has no object table (not a Shapes dataset), or a caption's concepts differ from
        its image's (the message names the first such image).
    """
    torch.set_num_threads(threads)
    data = datasets.load(dataset_dir)
    if data.objects is None:
        raise ValueError(f"concept AUROC needs a Shapes dataset with an object table; {dataset_dir} has none")
    present_NF = image_presence(data.objects, data.n_images)
    captions = patching_concepts.image_captions(data.objects, data.n_images)
    differs = np.flatnonzero((caption_presence(captions) != present_NF).any(axis=1))
    if differs.size:
        raise ValueError(
            f"image {differs[0]} of {dataset_dir}: its caption {captions[differs[0]]!r} names other concepts "
            f"than its objects ({differs.size} images differ)"
        )
    torch_device = loading.resolve_device(device)
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    pixels = loading.preprocess_images(data.images, preprocess)
    acts = {
        "visual": patching_concepts.image_unit_activations(
            clip,
            pixels,
            patching_concepts.unit_sites(clip, "visual"),
            batch_size=concepts["batch_size"],
            device=torch_device,
        ),
        "text": patching_concepts.caption_unit_activations(
            clip,
            tokenizer,
            captions,
            patching_concepts.unit_sites(clip, "text"),
            batch_size=concepts["batch_size"],
            device=torch_device,
        ),
    }
    table = pd.concat(
        [
            patching_concepts.auroc_table(
                tower_name, site, patching_concepts.site_layer(clip, site), auroc(acts_NU, present_NF), present_NF
            )
            for tower_name, tower_acts in acts.items()
            for site, acts_NU in tower_acts.items()
        ],
        ignore_index=True,
    )
    summary = patching_concepts.selective_counts(table, concepts["threshold"])
    tables.write_table(table, out["auroc"])
    tables.write_table(summary, out["summary"])
    per_tower = summary.groupby(["tower", "concept"], sort=False)["n_selective"].sum().unstack("tower")
    log.info(
        "%s on %d images: %d vision and %d text units; units with AUROC >= %g per concept:\n%s\n"
        "modality-invariant concepts: %s",
        model.name,
        data.n_images,
        sum(a.shape[1] for a in acts["visual"].values()),
        sum(a.shape[1] for a in acts["text"].values()),
        concepts["threshold"],
        per_tower.to_string(),
        ", ".join(patching_concepts.modality_invariant(summary)) or "none",
    )
