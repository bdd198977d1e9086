"""Evaluation and concept alignment of a top-k SAE at one site (methods.md Sec. 7): the stage of rule ``evaluate_sae``."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clipmech.analyses import concepts
from clipmech.data import datasets, tables
from clipmech.figures import sae_eval as sae_figures
from clipmech.models import loading, zeroshot
from clipmech.models.prompt_embeddings import attribute_prompt_embeddings
from clipmech.models.towers import tower
from clipmech.sae import alignment, evaluate
from clipmech.sae.latents import read_tokens, token_positions
from clipmech.sae.model import load_sae
from clipmech.stores import activations
from clipmech.stores.activation_extraction import StoreProvenance
from clipmech.stores.activations import site_activations

log = logging.getLogger(__name__)

#: Which images the downstream and alignment metrics use (``params["split"]``).
SPLITS = ("holdout", "all")


def _json_ready(value):
    """NaN and infinities as None (JSON has no NaN), numpy scalars as Python numbers, recursively."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _check_inputs(data, prov: StoreProvenance, spec: loading.ModelSpec, dataset_dir: str, store: str) -> None:
    if data.objects is None:
        raise ValueError(f"SAE concept alignment needs a Shapes dataset with an object table; {dataset_dir} has none")
    if prov.dataset_sha256 != data.spec["sha256"]:
        raise ValueError(
            f"activation store {store} was extracted from a dataset with sha256 {prov.dataset_sha256}, but "
            f"{dataset_dir} has sha256 {data.spec['sha256']}"
        )
    weights = loading.weights_id(spec)
    if prov.weights != weights:
        raise ValueError(
            f"activation store {store} holds activations of weights {prov.weights}, model {spec.name} is {weights}"
        )


def _holdout(meta: dict, n_images: int, checkpoint: str) -> tuple[np.ndarray, np.ndarray]:
    holdout = np.asarray(meta["holdout_images"], dtype=np.int64)
    if holdout.size == 0 or np.unique(holdout).size != holdout.size or holdout.min() < 0 or holdout.max() >= n_images:
        raise ValueError(
            f"SAE checkpoint {checkpoint}: holdout_images must be distinct image indices in 0..{n_images - 1} "
            f"(at least one), got {holdout.size} entries"
        )
    holdout = np.sort(holdout)
    train = np.setdiff1d(np.arange(n_images), holdout)
    if train.size == 0:
        raise ValueError(f"SAE checkpoint {checkpoint}: every image is held out; the baselines need training images")
    return holdout, train


def _stack(acts, images: np.ndarray, positions: np.ndarray, batch_size: int) -> np.ndarray:
    """The selected tokens of ``images`` as float32 rows (N x T', D), image-major."""
    parts = list(read_tokens(acts, images, positions, batch_size))
    return np.concatenate(parts).reshape(-1, acts.sizes["unit"])


def _fit_tokens(acts, train: np.ndarray, positions: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """At most ``params["fit_tokens"]`` selected tokens of seeded random training images (then rows)."""
    n_images = min(train.size, math.ceil(params["fit_tokens"] / positions.size))
    chosen = np.sort(rng.choice(train, size=n_images, replace=False))
    tokens_BD = _stack(acts, chosen, positions, params["batch_size"])
    if tokens_BD.shape[0] > params["fit_tokens"]:
        tokens_BD = tokens_BD[np.sort(rng.choice(tokens_BD.shape[0], size=params["fit_tokens"], replace=False))]
    return tokens_BD


def _labels(objects: pd.DataFrame, images: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The single-object images among ``images`` and the correct class of each attribute task."""
    single = objects[(objects["n_objects"] == 1) & objects["image_id"].isin(images)].sort_values("image_id")
    labels = {}
    for task in zeroshot.ATTRIBUTE_TASKS:  # each task is named after its column of the object table
        names, _ = zeroshot.attribute_prompts(task)
        labels[task] = single[task].map({n: i for i, n in enumerate(names)}).to_numpy(dtype=np.int64)
    return single["image_id"].to_numpy(dtype=np.int64), labels


def evaluate_sae(
    *,
    name: str,
    model_entry: dict,
    dataset_dir: str,
    store: str,
    checkpoint: str,
    out: dict,
    params: dict,
    seed: int,
    device: str,
    threads: int,
    label: str,
) -> None:
    """Reconstruction, downstream and concept-alignment metrics of a top-k SAE (methods.md Sec. 7;
    :mod:`clipmech.sae.evaluate`, :mod:`clipmech.sae.alignment`).

    The SAE checkpoint (:func:`clipmech.sae.model.load_sae`) names its site, token set and held-out images
    (``meta["site"]``, ``meta["tokens"]``, ``meta["holdout_images"]``); its tokens are read from the
    activation store ``store`` of the model on the dataset. Reconstruction metrics use the held-out images;
    the downstream zero-shot probes (single-object images) and the alignment use the images of
    ``params["split"]``: ``holdout`` or ``all`` (then the training images too). PCA and k-means are fit on
    at most ``params["fit_tokens"]`` tokens of seeded random training images.

    Writes ``out["metrics"]`` (JSON: ``reconstruction`` (:meth:`clipmech.sae.evaluate.ReconstructionStats.summary`),
    ``histogram`` (:func:`clipmech.sae.evaluate.frequency_histogram`), ``downstream`` (the zero-shot rows of
    :func:`clipmech.sae.evaluate.zero_shot_table`, the logit scale and ``error_term_max_abs_diff``, the
    largest |embedding(sae_error) - embedding(clean)|, 0 when the splice is exact), ``alignment`` (per method
    its metrics and per-concept bests); NaN as null), ``out["latents"]`` (:data:`clipmech.sae.alignment.LATENT_COLUMNS`,
    frequency on the held-out tokens), ``out["alignment"]`` (one row per method of
    :data:`clipmech.sae.alignment.METHODS`: ``method`` and the metrics of :func:`clipmech.sae.alignment.summarise`),
    ``out["histogram"]`` and ``out["top_images"]`` (the ``n_figure_latents`` lowest-entropy latents, each with
    its ``n_figure_images`` top images and patch heatmaps).

    ``params``: ``batch_size`` (images per read and forward), ``split``, ``dense_threshold``, ``purity_k``,
    ``coverage_ap``, ``entropy_k``, ``fit_tokens``, ``kmeans_max_clusters``, ``n_figure_latents``,
    ``n_figure_images``.

    Raises
    ------
    ValueError
        If the dataset has no object table, the store was extracted from another dataset or other weights,
        the SAE's site is not a vision site or its width differs from the store's, the held-out images are
        invalid or leave no training image, ``split`` is unknown, or the store's token layout differs from
        the model's.
    KeyError
        If the store does not hold the SAE's site (:func:`clipmech.stores.activations.site_activations`).
    """
    torch.set_num_threads(threads)
    if params["split"] not in SPLITS:
        raise ValueError(f"unknown split {params['split']!r}; valid splits are: {', '.join(SPLITS)}")
    data = datasets.load(dataset_dir)
    ds = activations.open_store(store)
    spec = loading.model_spec({name: model_entry}, name)
    _check_inputs(data, StoreProvenance.from_attrs(ds.attrs), spec, dataset_dir, store)
    torch_device = loading.resolve_device(device)
    sae, meta = load_sae(checkpoint)
    sae = sae.to(torch_device).eval()
    site = meta["site"]
    if not site.startswith("visual."):
        raise ValueError(
            f"SAE checkpoint {checkpoint}: site {site!r} is not a vision site; evaluation splices into visual.*"
        )
    model, preprocess, tokenizer = loading.load(spec, torch_device)
    info = tower(model, "visual")
    layout = (int(ds.attrs["n_prefix_tokens"]), int(ds.attrs["grid_rows"]), int(ds.attrs["grid_cols"]))
    if layout != (info.n_prefix_tokens, *info.grid):
        raise ValueError(
            f"store {store} has token layout (prefix, rows, cols) {layout}, the model {info.n_prefix_tokens, *info.grid}"
        )
    positions = token_positions(meta["tokens"], info.n_tokens, info.n_prefix_tokens)
    acts = site_activations(ds, site)
    acts = acts.rename(dict(zip(acts.dims, ("image", "token", "unit"))))
    d, n_latents = acts.sizes["unit"], sae.W_enc.shape[0]
    if sae.W_enc.shape[1] != d:
        raise ValueError(
            f"SAE checkpoint {checkpoint} has width {sae.W_enc.shape[1]}, site {site!r} of {store} has {d}"
        )
    holdout, train = _holdout(meta, data.n_images, checkpoint)
    batch_size = params["batch_size"]

    stats = evaluate.reconstruction_stats(sae, acts, holdout, positions, batch_size)
    reconstruction = stats.summary(params["dense_threshold"])
    histogram = evaluate.frequency_histogram(stats.frequency, stats.n_tokens)
    log.info("%s at %s (%s tokens), %d held-out images: %s", name, site, meta["tokens"], holdout.size, reconstruction)

    images = holdout if params["split"] == "holdout" else np.arange(data.n_images)
    single, labels = _labels(data.objects, images)
    if single.size == 0:
        raise ValueError(f"no single-object image among the {params['split']} images of {dataset_dir}")
    pixels = loading.preprocess_images(data.images[single], preprocess)
    embeddings = {"clean": evaluate.image_embeddings(model, pixels, None, batch_size=batch_size, device=torch_device)}
    for mode in evaluate.SPLICE_MODES:
        edit = {site: evaluate.splice(sae, positions, mode, stats.mean_D.numpy())}
        embeddings[mode] = evaluate.image_embeddings(model, pixels, edit, batch_size=batch_size, device=torch_device)
    texts = attribute_prompt_embeddings(model, tokenizer, torch_device)
    logit_scale = float(model.logit_scale.detach().exp())
    zero_shot = evaluate.zero_shot_table(embeddings, texts, labels, logit_scale)
    error_diff = float((embeddings["sae_error"] - embeddings["clean"]).abs().max())
    log.info("zero-shot on %d single-object images (error term exact to %g):\n%s", single.size, error_diff, zero_shot)

    rng = np.random.default_rng(seed)
    fit_BD = _fit_tokens(acts, train, positions, params, rng)
    x_BD = _stack(acts, images, positions, batch_size)
    patch_tokens = positions >= info.n_prefix_tokens
    present_NF, counts_NF = concepts.presence(data.objects, data.n_images, images)
    patch_present = concepts.patch_presence(data.masks, data.objects, images, info.grid) if patch_tokens.any() else None
    fitted = {
        "sae": sae,
        "pca": alignment.fit_pca(fit_BD, n_latents),
        "kmeans": alignment.fit_kmeans(fit_BD, min(n_latents, params["kmeans_max_clusters"]), seed),
    }
    rows, alignment_json, sae_acts, sae_scores = [], {}, None, None
    for method in alignment.METHODS:
        method_acts = alignment.method_activations(method, x_BD, **{m: fitted[m] for m in ("sae", "pca", "kmeans")})
        scores = alignment.score_units(
            method_acts,
            n_images=images.size,
            patch_tokens=patch_tokens,
            present_NF=present_NF,
            patch_present_NSF=patch_present,
            counts_NF=counts_NF,
            purity_k=params["purity_k"],
            entropy_k=params["entropy_k"],
        )
        metrics, per_concept = alignment.summarise(
            scores, purity_k=params["purity_k"], coverage_ap=params["coverage_ap"]
        )
        rows.append({"method": method, **metrics})
        alignment_json[method] = {"metrics": metrics, "per_concept": per_concept.to_dict("list")}
        if method == "sae":
            sae_acts, sae_scores = method_acts, scores
    table = pd.DataFrame(rows)
    log.info("alignment on %d images (%d fit tokens):\n%s", images.size, fit_BD.shape[0], table.to_string())
    latents = alignment.latent_table(sae_scores, stats.frequency)

    Path(out["metrics"]).parent.mkdir(parents=True, exist_ok=True)
    metrics_json = {
        "model": name,
        "site": site,
        "tokens": meta["tokens"],
        "d": int(d),
        "n_latents": int(n_latents),
        "split": params["split"],
        "n_holdout_images": int(holdout.size),
        "n_split_images": int(images.size),
        "reconstruction": reconstruction,
        "histogram": histogram,
        "downstream": {
            "n_images": int(single.size),
            "logit_scale": logit_scale,
            "error_term_max_abs_diff": error_diff,
            "zero_shot": zero_shot.to_dict("records"),
        },
        "alignment": alignment_json,
    }
    Path(out["metrics"]).write_text(json.dumps(_json_ready(metrics_json), indent=2) + "\n")
    tables.write_table(latents, out["latents"])
    tables.write_table(table, out["alignment"])

    sae_figures.firing_histogram(
        histogram,
        params["dense_threshold"],
        f"{label}: SAE at {site}, firing frequency of {n_latents} latents",
        out["histogram"],
    )
    chosen = latents[latents["entropy"].notna()].sort_values(["entropy", "latent"], kind="stable")
    chosen = chosen.head(params["n_figure_latents"])
    n_show = min(params["n_figure_images"], images.size)
    shown_images, shown_maps, titles = [], [], []
    for row in chosen.itertuples(index=False):
        image_N, maps_Nhw = alignment.unit_maps(sae_acts, int(row.latent), images.size, patch_tokens, info.grid)
        top = np.argsort(-image_N, kind="stable")[:n_show]
        shown_images.append(data.images[images[top]])
        shown_maps.append(None if maps_Nhw is None else maps_Nhw[top])
        titles.append(
            f"latent {row.latent}: {row.top_concept} (AUROC {row.auroc_image:.2f}, AP {row.ap:.2f}), "
            f"entropy {row.entropy:.2f} nats, frequency {row.frequency:.3g}"
        )
    size = data.images.shape[1:]
    sae_figures.top_latent_images(
        np.stack(shown_images) if shown_images else np.zeros((0, n_show, *size), dtype=np.uint8),
        np.stack(shown_maps) if shown_maps and patch_tokens.any() else None,
        titles,
        f"{label}: SAE at {site}, lowest-entropy latents and their top images",
        out["top_images"],
    )
