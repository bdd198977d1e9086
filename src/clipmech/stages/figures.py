"""Figure stages: the plots of the dataset, training and selectivity outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from clipmech import datasets, extract, plots, selectivity, shapes


def plot_dataset(dataset_dir: str, path: str) -> None:
    """Example images of every object count."""
    data = datasets.load(dataset_dir)
    plots.dataset_preview(data.images, data.objects, path)


def plot_training(metrics: str, losses: str, path: str) -> None:
    """The loss curve with the zero-shot metrics in its title."""
    plots.loss_curve(pd.read_csv(losses, sep="\t"), json.loads(Path(metrics).read_text()), path)


def plot_selectivity(store: str, dataset_dir: str, units: str, topk: str, null: str, out: dict, params: dict, seed: int) -> None:
    """Entropy per layer against the null, top images with affinities, and patch heatmaps of the
    lowest-entropy unit on images with and without its two top features (the poster's figures)."""
    data = datasets.load(dataset_dir)
    table = pd.read_csv(units, sep="\t")
    topk_table = pd.read_csv(topk, sep="\t")
    null_D = pd.read_csv(null, sep="\t")["entropy"].to_numpy()
    plots.entropy_by_layer(table, null_D, out["entropy"])
    plots.top_images_with_affinity(table, topk_table, data.images, params["n_figure_units"], 16, out["top_images"])
    unit = table.iloc[0]
    with_idx, maps_with, without_idx, maps_without = selectivity.heatmap_examples(
        extract.open_store(store),
        shapes.feature_counts(data.objects, data.n_images),
        unit,
        topk_table,
        params["n_heatmap_images"],
        np.random.default_rng(seed),
    )
    plots.patch_heatmaps(
        data.images[with_idx],
        maps_with,
        data.images[without_idx],
        maps_without,
        f"layer {unit['layer']} neuron {unit['neuron']}: with / without {unit['top1']}, {unit['top2']}",
        out["heatmaps"],
    )
