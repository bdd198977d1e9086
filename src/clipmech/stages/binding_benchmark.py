"""The zero-shot binding benchmark per object count: the stage of rule ``binding_benchmark``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from clipmech.analyses import binding as binding_analysis
from clipmech.data import datasets, tables
from clipmech.decomposition import wordlist
from clipmech.models import loading, zeroshot
from clipmech.models.loading import ModelSpec
from clipmech.stores import activations

log = logging.getLogger(__name__)

#: Images whose trials are drawn, encoded and scored at once: memory holds their prompts and embeddings.
CHUNK_IMAGES = 1024


def binding_benchmark(
    *,
    model: ModelSpec,
    store: str,
    dataset_dir: str,
    out: dict,
    binding: dict,
    seed: int,
    device: str,
    batch_size: int,
    chunk_size: int = CHUNK_IMAGES,
) -> None:
    """Score every binding trial (:func:`clipmech.analyses.binding.binding_trials`) of the dataset's images
    with >= 2 objects and write the per-trial table (``out["trials"]``) and the accuracy per task and
    object count (``out["accuracy"]``, drawn by rule ``plot_binding``); methods.md Sec. 4.

    Image embeddings are the store's (the normalised final embeddings); text embeddings come from
    ``model``. ``binding`` is the config's ``binding`` section; ``seed`` draws the foils; prompts are
    encoded ``batch_size`` at a time on ``device`` (:func:`clipmech.stores.loading.resolve_device`).

    The images go ``chunk_size`` at a time: a chunk's trials are drawn, its distinct prompts encoded,
    its embeddings read from the store, and its rows appended to the trials table (published whole
    when complete, :func:`clipmech.data.tables.write_table_parts`), so memory holds one chunk's prompts
    and embeddings plus three scalars per trial for the accuracy table. The foils do not depend on
    ``chunk_size``; the similarities may differ in the last bits of float32 between chunkings (the
    prompts batched together differ).

    Raises
    ------
    ValueError
        If the store's embeddings are not one per image of the dataset, or as
        :func:`clipmech.analyses.binding.binding_trials` raises (no image with 2 or more objects).
    """
    data = datasets.load(dataset_dir)
    embedding = activations.open_store(store)["embedding"]
    n_images = embedding.shape[0]
    if n_images != data.n_images:
        raise ValueError(
            f"store {store} holds {n_images} embeddings but dataset {dataset_dir} has {data.n_images} images"
        )
    chunks = binding_analysis.binding_trials(
        data.objects, binding["tasks"], np.random.default_rng(seed), n_images, chunk_size
    )
    torch_device = loading.resolve_device(device)
    clip, _, tokenizer = loading.load(model, torch_device)
    outcomes = []

    def scored():
        for start, stop, trials in chunks:
            if trials.empty:
                continue
            prompts = sorted(set(trials["correct"]) | set(trials["foil"]))
            text_PE = torch.from_numpy(wordlist.embed_texts(clip, tokenizer, prompts, batch_size, torch_device))
            row = {prompt: p for p, prompt in enumerate(prompts)}
            image_RE = torch.from_numpy(embedding[start:stop].values[trials["image_id"].to_numpy() - start])
            correct_RE = text_PE[trials["correct"].map(row).to_numpy(copy=True)]
            foil_RE = text_PE[trials["foil"].map(row).to_numpy(copy=True)]
            trials["sim_correct"] = (image_RE * correct_RE).sum(-1).numpy()
            trials["sim_foil"] = (image_RE * foil_RE).sum(-1).numpy()
            trials["preferred"] = zeroshot.pairwise_preference(image_RE, correct_RE, foil_RE)
            outcomes.append(trials[["task", "n_objects", "preferred"]])
            yield trials

    tables.write_table_parts(scored(), out["trials"])
    accuracy = binding_analysis.accuracy_by_count(pd.concat(outcomes, ignore_index=True), binding["confidence_level"])
    tables.write_table(accuracy, out["accuracy"])
    log.info("binding accuracy of %s:\n%s", model.name, accuracy.to_string())
