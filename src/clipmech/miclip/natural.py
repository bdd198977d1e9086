"""MiCLIP on a natural-image dataset (kinds imagenet, imagefolder, captions, cifar10, pascal_context; methods.md
Sec. 9.8).

What differs from Shapes: the concepts are the dataset's (:func:`clipmech.data.concepts.concept_matrix`: its
classes, COCO or PASCAL Context categories or caption words), embedded as the prompt :data:`PROMPT` by the
reference and the target CLIPs; the target's prediction (the output term of the loss) is its zero-shot choice
among those prompts, one task per image; the probe streams the photographs in batches at each model's
preprocessing (:func:`clipmech.data.loader.pixel_batches`) and keeps only the image-level neuron activations
(N, D), so its memory does not grow with the tokens of the images (an SAE unit set reads the held-out
photographs' tokens again in batches: :func:`site_batches`). Network Dissection is left out (it reads a Shapes
dataset's masks; PASCAL Context's are not read here). Delta Acc is measured on the classes of an imagenet,
imagefolder or cifar10 dataset with the target's zero-shot classifier; a captions or pascal_context dataset's
(several categories or none per image) is recorded as skipped (:data:`NO_INTERVENTIONS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from clipmech.data import concepts, loader
from clipmech.decomposition import wordlist
from clipmech.hooks.sites import hooked
from clipmech.miclip import units

#: The prompt of a concept name, for the reference and the target text towers.
PROMPT = "a photo of a {}."
#: The description vocabulary of a natural-image dataset's concepts (Shapes: ``shapes``).
VOCABULARY = "concepts"
#: Why the interventions of a natural-image dataset are not run (logged; the tables are empty).
NO_INTERVENTIONS = (
    "no interventions or Delta Acc: miclip.dataset {dataset} is of kind {kind}, which has no single class per "
    "image to measure an accuracy on (methods.md Sec. 9.8)"
)


def is_natural(data) -> bool:
    """A natural-image dataset: photographs listed in a manifest, no image array."""
    return data.images is None and data.manifest is not None


def dataset_concepts(data, words: Sequence[str] | None) -> concepts.Concepts:
    """The concepts MiCLIP describes the units of a natural-image dataset with (``words``: a captions dataset's
    concept words; :func:`clipmech.data.concepts.concept_matrix`)."""
    return concepts.concept_matrix(data, words=words)


def prompts(names: Sequence[str]) -> list[str]:
    """The prompt of each concept name (:data:`PROMPT`)."""
    return [PROMPT.format(name) for name in names]


def probe_batches(
    model: torch.nn.Module,
    preprocess,
    data,
    site: str,
    *,
    n_prefix_tokens: int,
    concept_CE: np.ndarray,
    batch_size: int,
    device: str | torch.device,
    workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The image-level neuron activations at ``site`` (:func:`clipmech.miclip.units.neuron_image_acts`,
    float32 (N, D)) and the zero-shot prediction of each image among the concepts whose normalised text
    embeddings (of ``model``) are ``concept_CE`` (int64 (N, 1)), one batch of images in memory at a time, decoded
    by ``workers`` processes (:func:`clipmech.data.loader.pixel_batches`)."""
    acts, predicted = [], []
    text_EC = torch.as_tensor(np.asarray(concept_CE, dtype=np.float32)).T.to(device)
    with torch.inference_mode(), hooked(model, capture=[site]) as cache:
        batches = loader.pixel_batches(data, preprocess, batch_size=batch_size, workers=workers, device=device)
        for _, _, pixels in batches:
            cache.reset()
            image_NE = torch.nn.functional.normalize(model.encode_image(pixels.to(device)).float(), dim=-1)
            acts.append(units.neuron_image_acts(cache[site].float().cpu().numpy(), n_prefix_tokens).astype(np.float32))
            predicted.append((image_NE @ text_EC).argmax(dim=1).cpu().numpy())
    return np.concatenate(acts), np.concatenate(predicted).astype(np.int64)[:, None]


def image_embeddings(
    model: torch.nn.Module, preprocess, data, *, batch_size: int, device, workers: int = 0
) -> np.ndarray:
    """Normalised image embeddings of every image, float32 (N, E), streamed in batches (``workers``: as
    :func:`probe_batches`)."""
    parts = []
    with torch.inference_mode():
        batches = loader.pixel_batches(data, preprocess, batch_size=batch_size, workers=workers, device=device)
        for _, _, pixels in batches:
            parts.append(torch.nn.functional.normalize(model.encode_image(pixels.to(device)).float(), dim=-1).cpu())
    return torch.cat(parts).numpy()


def embed_prompts(model, tokenizer, names: Sequence[str], batch_size: int, device) -> np.ndarray:
    """Normalised text embeddings (float32 (C, E)) of the prompts of ``names``."""
    return wordlist.embed_texts(model, tokenizer, prompts(names), batch_size, device)


def site_batches(
    model: torch.nn.Module,
    preprocess,
    data,
    images: np.ndarray,
    site: str,
    *,
    batch_size: int,
    device,
    workers: int = 0,
):
    """The site's activations (float32 numpy, (B, T, D)) on the photographs ``images`` (int64 image indices) of a
    natural-image dataset, in that order, one batch at a time: what an SAE unit set reads (methods.md Sec. 9.8)."""
    photos = loader.ManifestImages(data.manifest.iloc[np.asarray(images, dtype=np.int64)], data.root, preprocess)
    try:
        with torch.inference_mode(), hooked(model, capture=[site]) as cache:
            for _, pixels in loader.image_loader(photos, batch_size=batch_size, workers=workers, device=device):
                cache.reset()
                model.encode_image(pixels.to(device))
                yield cache[site].float().cpu().numpy()
    finally:
        photos.close()
