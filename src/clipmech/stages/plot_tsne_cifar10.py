"""Draw the t-SNE map of CIFAR-10 image embeddings: the stage of rule ``plot_tsne_cifar10``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from clipmech.figures import tsne as tsne_figures


def plot_tsne_cifar10(*, table: str, summary: str, out: dict, label: str) -> None:
    """The map coloured by class (``out["figure"]``, :func:`clipmech.figures.tsne.tsne_classes`; every class
    of the summary in the legend) from the coordinates and labels of rule ``tsne_cifar10``, titled with the
    split, the number of images and the class silhouette of its summary; ``label`` (the model) first."""
    coordinates = pd.read_csv(table, sep="\t")
    record = json.loads(Path(summary).read_text())
    silhouette = float("nan") if record["silhouette"] is None else record["silhouette"]
    tsne_figures.tsne_classes(
        coordinates[["x", "y"]].to_numpy(),
        coordinates["label"].to_numpy(),
        record["classes"],
        f"{label} on CIFAR-10 ({record['split']}, {record['n_images']} images): t-SNE of image embeddings; "
        f"class silhouette {silhouette:.2f}",
        out["figure"],
    )
