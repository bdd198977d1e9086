"""Causal tracing and activation patching of both towers on Shapes minimal pairs or on image-caption pairs with
foil captions (methods.md Sec. 8): the stage of rule ``patch_components``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from clipmech.data import datasets, loader
from clipmech.data.tables import write_table
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.patching import runs


def patch_components(
    *,
    model: ModelSpec,
    dataset_dir: str,
    out: dict,
    patching: dict,
    device: str,
    precision: str,
    threads: int,
    foil: dict | None = None,
    words: Sequence[str] | None = None,
) -> None:
    """Causal tracing (methods.md Sec. 8) of both towers under every corruption in ``patching["corruptions"]``,
    on the first ``patching["n_pairs"]`` pairs of each kind (:func:`clipmech.patching.runs.trace_pairs`).

    On a pairs dataset the pairs are its Shapes minimal pairs (Sec. 8.1), its images all preprocessed. On a
    captions dataset (whose ``patching["corruptions"]`` are embedding corruptions only,
    :meth:`clipmech.config.Config.tracing_corruptions`) they are image-caption pairs, each image's first
    caption against its foil, the caption with one word of ``foil["kind"]`` swapped
    (:func:`clipmech.patching.runs.caption_pair_table`, seeded by ``patching["seed"]``; the log counts the
    images left out for lack of a word to swap); only their images are read, through the manifest
    (:class:`clipmech.data.loader.ManifestImages`).

    Writes ``out["recovery"]`` (one row per corruption, tower, direction and component: R and Delta logit
    with bootstrap 95 % intervals, :func:`clipmech.patching.tracing.trace`), ``out["circuit"]`` and
    ``out["circuit_summary"]`` (circuit sparsity over attention heads and MLPs, the paper's measure),
    ``out["circuit_paths"]`` and ``out["circuit_paths_summary"]`` (the same over per-token path
    components, with the read-out bound; :func:`clipmech.patching.tracing.circuit`, denoising) and
    ``out["runs"]`` (per corruption, tower and pair: caption, foil, m_clean, m_corrupt, clean_right, kept).
    Every forward runs at ``precision`` (``extraction.precision``, :mod:`clipmech.models.precision`).

    Parameters
    ----------
    foil : dict, optional
        ``patching.foil`` (``kind``, ``attributes``); needed for a captions dataset, None for a pairs dataset.
    words : sequence of str, optional
        A captions dataset's concept words (the object nouns of a dataset without COCO categories).

    Raises
    ------
    ValueError
        If the dataset is neither a pairs nor a captions dataset, a captions dataset comes without ``foil``
        or has no caption to foil (:func:`clipmech.patching.runs.caption_pair_table`), the pair table lacks
        a kind a corruption needs, or for fp16 on a device that is not CUDA.
    """
    torch.set_num_threads(threads)
    data = datasets.load(dataset_dir)
    kind = data.spec["kind"]
    if data.pairs is None and kind != "captions":
        raise ValueError(
            f"dataset {dataset_dir} is of kind {kind!r}; causal tracing needs a 'pairs' or a 'captions' dataset"
        )
    if data.pairs is None and foil is None:
        raise ValueError(f"dataset {dataset_dir} is a captions dataset: causal tracing on it needs patching.foil")
    torch_device = loading.resolve_device(device)
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    if data.pairs is not None:
        pairs = data.pairs
        pixels = loading.preprocess_images(data.images, preprocess)
    else:
        pairs = runs.caption_pair_table(
            data, foil, words, n_pairs=patching["n_pairs"], seed=patching["seed"], tokenizer=tokenizer
        )
        rows = data.manifest[data.manifest["index"].isin(pairs["image"])]  # in manifest order, as the pairs
        images = loader.ManifestImages(rows, data.root, preprocess)
        pixels = torch.stack([images[i][1] for i in range(len(images))])
    tables = runs.trace_pairs(
        clip,
        tokenizer,
        pairs,
        pixels.to(torch_device),
        params=patching,
        device=torch_device,
        tables=tuple(out),
        precision=precision,
    )
    for key, table in tables.items():
        write_table(table, out[key])
