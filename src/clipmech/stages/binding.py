"""Binding-benchmark stage: zero-shot binding accuracy per task and object count."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from clipmech import analysis_plots, binding, datasets, extract, models, zeroshot

log = logging.getLogger(__name__)


def binding_benchmark(
    name: str,
    model_entry: dict,
    store: str,
    dataset_dir: str,
    out: dict,
    params: dict,
    seed: int,
    device: str,
    batch_size: int,
    label: str,
) -> None:
    """Score every binding trial (:func:`clipmech.binding.binding_trials`) of the dataset's images
    with >= 2 objects and write the per-trial table (``out["trials"]``), the accuracy per task and
    object count (``out["accuracy"]``) and its figure (``out["figure"]``).

    Image embeddings are the store's (the normalised final embeddings); text embeddings come from
    the model ``name`` configured as ``model_entry``. ``params`` is the config's ``binding``
    section; ``seed`` draws the foils; prompts are encoded ``batch_size`` at a time on ``device``
    (:func:`clipmech.extract.resolve_device`); ``label`` ("<model> on <dataset>") titles the figure.
    """
    data = datasets.load(dataset_dir)
    trials = binding.binding_trials(data.objects, params["tasks"], np.random.default_rng(seed))
    emb_NE = torch.from_numpy(extract.open_store(store)["embedding"].values)
    if emb_NE.shape[0] != data.n_images:
        raise ValueError(
            f"store {store} holds {emb_NE.shape[0]} embeddings but dataset {dataset_dir} has {data.n_images} images"
        )
    torch_device = extract.resolve_device(device)
    model, _, tokenizer = models.load(models.model_spec({name: model_entry}, name), torch_device)
    prompts = sorted(set(trials["correct"]) | set(trials["foil"]))
    text_PE = torch.cat(
        [
            models.encode_text(model, tokenizer, prompts[i : i + batch_size], torch_device).cpu()
            for i in range(0, len(prompts), batch_size)
        ]
    )
    row = {prompt: p for p, prompt in enumerate(prompts)}
    image_TE = emb_NE[trials["image_id"].to_numpy()]
    correct_TE = text_PE[trials["correct"].map(row).to_numpy()]
    foil_TE = text_PE[trials["foil"].map(row).to_numpy()]
    trials["sim_correct"] = (image_TE * correct_TE).sum(-1).numpy()
    trials["sim_foil"] = (image_TE * foil_TE).sum(-1).numpy()
    trials["preferred"] = zeroshot.pairwise_preference(image_TE, correct_TE, foil_TE)
    accuracy = binding.accuracy_by_count(trials, params["confidence_level"])
    for key, table in (("trials", trials), ("accuracy", accuracy)):
        Path(out[key]).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out[key], sep="\t", index=False, float_format="%.6g")
    log.info("binding accuracy of %s:\n%s", name, accuracy.to_string())
    analysis_plots.binding_accuracy(accuracy, f"{label}: binding benchmark (chance 0.5)", out["figure"])
