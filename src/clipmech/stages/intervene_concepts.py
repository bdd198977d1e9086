"""Scaling the top concept-selective vision units (methods.md Sec. 8; causal-tracing paper Sec. 4.3): the stage of rule ``intervene_concepts``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from clipmech.analyses.concepts import image_presence
from clipmech.data import datasets, shapes, tables
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.patching import interventions

log = logging.getLogger(__name__)


def intervene_concepts(
    *,
    model: ModelSpec,
    dataset_dir: str,
    auroc: str,
    out: dict,
    concepts: dict,
    seed: int,
    device: str,
    threads: int,
) -> None:
    """For every concept, scale its ``concepts["n_units"]`` distinct vision units of highest AUROC, each once
    (a CLIP-ResNet channel seen at two sites counts once; ``auroc``,
    the table of rule ``concept_auroc`` for this model and dataset) by each of ``concepts["scales"]`` on
    the images that contain it (:func:`clipmech.patching.interventions.concept_interventions`).

    Writes ``out["interventions"]`` (:data:`clipmech.patching.interventions.INTERVENTION_COLUMNS`, one
    row per concept and scale; CIs are percentile bootstraps over images with
    ``concepts["n_bootstrap"]`` resamples drawn from ``numpy.random.default_rng(seed)``; rule
    ``plot_concepts`` draws it). ``concepts``: ``batch_size``, ``n_units``, ``scales``, ``n_bootstrap``.

    Raises
    ------
    ValueError
        If the dataset has no object table, or the AUROC table's images differ from the dataset's
        (its vision rows' n_pos or n_neg per concept do not match the dataset's).
    """
    torch.set_num_threads(threads)
    data = datasets.load(dataset_dir)
    if data.objects is None:
        raise ValueError(f"concept interventions need a Shapes dataset with an object table; {dataset_dir} has none")
    present_NF = image_presence(data.objects, data.n_images)
    table = pd.read_csv(auroc, sep="\t")
    counts = table[table["tower"] == "visual"].groupby("concept", sort=False)[["n_pos", "n_neg"]].first()
    expected = pd.DataFrame(
        {"n_pos": present_NF.sum(axis=0), "n_neg": data.n_images - present_NF.sum(axis=0)}, index=list(shapes.FEATURES)
    )
    if not counts.reindex(expected.index).eq(expected).all(axis=None):
        raise ValueError(
            f"AUROC table {auroc} was computed on other images than {dataset_dir}: n_pos per concept "
            f"{counts['n_pos'].to_dict()}, the dataset's {expected['n_pos'].to_dict()} ({data.n_images} images)"
        )
    torch_device = loading.resolve_device(device)
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    text_FE = loading.encode_text(clip, tokenizer, interventions.concept_prompts(), torch_device).cpu().numpy()
    result = interventions.concept_interventions(
        clip,
        loading.preprocess_images(data.images, preprocess),
        present_NF,
        table,
        text_FE,
        n_units=concepts["n_units"],
        scales=concepts["scales"],
        n_resamples=concepts["n_bootstrap"],
        rng=np.random.default_rng(seed),
        batch_size=concepts["batch_size"],
        device=torch_device,
    )
    tables.write_table(result, out["interventions"])
    log.info(
        "%s: top-%d vision units of %d concepts scaled by %s; mean change in cosine per scale:\n%s",
        model.name,
        concepts["n_units"],
        result["concept"].nunique(),
        concepts["scales"],
        result.groupby("scale")[["d_cos_target", "d_cos_unrelated"]].mean().to_string(),
    )
