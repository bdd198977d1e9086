"""Draw the selectivity figures of one model on one dataset: the stage of rule ``plot_selectivity``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clipmech.analyses import selectivity as selectivity_analysis
from clipmech.data import datasets, shapes
from clipmech.figures import selectivity as selectivity_figures
from clipmech.stores import activations


def plot_selectivity(
    *, store: str, dataset_dir: str, units: str, topk: str, null: str, out: dict, selectivity: dict, seed: int
) -> None:
    """Entropy per layer against the null, top images with affinities, and patch heatmaps of the
    lowest-entropy unit on images with and without its two top features (the poster's figures);
    ``selectivity`` is the config's ``selectivity`` section."""
    data = datasets.load(dataset_dir)
    table = pd.read_csv(units, sep="\t")
    topk_table = pd.read_csv(topk, sep="\t")
    null_Z = pd.read_csv(null, sep="\t")["entropy"].to_numpy()
    selectivity_figures.entropy_by_layer(table, null_Z, out["entropy"])
    selectivity_figures.top_images_with_affinity(
        table, topk_table, data.images, selectivity["n_figure_units"], 16, out["top_images"]
    )
    unit = table.iloc[0]
    with_idx, maps_with, without_idx, maps_without = selectivity_analysis.heatmap_examples(
        activations.open_store(store),
        shapes.feature_counts(data.objects, data.n_images),
        unit,
        topk_table,
        selectivity["n_heatmap_images"],
        np.random.default_rng(seed),
    )
    selectivity_figures.patch_heatmaps(
        data.images[with_idx],
        maps_with,
        data.images[without_idx],
        maps_without,
        f"layer {unit['layer']} neuron {unit['neuron']}: with / without {unit['top1']}, {unit['top2']}",
        out["heatmaps"],
    )
