"""The neuron atlas of one model (methods.md Sec. 10): the stage of rule ``build_atlas``."""

from __future__ import annotations

import logging
import time

import numpy as np

from clipmech.atlas import gather, links, units
from clipmech.atlas.render import SHAPES_SOURCE
from clipmech.atlas.site import PhotoThumbnails, summary_table, write_site
from clipmech.data import concepts, datasets, shapes, tables
from clipmech.stores import activations

log = logging.getLogger(__name__)


def build_atlas(
    *,
    model: str,
    dataset: str,
    inputs: dict,
    site: str,
    summary: str,
    atlas: dict,
    sources: dict,
    sae_sites: list[str],
    miclip_units: list[dict],
    concept_words: list[str] | None = None,
) -> dict:
    """Build the atlas site of one model (methods.md Sec. 10; layout: :mod:`clipmech.atlas.site`).

    Parameters
    ----------
    model, dataset : str
        Names, for the pages; ``dataset`` is the one every unit's images come from: a Shapes dataset (its
        object table's 16 features are the concepts) or a natural-image dataset (its concepts:
        :func:`clipmech.data.concepts.concept_matrix`; its photographs shown as the model sees them).
    inputs : dict
        Paths: ``data`` (the dataset directory, always); for a ViT ``store`` (activation store) and ``units``
        (``neuron_selectivity``'s ``units.tsv``); for a CLIP-ResNet ``attnpool``, ``pairs``, ``words``; where
        the model is patched ``auroc`` and ``recovery``; per SAE site (aligned with ``sae_sites``) lists
        ``sae_checkpoints``, ``sae_latents`` and ``sae_metrics`` (then ``store`` too); per MiCLIP unit set (aligned with
        ``miclip_units``) lists ``miclip_descriptions``, ``miclip_interventions``, ``miclip_localisation``. A
        natural-image dataset has no decomposition: no CLIP-ResNet inputs then.
    site : str
        The site directory.
    summary : str
        A TSV written after the site: one row per unit kind (``kind``, ``units``, ``pages``, ``dead``: units constant on the dataset,
        which get no page) and the
        site's ``files`` and ``megabytes`` on every row, and ``index`` (the path of its index.html).
    atlas : dict
        ``max_units`` (pages per kind; null = all), ``n_top_images``, ``thumbnail_size``, ``bins``,
        ``n_reads`` (ViT MLP units linked from an SAE latent), ``batch_tokens`` (SAE tokens encoded at once),
        ``k`` and ``reduction`` (Algorithm 1, as ``selectivity``; its tables are shown where they rank by
        the neurons' image-level activation, :data:`clipmech.atlas.gather.NEURON_REDUCTION`).
    sources : dict
        The datasets the other analyses ran on, named on the tables they give the pages: ``sae`` (the SAE
        evaluation), ``patching`` (the minimal pairs of the concept AUROC and patching; None without
        patching) and ``miclip``.
    sae_sites : list of str
    miclip_units : list of dict
        ``{site, kind}`` with ``kind`` ``neurons`` | ``sae``.
    concept_words : list of str, optional
        A captions dataset's concept words (``datasets.<name>.words``).

    Returns
    -------
    dict
        The site's manifest.

    Raises
    ------
    ValueError
        If a synthetic dataset has no object table (Algorithm 1 needs it), a natural-image dataset comes with
        CLIP-ResNet inputs (their decomposition runs on synthetic datasets only), or the inputs show no unit.
    """
    start = time.perf_counter()
    data = datasets.load(inputs["data"])
    natural = data.images is None and data.manifest is not None
    if natural:
        if "attnpool" in inputs:
            raise ValueError(
                f"{dataset} is a natural-image dataset: it has no CLIP-ResNet decomposition for the atlas to read"
            )
        matrix = concepts.concept_matrix(data, words=concept_words)
        counts_NF, names, source = matrix.present_NF.astype(np.float64), matrix.names, matrix.source
        thumbnails = PhotoThumbnails(data)
    elif data.objects is None:
        raise ValueError(f"the atlas needs a Shapes dataset with an object table; {inputs['data']} has none")
    else:
        counts_NF, names, source = shapes.feature_counts(data.objects, data.n_images), shapes.FEATURES, SHAPES_SOURCE
        thumbnails = data.images
    concept_args = {"concepts": tuple(names), "concept_source": source}
    checkpoints = inputs.get("sae_checkpoints", [])
    store = activations.open_store(inputs["store"]) if "units" in inputs or checkpoints else None
    pages = units.Pages()
    mlp = units.mlp_units(store, inputs["units"], counts_NF, atlas, **concept_args) if "units" in inputs else []
    pages.add(mlp)
    neurons, pairs, pair_table = [], [], None
    if "attnpool" in inputs:
        neurons, pairs, pair_table = units.resnet_units(
            inputs["attnpool"], inputs["pairs"], inputs["words"], counts_NF, atlas
        )
        pages.add(neurons)
        pages.add(pairs)
    saes = []
    for checkpoint in checkpoints:
        saes.append(units.sae_units(checkpoint, store, counts_NF, atlas, **concept_args))
        pages.add(saes[-1][1])
    if not pages.units:
        raise ValueError(f"no unit of {model} to show: the inputs hold no selectivity, decomposition or SAE results")

    kind = data.spec["kind"]
    images = (
        f"{dataset} ({kind} photographs): all {data.n_images} images"
        if natural
        else f"{dataset}: all {data.n_images} images"
    )
    links.sae_reads(pages, saes, mlp)
    for (_, latents, *_), latents_tsv, metrics_json in zip(
        saes, inputs.get("sae_latents", []), inputs.get("sae_metrics", [])
    ):
        links.sae_alignment(pages, latents, latents_tsv, metrics_json, sources["sae"])
    neurons = [u for u in neurons if u.page]
    pairs = [u for u in pairs if u.page]
    if pair_table is not None:
        links.neuron_pairs(pages, neurons, pairs, pair_table, images)
    links.patching(
        pages,
        neurons,
        pairs,
        links.read(inputs.get("auroc")),
        links.read(inputs.get("recovery")),
        sources["patching"],
    )
    links.miclip(pages, miclip_units, sae_sites, inputs, sources["miclip"])

    ordered = sorted(
        pages.units.values(),
        key=lambda u: (gather.KINDS.index(u.kind), np.inf if np.isnan(u.entropy) else u.entropy, u.key),
    )
    facts = [
        ("dataset", f"{dataset} ({data.n_images} images): every unit's top images, histogram and affinities"),
        *(
            [
                ("images", f"{kind} photographs, shown as the model sees them (short side resized, centre crop)"),
                ("concepts", f"{len(names)} {source}: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}"),
            ]
            if natural
            else []
        ),
        *(
            (f"image-level activation of {kind} units", text)
            for kind, text in dict.fromkeys((u.kind, u.activation) for u in ordered)
        ),
        ("Algorithm 1", f"the top {atlas['k']} images by the image-level activation"),
        *(
            (f"{kind} units", str(sum(u.kind == kind for u in ordered)))
            for kind in gather.KINDS
            if any(u.kind == kind for u in ordered)
        ),
        ("pages", f"{sum(u.page for u in ordered)} (at most {atlas['max_units']} per kind, lowest entropy first)"),
    ]
    manifest = write_site(
        site,
        model=model,
        units=ordered,
        images_NHW3=thumbnails,
        dataset=images,
        thumbnail_size=atlas["thumbnail_size"],
        facts=facts,
    )
    tables.write_table(summary_table(manifest, site), summary)
    log.info(
        "atlas of %s: %d units, %d pages, %d files, %.2f MB in %.1f s",
        model,
        len(ordered),
        sum(manifest["pages"].values()),
        len(manifest["files"]) + 1,
        sum(f["bytes"] for f in manifest["files"].values()) / 1e6,
        time.perf_counter() - start,
    )
    return manifest
