"""The zero-shot binding benchmark per object count: the stage of rule ``binding_benchmark``."""

from __future__ import annotations

import logging

import numpy as np
import torch

from clipmech.analyses import binding as binding_analysis
from clipmech.data import datasets, tables
from clipmech.models import loading, zeroshot
from clipmech.models.loading import ModelSpec
from clipmech.stores import activations

log = logging.getLogger(__name__)


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
) -> None:
    """Score every binding trial (:func:`clipmech.analyses.binding.binding_trials`) of the dataset's images
    with >= 2 objects and write the per-trial table (``out["trials"]``) and the accuracy per task and
    object count (``out["accuracy"]``, drawn by rule ``plot_binding``).

    Image embeddings are the store's (the normalised final embeddings); text embeddings come from
    ``model``. ``binding`` is the config's ``binding`` section; ``seed`` draws the foils; prompts are
    encoded ``batch_size`` at a time on ``device`` (:func:`clipmech.stores.loading.resolve_device`).
    """
    data = datasets.load(dataset_dir)
    trials = binding_analysis.binding_trials(data.objects, binding["tasks"], np.random.default_rng(seed))
    emb_NE = torch.from_numpy(activations.open_store(store)["embedding"].values)
    if emb_NE.shape[0] != data.n_images:
        raise ValueError(
            f"store {store} holds {emb_NE.shape[0]} embeddings but dataset {dataset_dir} has {data.n_images} images"
        )
    torch_device = loading.resolve_device(device)
    clip, _, tokenizer = loading.load(model, torch_device)
    prompts = sorted(set(trials["correct"]) | set(trials["foil"]))
    text_PE = torch.cat(
        [
            loading.encode_text(clip, tokenizer, prompts[i : i + batch_size], torch_device).cpu()
            for i in range(0, len(prompts), batch_size)
        ]
    )
    row = {prompt: p for p, prompt in enumerate(prompts)}
    image_RE = emb_NE[trials["image_id"].to_numpy()]
    correct_RE = text_PE[trials["correct"].map(row).to_numpy()]
    foil_RE = text_PE[trials["foil"].map(row).to_numpy()]
    trials["sim_correct"] = (image_RE * correct_RE).sum(-1).numpy()
    trials["sim_foil"] = (image_RE * foil_RE).sum(-1).numpy()
    trials["preferred"] = zeroshot.pairwise_preference(image_RE, correct_RE, foil_RE)
    accuracy = binding_analysis.accuracy_by_count(trials, binding["confidence_level"])
    for key, table in (("trials", trials), ("accuracy", accuracy)):
        tables.write_table(table, out[key])
    log.info("binding accuracy of %s:\n%s", model.name, accuracy.to_string())
