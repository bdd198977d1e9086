"""The probe data of MiCLIP at one site of a target model: the stage of rule ``probe_miclip``."""

from __future__ import annotations

import logging

import numpy as np
import torch

from clipmech import artefacts
from clipmech.data import datasets
from clipmech.miclip import interventions, units
from clipmech.miclip import natural as miclip_natural
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.models.prompt_embeddings import attribute_prompt_embeddings
from clipmech.models.towers import tower

log = logging.getLogger(__name__)

#: The rule that writes probe files (named when one fails its sha256 check).
RULE = "probe_miclip"


def probe_miclip(
    *,
    model: ModelSpec,
    reference: ModelSpec,
    dataset_dir: str,
    site: str,
    probe: str,
    holdout: float,
    seed: int,
    batch_size: int,
    device: str,
    threads: int,
    natural: dict | None = None,
) -> None:
    """What the MiCLIP encoder trains on and its evaluation reads (methods.md Sec. 9), for every image, and
    the split of the images (:func:`clipmech.miclip.units.split_images`: the last ``holdout`` fraction of a
    permutation seeded by ``seed`` held out).

    Writes ``probe``, an npz with ``site_acts`` (float32: (N, T, D) for a transformer site, (N, C, h, w) for
    a ResNet stage), ``predictions`` (int64 (N, 3): the target's zero-shot class per attribute task, its own
    text tower, :data:`clipmech.models.zeroshot.ATTRIBUTE_TASKS` order), ``reference_images`` (float32
    (N, E): the normalised image embeddings of the ``reference`` CLIP), ``n_prefix_tokens``, ``grid``
    (rows, cols), ``site``, ``dataset_sha256``, and the split: ``train_images`` and ``heldout_images``
    (int64, sorted, disjoint; the encoders train on the first, everything else reads the second); a verified
    artefact (:mod:`clipmech.artefacts`; :func:`load_probe` reads it).

    On a natural-image dataset (methods.md Sec. 9.8; :mod:`clipmech.miclip.natural`) the images are streamed
    in batches of ``batch_size`` at each model's preprocessing (decoded by ``threads`` processes), and the probe
    holds ``image_acts`` (float32 (N, D): the image-level neuron activations) instead of ``site_acts``, and
    ``predictions`` (N, 1): the target's zero-shot choice among the dataset's concepts (``natural["words"]``: a
    captions dataset's words), their prompts embedded by its own text tower.

    Raises
    ------
    ValueError
        If the dataset has neither an object table nor a manifest, the site is unknown, or the split leaves no
        training or no held-out image.
    """
    torch.set_num_threads(threads)
    torch_device = loading.resolve_device(device)
    data = datasets.load(dataset_dir)
    if miclip_natural.is_natural(data):
        _probe_natural(**locals())
        return
    if data.objects is None:
        raise ValueError(
            f"MiCLIP needs a Shapes dataset with an object table or a natural-image dataset; {dataset_dir} is neither"
        )
    train_images, heldout_images = units.split_images(data.n_images, holdout, seed)
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    pixels = loading.preprocess_images(data.images, preprocess)
    site_acts = units.site_activations(clip, pixels, site, batch_size=batch_size, device=torch_device)
    texts = attribute_prompt_embeddings(clip, tokenizer, torch_device)
    predicted = interventions.predictions(clip, pixels, texts, batch_size=batch_size, device=torch_device)
    info = tower(clip, "visual")
    ref_model, ref_preprocess = loading.load_model(reference, torch_device)
    ref_pixels = loading.preprocess_images(data.images, ref_preprocess)
    with torch.inference_mode():
        ref_images = torch.cat(
            [
                torch.nn.functional.normalize(
                    ref_model.encode_image(ref_pixels[s : s + batch_size].to(torch_device)).float(), dim=-1
                ).cpu()
                for s in range(0, ref_pixels.shape[0], batch_size)
            ]
        ).numpy()
    artefacts.save_npz(
        probe,
        rule=RULE,
        site_acts=site_acts,
        predictions=predicted,
        reference_images=ref_images,
        n_prefix_tokens=np.int64(info.n_prefix_tokens),
        grid=np.asarray(info.grid, dtype=np.int64),
        site=np.array(site),
        dataset_sha256=np.array(data.spec["sha256"]),
        train_images=train_images,
        heldout_images=heldout_images,
    )
    log.info(
        "%s at %s: site activations %s on %d images (%d training, %d held out); reference %s",
        model.name,
        site,
        site_acts.shape,
        data.n_images,
        train_images.size,
        heldout_images.size,
        reference.name,
    )


def _probe_natural(*, model, reference, site, probe, holdout, seed, batch_size, data, torch_device, threads, **params):
    words = (params.get("natural") or {}).get("words")
    names = miclip_natural.dataset_concepts(data, words).names
    train_images, heldout_images = units.split_images(data.n_images, holdout, seed)
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    info = tower(clip, "visual")
    concept_CE = miclip_natural.embed_prompts(clip, tokenizer, names, batch_size, torch_device)
    image_acts, predicted = miclip_natural.probe_batches(
        clip,
        preprocess,
        data,
        site,
        n_prefix_tokens=info.n_prefix_tokens,
        concept_CE=concept_CE,
        batch_size=batch_size,
        device=torch_device,
        workers=threads,
    )
    del clip
    ref_model, ref_preprocess = loading.load_model(reference, torch_device)
    ref_images = miclip_natural.image_embeddings(
        ref_model, ref_preprocess, data, batch_size=batch_size, device=torch_device, workers=threads
    )
    artefacts.save_npz(
        probe,
        rule=RULE,
        image_acts=image_acts,
        predictions=predicted,
        reference_images=ref_images,
        n_prefix_tokens=np.int64(info.n_prefix_tokens),
        grid=np.asarray(info.grid, dtype=np.int64),
        site=np.array(site),
        dataset_sha256=np.array(data.spec["sha256"]),
        train_images=train_images,
        heldout_images=heldout_images,
    )
    log.info(
        "%s at %s: image-level activations %s on %d photographs (%d training, %d held out), predictions over "
        "%d concepts; reference %s",
        model.name,
        site,
        image_acts.shape,
        data.n_images,
        train_images.size,
        heldout_images.size,
        len(names),
        reference.name,
    )


def load_probe(path: str):
    """A probe file written by :func:`probe_miclip`, checked against its sha256 record (an ``NpzFile``).

    Raises
    ------
    FileNotFoundError, ValueError
        If it is missing, garbled or truncated (:func:`clipmech.artefacts.verify`; the message names the file
        and rule ``probe_miclip``).
    """
    return artefacts.load_npz(path, rule=RULE)
