"""Evaluation and concept alignment of a top-k SAE at one site (methods.md Sec. 7): the stage of rule ``evaluate_sae``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from clipmech.data import concepts, datasets, loader, tables
from clipmech.models import loading, zeroshot
from clipmech.models.loading import ModelSpec
from clipmech.models.towers import tower
from clipmech.sae import alignment, evaluate
from clipmech.sae.latents import token_positions
from clipmech.sae.model import load_sae
from clipmech.sae.train import SAETrainConfig
from clipmech.stores import activations
from clipmech.stores.activation_extraction import StoreProvenance

log = logging.getLogger(__name__)

#: Which images the downstream and alignment metrics use (``evaluation["split"]``).
SPLITS = ("holdout", "all")
#: Why a captions dataset gets no downstream metrics (metrics.json's ``downstream.reason``, logged once).
NO_CLASSES = (
    "no downstream zero-shot metrics: dataset {dataset} is of kind {kind}, which has no single class per "
    "image to classify (methods.md Sec. 7.4)"
)


def _is_natural(data) -> bool:
    return data.images is None and data.manifest is not None


def _check_inputs(data, prov: StoreProvenance, model: ModelSpec, dataset_dir: str, store: str) -> None:
    if data.objects is None and not _is_natural(data):
        raise ValueError(
            f"SAE concept alignment needs a Shapes dataset with an object table or a natural-image dataset with a "
            f"manifest; {dataset_dir} has neither"
        )
    if prov.dataset_sha256 != data.spec["sha256"]:
        raise ValueError(
            f"activation store {store} was extracted from a dataset with sha256 {prov.dataset_sha256}, but "
            f"{dataset_dir} has sha256 {data.spec['sha256']}"
        )
    weights = loading.weights_id(model)
    if prov.weights != weights:
        raise ValueError(
            f"activation store {store} holds activations of weights {prov.weights}, model {model.name} is {weights}"
        )


def evaluate_sae(
    *,
    model: ModelSpec,
    dataset_dir: str,
    store: str,
    sae: str,
    out: dict,
    evaluation: dict,
    seed: int,
    device: str,
    threads: int,
    classifier: str | None = None,
    natural: dict | None = None,
) -> None:
    """Reconstruction, downstream and concept-alignment metrics of a top-k SAE (methods.md Sec. 7;
    :mod:`clipmech.sae.evaluate`, :mod:`clipmech.sae.alignment`).

    The SAE checkpoint ``sae`` (:func:`clipmech.sae.model.load_sae`) names its site, token set and held-out
    images (``meta["site"]``, ``meta["tokens"]``, ``meta["holdout_images"]``); its tokens are read from the
    activation store ``store`` of the model on the dataset. Reconstruction metrics use the held-out images;
    the downstream zero-shot probes (single-object images) and the alignment use the images of
    ``evaluation["split"]``: ``holdout`` or ``all`` (then the training images too). PCA and k-means are fit
    on at most ``evaluation["fit_tokens"]`` tokens of seeded random training images. The baselines' token
    activations on the evaluated images are held on disk beside ``out["metrics"]`` while they are scored (a
    temporary directory, :func:`clipmech.sae.alignment.token_activations`), the SAE's as top-k codes in memory.

    Writes ``out["metrics"]`` (JSON: ``diverged`` (the training flagged it, or the held-out FVU exceeds the
    SAE's ``max_fvu``; a warning is logged too), ``max_fvu``, ``reconstruction`` (:meth:`clipmech.sae.evaluate.ReconstructionStats.summary`),
    ``histogram`` (:func:`clipmech.sae.evaluate.frequency_histogram`), ``downstream`` (the zero-shot rows of
    :func:`clipmech.sae.evaluate.zero_shot_table`, the logit scale and ``error_term_max_abs_diff``, the
    largest |embedding(sae_error) - embedding(clean)|, 0 when the splice is exact), ``alignment`` (per method
    its metrics and per-concept bests); NaN as null), ``out["latents"]`` (:data:`clipmech.sae.alignment.LATENT_COLUMNS`,
    frequency on the held-out tokens), ``out["alignment"]`` (one row per method of
    :data:`clipmech.sae.alignment.METHODS`: ``method`` and the metrics of :func:`clipmech.sae.alignment.summarise`),
    and ``out["top_latents"]`` (:func:`clipmech.sae.alignment.save_top_latents`: the ``n_figure_latents``
    lowest-entropy latents, each with its ``n_figure_images`` top images and patch maps), which rule
    ``plot_sae_evaluation`` draws with the histogram.

    ``evaluation``: ``batch_size`` (images per read and forward), ``split``, ``dense_threshold``, ``purity_k``,
    ``coverage_ap``, ``entropy_k``, ``fit_tokens``, ``kmeans_max_clusters``, ``n_figure_latents``,
    ``n_figure_images``.

    On a natural-image dataset (methods.md Sec. 7.4): the alignment scores the dataset's image-level
    concepts (:func:`clipmech.data.concepts.concept_matrix`, :func:`clipmech.sae.alignment.natural_truth`;
    no masks, so the patch AUROC is NaN); the downstream task is ``class`` over the labelled images, with the
    dataset's zero-shot classifier ``classifier`` (rule ``zero_shot_classifier``, checked against the
    templates ``natural["templates"]``); a captions or pascal_context dataset (several categories or none per
    image) gets no downstream metrics (``downstream`` is ``{"skipped": true, "reason": ...}``, logged once);
    a captions dataset's concepts are its COCO categories or the words ``natural["words"]``. The top images are its photographs as the model sees them, at its input size
    (:class:`clipmech.data.loader.ModelViewImages`). metrics.json then says which concepts were scored
    (``concepts``: ``source``, ``n_concepts``, ``patch_level``).

    Raises
    ------
    ValueError
        If the dataset has neither an object table nor a manifest, a natural-image dataset with classes comes
        without its ``classifier``, the store was extracted from another dataset or other weights,
        the SAE's site is not a vision site or its width differs from the store's, the held-out images are
        invalid or leave no training image, ``split`` is unknown, or the store's token layout differs from
        the model's.
    KeyError
        If the store does not hold the SAE's site (:func:`clipmech.stores.activations.site_activations`).
    """
    torch.set_num_threads(threads)
    if evaluation["split"] not in SPLITS:
        raise ValueError(f"unknown split {evaluation['split']!r}; valid splits are: {', '.join(SPLITS)}")
    data = datasets.load(dataset_dir)
    ds = activations.open_store(store)
    _check_inputs(data, StoreProvenance.from_attrs(ds.attrs), model, dataset_dir, store)
    torch_device = loading.resolve_device(device)
    autoencoder, meta = load_sae(sae)
    autoencoder = autoencoder.to(torch_device).eval()
    site = meta["site"]
    if not site.startswith("visual."):
        raise ValueError(f"SAE checkpoint {sae}: site {site!r} is not a vision site; evaluation splices into visual.*")
    clip, preprocess, tokenizer = loading.load(model, torch_device)
    info = tower(clip, "visual")
    layout = (int(ds.attrs["n_prefix_tokens"]), int(ds.attrs["grid_rows"]), int(ds.attrs["grid_cols"]))
    if layout != (info.n_prefix_tokens, *info.grid):
        raise ValueError(
            f"store {store} has token layout (prefix, rows, cols) {layout}, the model {info.n_prefix_tokens, *info.grid}"
        )
    positions = token_positions(meta["tokens"], info.n_tokens, info.n_prefix_tokens)
    acts = activations.site_activations(ds, site)
    acts = acts.rename(dict(zip(acts.dims, ("image", "token", "unit"))))
    d, n_latents = acts.sizes["unit"], autoencoder.W_enc.shape[0]
    if autoencoder.W_enc.shape[1] != d:
        raise ValueError(
            f"SAE checkpoint {sae} has width {autoencoder.W_enc.shape[1]}, site {site!r} of {store} has {d}"
        )
    holdout, train = evaluate.holdout_split(meta, data.n_images, sae)
    batch_size = evaluation["batch_size"]

    stats = evaluate.reconstruction_stats(autoencoder, acts, holdout, positions, batch_size)
    reconstruction = stats.summary(evaluation["dense_threshold"])
    histogram = evaluate.frequency_histogram(stats.frequency, stats.n_tokens)
    log.info(
        "%s at %s (%s tokens), %d held-out images: %s", model.name, site, meta["tokens"], holdout.size, reconstruction
    )

    images = holdout if evaluation["split"] == "holdout" else np.arange(data.n_images)
    natural = natural or {}
    splice = dict(
        sae=autoencoder, site=site, positions=positions, mean_D=stats.mean_D.numpy(), batch_size=batch_size,
        device=torch_device,
    )  # fmt: skip
    if not _is_natural(data):
        down = _shapes_downstream(clip, tokenizer, preprocess, data, images, dataset_dir, evaluation["split"], splice)
        truth = alignment.shapes_truth(data.objects, data.masks, data.n_images)
    else:
        down = _natural_downstream(
            clip, model, preprocess, data, images, classifier, natural.get("templates"), dataset_dir, splice
        )
        truth = alignment.natural_truth(concepts.concept_matrix(data, words=natural.get("words")))
    log.info("alignment over %d %s of %s", truth.n_concepts, truth.source, dataset_dir)

    patch_tokens = positions >= info.n_prefix_tokens
    aligned = alignment.align(
        autoencoder, acts, images=images, train=train, positions=positions, patch_tokens=patch_tokens,
        truth=truth, grid=info.grid, params=evaluation, seed=seed, spill=Path(out["metrics"]).parent,
    )  # fmt: skip
    log.info(
        "alignment on %d images (%d fit tokens):\n%s",
        images.size,
        aligned["n_fit_tokens"],
        aligned["table"].to_string(),
    )
    latents = alignment.latent_table(aligned["sae_scores"], stats.frequency, truth.names)

    max_fvu = float(meta.get("max_fvu", SAETrainConfig.max_fvu))
    diverged = bool(meta.get("diverged", False)) or not reconstruction["fvu"] <= max_fvu
    if diverged:
        log.warning(
            "SAE %s diverged: held-out FVU %.4g, final training FVU %s, max_fvu %g; its metrics say diverged: true",
            sae,
            reconstruction["fvu"],
            meta.get("final_fvu"),
            max_fvu,
        )
    metrics_json = {
        "model": model.name,
        "diverged": diverged,
        "max_fvu": max_fvu,
        "site": site,
        "tokens": meta["tokens"],
        "d": int(d),
        "n_latents": int(n_latents),
        "split": evaluation["split"],
        "n_holdout_images": int(holdout.size),
        "n_split_images": int(images.size),
        "reconstruction": reconstruction,
        "histogram": histogram,
        "concepts": {
            "source": truth.source,
            "n_concepts": truth.n_concepts,
            "patch_level": truth.patch_presence is not None and bool(patch_tokens.any()),
        },
        "downstream": down if "zero_shot" not in down else {**down, "zero_shot": down["zero_shot"].to_dict("records")},
        "alignment": aligned["json"],
    }
    tables.write_json(metrics_json, out["metrics"])
    tables.write_table(latents, out["latents"])
    tables.write_table(aligned["table"], out["alignment"])

    pictures = data.images if not _is_natural(data) else loader.ModelViewImages(data, info.image_size[0])
    shown_images, shown_maps, titles = alignment.top_latents(
        latents, aligned["sae_acts"], images, pictures, patch_tokens=patch_tokens, grid=info.grid,
        n_latents=evaluation["n_figure_latents"], n_images=evaluation["n_figure_images"],
    )  # fmt: skip
    alignment.save_top_latents(out["top_latents"], shown_images, shown_maps, titles)


def _shapes_downstream(clip, tokenizer, preprocess, data, images, dataset_dir, split, splice) -> dict:
    """The attribute tasks on the single-object Shapes images among ``images``, preprocessed a batch at a time."""
    single, labels = evaluate.single_object_labels(data.objects, images)
    if single.size == 0:
        raise ValueError(f"no single-object image among the {split} images of {dataset_dir}")
    batch_size = splice["batch_size"]
    pixels = (
        loading.preprocess_images(data.images[single[start : start + batch_size]], preprocess)
        for start in range(0, single.size, batch_size)
    )
    down = evaluate.downstream(clip, tokenizer, pixels, labels, **splice)
    log.info(
        "zero-shot on %d single-object images (error term exact to %g):\n%s",
        single.size,
        down["error_term_max_abs_diff"],
        down["zero_shot"],
    )
    return down


def _natural_downstream(clip, model, preprocess, data, images, classifier, templates, dataset_dir, splice) -> dict:
    """The ``class`` task over the labelled images among ``images`` with the dataset's zero-shot classifier; a
    dataset without one class per image (captions, pascal_context) gets ``{"skipped": True, "reason": ...}``,
    logged once."""
    kind = data.spec["kind"]
    if kind not in concepts.CLASS_KINDS:
        reason = NO_CLASSES.format(dataset=dataset_dir, kind=kind)
        log.warning("%s", reason)
        return {"skipped": True, "reason": reason}
    if classifier is None:
        raise ValueError(
            f"{dataset_dir} is a natural-image dataset of kind {kind}: its downstream metrics need its zero-shot "
            "classifier (rule zero_shot_classifier's classifier.npz), and none was given"
        )
    texts = evaluate.class_prompts(zeroshot.load_dataset_classifier(classifier, model, data, templates))
    labelled, labels = evaluate.class_labels(data.manifest["label"].to_numpy(), images)
    if labelled.size == 0:
        raise ValueError(f"no labelled image among the evaluated images of {dataset_dir}")
    batches = loader.image_loader(
        loader.ManifestImages(data.manifest.iloc[labelled], data.root, preprocess),
        batch_size=splice["batch_size"],
        workers=0,
    )
    pixels = (pixels_NCHW for _, pixels_NCHW in batches)
    down = evaluate.downstream(clip, None, pixels, labels, texts=texts, **splice)
    log.info(
        "zero-shot over the %d classes of %s on %d labelled images (error term exact to %g):\n%s",
        texts["class"].shape[0],
        dataset_dir,
        labelled.size,
        down["error_term_max_abs_diff"],
        down["zero_shot"],
    )
    return {**down, "n_classes": int(texts["class"].shape[0])}
