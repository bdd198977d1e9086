"""Concept selectivity (AUROC) of the units of both towers (methods.md Sec. 8.5): the stage of rule ``concept_auroc``."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from clipmech.analyses.concepts import block_units, blocked_auroc
from clipmech.data import datasets, loader, tables
from clipmech.data.concepts import concept_matrix
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.models.precision import autocast
from clipmech.patching import concepts as patching_concepts

log = logging.getLogger(__name__)

#: Concepts listed one by one in the log up to this many; beyond, the log counts them.
LOGGED_CONCEPTS = 20


def concept_auroc(
    *,
    model: ModelSpec,
    dataset_dir: str,
    out: dict,
    concepts: dict,
    device: str,
    threads: int,
    words: Sequence[str] | None = None,
    precision: str = "fp32",
) -> None:
    """AUROC of every unit of both towers for each of the dataset's concepts (methods.md Sec. 8.5;
    :mod:`clipmech.patching.concepts`): vision units on the dataset's images, streamed through the model's own
    preprocessing in batches (:func:`clipmech.data.loader.pixel_batches`, ``threads`` decoding workers for
    photographs), text units on their texts (:func:`clipmech.patching.concepts.text_inputs`: a Shapes image's
    caption, a captions dataset's first caption, the prompt of a labelled image's class).

    Concepts: :func:`clipmech.data.concepts.concept_matrix` (``words``: a captions dataset's concept words;
    None otherwise). Memory holds one batch of pixels; every unit's activation on every image and distinct text
    (N x U float32) goes to zarr arrays in a temporary directory beside ``out["auroc"]`` (deleted at the end;
    :func:`clipmech.patching.concepts.streamed_image_unit_activations` with ``spill``), from which the AUROC is
    computed exactly a block of units at a time (:func:`clipmech.analyses.concepts.blocked_auroc`), so memory
    does not grow with N beyond one block; the AUROC table is written one site at a time.

    Writes ``out["auroc"]`` (one row per unit x concept: ``tower, site, layer, unit, concept,
    concept_type, auroc, n_pos, n_neg``; a tower's n_pos and n_neg count its own inputs), ``out["summary"]``
    (one row per tower, site, layer and concept: ``n_units``, ``n_selective`` = units with AUROC >=
    ``concepts["threshold"]``, ``n_selective_tower`` = the concept's selective units in the whole tower, and
    ``modality_invariant``, True on every row of a concept with selective units in both towers); rule
    ``plot_concepts`` draws the AUROCs. ``concepts``: ``batch_size``, ``threshold``. The forwards of both
    towers run at ``precision`` (``extraction.precision``, :func:`clipmech.models.precision.autocast`); the
    activations are cast to float32 before they are spilled and ranked.

    Raises
    ------
    ValueError
        If the dataset has no concepts (:func:`clipmech.data.concepts.concept_matrix`: a captions dataset
        without COCO categories or ``words``, an unknown kind), a Shapes caption's concepts differ from its
        image's (the message names the first such image), or no image has a text.
    """
    torch.set_num_threads(threads)
    data = datasets.load(dataset_dir)
    matrix = concept_matrix(data, words=words)
    types = patching_concepts.concept_types(matrix)
    texts = patching_concepts.text_inputs(data, matrix)
    if not texts.texts:
        raise ValueError(f"no image of {dataset_dir} has a text for the text tower ({texts.description})")
    torch_device = loading.resolve_device(device)
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    batch_size = concepts["batch_size"]
    codes, distinct = patching_concepts.distinct_texts(texts.texts)
    counts = []
    Path(out["auroc"]).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".concept_auroc-", dir=Path(out["auroc"]).parent) as spill:
        batches = loader.pixel_batches(data, preprocess, batch_size=batch_size, workers=threads, device=torch_device)
        with autocast(torch_device, precision):
            towers = {
                "visual": (
                    patching_concepts.streamed_image_unit_activations(
                        clip,
                        (pixels for _, _, pixels in batches),
                        patching_concepts.unit_sites(clip, "visual"),
                        device=torch_device,
                        spill=Path(spill, "visual"),
                        spill_units=block_units(data.n_images),
                    ),
                    matrix.present_NF,
                    None,
                ),
                "text": (
                    patching_concepts.caption_unit_activations(
                        clip,
                        tokenizer,
                        distinct,
                        patching_concepts.unit_sites(clip, "text"),
                        batch_size=batch_size,
                        device=torch_device,
                        spill=Path(spill, "text"),
                        spill_units=block_units(len(codes)),
                    ),
                    texts.present_NF,
                    codes,
                ),
            }

        def parts():
            for tower_name, (tower_acts, present_NF, rows) in towers.items():
                for site, acts_NU in tower_acts.items():
                    layer = patching_concepts.site_layer(clip, site)
                    auroc_UF = blocked_auroc(acts_NU, present_NF, rows)
                    part = patching_concepts.auroc_table(
                        tower_name, site, layer, auroc_UF, present_NF, matrix.names, types
                    )
                    counts.append(patching_concepts.site_counts(part, concepts["threshold"]))
                    yield part

        tables.write_table_parts(parts(), out["auroc"])
        n_units = {
            name: sum(acts.shape[1] for acts in tower_acts.values()) for name, (tower_acts, *_) in towers.items()
        }
    summary = patching_concepts.tower_counts(pd.concat(counts, ignore_index=True))
    tables.write_table(summary, out["summary"])
    log.info(
        "%s on %s (%s): %d images, %d vision units; %d texts (%d distinct: %s), %d text units; %d concepts (%s)",
        model.name,
        dataset_dir,
        data.spec["kind"],
        data.n_images,
        n_units["visual"],
        len(texts.texts),
        len(distinct),
        texts.description,
        n_units["text"],
        matrix.n_concepts,
        matrix.source,
    )
    _log_counts(summary, concepts["threshold"])


def _log_counts(summary: pd.DataFrame, threshold: float) -> None:
    """The selective units per concept and tower, and the modality-invariant concepts (counted beyond
    :data:`LOGGED_CONCEPTS` concepts)."""
    per_tower = summary.groupby(["concept", "tower"], sort=False)["n_selective"].sum().unstack("tower")
    invariant = patching_concepts.modality_invariant(summary)
    if len(per_tower) <= LOGGED_CONCEPTS:
        log.info(
            "units with AUROC >= %g per concept:\n%s\nmodality-invariant concepts: %s",
            threshold,
            per_tower.to_string(),
            ", ".join(invariant) or "none",
        )
        return
    with_units = per_tower.gt(0).sum()
    log.info(
        "concepts with a unit of AUROC >= %g: %s of %d; modality-invariant: %d (first: %s)",
        threshold,
        ", ".join(f"{tower} {int(n)}" for tower, n in with_units.items()),
        len(per_tower),
        len(invariant),
        ", ".join(invariant[:LOGGED_CONCEPTS]) or "none",
    )
