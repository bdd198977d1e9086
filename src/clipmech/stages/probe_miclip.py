"""The probe data of MiCLIP at one site of a target model: the stage of rule ``probe_miclip``."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import torch

from clipmech import artefacts
from clipmech.data import datasets
from clipmech.hooks.sites import hooked
from clipmech.miclip import natural as miclip_natural
from clipmech.miclip import probe_store, units
from clipmech.models import loading, zeroshot
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
    acts: str | None = None,
    natural: dict | None = None,
) -> None:
    """What the MiCLIP encoder trains on and its evaluation reads (methods.md Sec. 9), for every image, and
    the split of the images (:func:`clipmech.miclip.units.split_images`: the last ``holdout`` fraction of a
    permutation seeded by ``seed`` held out), the images streamed in batches of ``batch_size``: its memory holds
    one batch of pixels and activations and the per-image vectors below, not the images' tokens.

    Writes ``probe``, an npz with ``image_acts`` (float32 (N, D), or (N, C) for a ResNet stage: the image-level
    neuron activations, :func:`clipmech.miclip.units.neuron_image_acts`), ``predictions`` (int64 (N, 3): the
    target's zero-shot class per attribute task, its own text tower,
    :data:`clipmech.models.zeroshot.ATTRIBUTE_TASKS` order), ``reference_images`` (float32 (N, E): the
    normalised image embeddings of the ``reference`` CLIP), ``vocabulary`` (``shapes``), ``n_prefix_tokens``,
    ``grid`` (rows, cols), ``site``, ``dataset_sha256``, and the split: ``train_images`` and ``heldout_images``
    (int64, sorted, disjoint; the encoders train on the first, everything else reads the second); a verified
    artefact (:mod:`clipmech.artefacts`; :func:`load_probe` reads it). The site's activations of every image
    (float32, (N, T, D) or a ResNet stage's (N, C, h, w)) go to ``acts``, a chunked zarr store written batch by
    batch (:mod:`clipmech.miclip.probe_store`).

    On a natural-image dataset (methods.md Sec. 9.8; :mod:`clipmech.miclip.natural`) the photographs are
    decoded by ``threads`` processes at each model's preprocessing, no ``acts`` store is written (an SAE unit set
    reads the held-out photographs' tokens again), the vocabulary is ``concepts`` and ``predictions`` (N, 1)
    holds the target's zero-shot choice among the dataset's concepts (``natural["words"]``: a captions
    dataset's words), their prompts embedded by its own text tower.

    Raises
    ------
    ValueError
        If the dataset has neither an object table nor a manifest, a Shapes dataset is given no ``acts`` path,
        the site is unknown, a site activation is not finite, or the split leaves no training or no held-out
        image.
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
    if acts is None:
        raise ValueError(f"the probe of Shapes dataset {dataset_dir} writes its site activations to acts; none given")
    split = units.split_images(data.n_images, holdout, seed)
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    info = tower(clip, "visual")
    texts = attribute_prompt_embeddings(clip, tokenizer, torch_device)
    image_acts, predicted = [], []
    batches = _site_batches(
        clip,
        preprocess,
        data.images,
        site,
        texts,
        info.n_prefix_tokens,
        batch_size,
        torch_device,
        image_acts,
        predicted,
    )
    first = next(batches)
    prov = probe_store.ProbeProvenance(
        model=model.name,
        site=site,
        dataset_sha256=data.spec["sha256"],
        n_images=data.n_images,
        shape=tuple(first.shape[1:]),
        batch_size=batch_size,
    )
    probe_store.write_probe_store(acts, prov, itertools.chain([first], batches))
    del clip
    ref_model, ref_preprocess = loading.load_model(reference, torch_device)
    with torch.inference_mode():
        ref_images = torch.cat(
            [
                torch.nn.functional.normalize(
                    ref_model.encode_image(
                        loading.preprocess_images(data.images[s : s + batch_size], ref_preprocess).to(torch_device)
                    ).float(),
                    dim=-1,
                ).cpu()
                for s in range(0, data.n_images, batch_size)
            ]
        ).numpy()
    _save(probe, data, info, site, split, "shapes", np.concatenate(image_acts), np.concatenate(predicted), ref_images)
    log.info(
        "%s at %s: site activations %s per image on %d images (%d training, %d held out) in %s; reference %s",
        model.name,
        site,
        prov.shape,
        data.n_images,
        split[0].size,
        split[1].size,
        acts,
        reference.name,
    )


def _site_batches(clip, preprocess, images, site, texts, n_prefix_tokens, batch_size, device, image_acts, predicted):
    """The site's activations on ``images`` (float32 numpy, (B, T, D) or (B, C, h, w)), one batch at a time;
    appends each batch's image-level activations to ``image_acts`` and its zero-shot predictions over ``texts``
    to ``predicted`` as it goes."""
    with torch.inference_mode(), hooked(clip, capture=[site]) as cache:
        for start in range(0, images.shape[0], batch_size):
            pixels = loading.preprocess_images(images[start : start + batch_size], preprocess)
            cache.reset()
            image_NE = clip.encode_image(pixels.to(device))
            batch = cache[site].float().cpu().numpy()
            predicted.append(np.stack([zeroshot.classify(image_NE, p) for p in texts.values()], axis=1))
            image_acts.append(units.neuron_image_acts(batch, n_prefix_tokens).astype(np.float32))
            yield batch


def _probe_natural(*, model, reference, site, probe, holdout, seed, batch_size, data, torch_device, threads, **params):
    words = (params.get("natural") or {}).get("words")
    names = miclip_natural.dataset_concepts(data, words).names
    split = units.split_images(data.n_images, holdout, seed)
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
    _save(probe, data, info, site, split, miclip_natural.VOCABULARY, image_acts, predicted, ref_images)
    log.info(
        "%s at %s: image-level activations %s on %d photographs (%d training, %d held out), predictions over "
        "%d concepts; reference %s",
        model.name,
        site,
        image_acts.shape,
        data.n_images,
        split[0].size,
        split[1].size,
        len(names),
        reference.name,
    )


def _save(probe, data, info, site, split, vocabulary, image_acts, predicted, ref_images) -> None:
    """The probe file of either dataset kind (:func:`probe_miclip`)."""
    artefacts.save_npz(
        probe,
        rule=RULE,
        image_acts=image_acts,
        predictions=predicted,
        reference_images=ref_images,
        vocabulary=np.array(vocabulary),
        n_prefix_tokens=np.int64(info.n_prefix_tokens),
        grid=np.asarray(info.grid, dtype=np.int64),
        site=np.array(site),
        dataset_sha256=np.array(data.spec["sha256"]),
        train_images=split[0],
        heldout_images=split[1],
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
