"""Training of the MiCLIP neuron encoders of one site: the stage of rule ``train_miclip``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from clipmech.data import shapes, tables
from clipmech.miclip import encoder
from clipmech.miclip import natural as miclip_natural
from clipmech.models import zeroshot
from clipmech.stages.embed_miclip_concepts import load_concepts
from clipmech.stages.probe_miclip import load_probe

log = logging.getLogger(__name__)


def concept_targets(predictions_NK: np.ndarray, concept_CE: np.ndarray) -> np.ndarray:
    """The reference text embedding of the target's predicted concept per image and attribute task, (N, K, E).

    ``concept_CE`` holds the embeddings of the prompts of ``FEATURES`` in order; ``predictions_NK`` the
    class index within each task of :data:`clipmech.models.zeroshot.ATTRIBUTE_TASKS`.
    """
    rows = []
    for t, task in enumerate(zeroshot.ATTRIBUTE_TASKS):
        names, _ = zeroshot.attribute_prompts(task)
        feature_of_class = np.array([shapes.FEATURES.index(n) for n in names])
        rows.append(concept_CE[feature_of_class[predictions_NK[:, t]]])
    return np.stack(rows, axis=1)


def train_miclip(*, probe: str, concepts: str, out: dict, train: dict, threads: int) -> None:
    """Train one linear encoder per loss variant x seed on the image-level site activations of the probe's
    training images (its ``image_acts``: (N, D) per-image vectors, all the stage holds of the site), with the
    loss on its held-out images beside (methods.md Secs. 9.1, 9.2; :func:`clipmech.miclip.encoder.train_all`).

    A natural-image probe (vocabulary ``concepts``, methods.md Sec. 9.8) has one task: the output term's target is the
    reference embedding of the dataset concept the target predicted.

    ``train``: ``losses``, ``seeds``, ``steps``, ``batch_size``, ``lr``, ``temperature``. Writes
    ``out["encoders"]`` (:func:`clipmech.miclip.encoder.save_encoders`: a verified artefact of
    ``{"W": {"<loss>/<seed>": float32 (E, D)}, "losses", "seeds", "site", "params", "dataset_sha256"}``), ``out["log"]`` (``loss, seed, step, train, heldout``: the
    step's training-batch loss and the held-out loss, both before its update; rule ``plot_miclip_training``
    draws it).

    Raises
    ------
    ValueError
        If the probe or the concept embeddings fail their sha256 check, or an encoder ends with a non-finite
        weight (the message names the settings; the encoder file is not written).
    """
    torch.set_num_threads(threads)
    probe_data = load_probe(probe)
    concept_data = load_concepts(concepts)
    acts_ND = probe_data["image_acts"].astype(np.float64)
    if str(probe_data["vocabulary"]) == miclip_natural.VOCABULARY:  # one task: the choice among the concepts
        targets = concept_data["concept_embeddings"][probe_data["predictions"][:, 0]][:, None]
    else:
        targets = concept_targets(probe_data["predictions"], concept_data["concept_embeddings"])
    train_images, heldout_images = probe_data["train_images"], probe_data["heldout_images"]
    encoders, curves = encoder.train_all(
        *(
            (acts_ND[images], probe_data["reference_images"][images], targets[images])
            for images in (train_images, heldout_images)
        ),
        losses=train["losses"],
        seeds=train["seeds"],
        params=train,
    )
    rows = [
        pd.DataFrame(
            {"loss": loss, "seed": seed, "step": np.arange(1, len(curve) + 1), "train": curve, "heldout": heldout}
        )
        for (loss, seed), (curve, heldout) in curves.items()
    ]
    log_table = pd.concat(rows, ignore_index=True)
    for (loss, seed), (curve, heldout) in curves.items():
        log.info(
            "%s seed %d: training loss %.4f -> %.4f, held-out loss %.4f -> %.4f",
            loss,
            seed,
            curve[0],
            curve[-1],
            heldout[0],
            heldout[-1],
        )
    encoder.save_encoders(
        out["encoders"],
        encoders,
        site=str(probe_data["site"]),
        params=train,
        dataset_sha256=str(probe_data["dataset_sha256"]),
    )
    tables.write_table(log_table, out["log"])
