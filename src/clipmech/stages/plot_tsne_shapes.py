"""Draw the t-SNE map of the Shapes image embeddings: the stage of rule ``plot_tsne_shapes``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from clipmech.figures import tsne as tsne_figures


def plot_tsne_shapes(*, table: str, summary: str, out: dict, label: str) -> None:
    """The three-panel map (``out["figure"]``, :func:`clipmech.figures.tsne.tsne_shapes`: colour and shape of
    single-object images, object count of all) from the coordinates and labels of rule ``tsne_shapes``,
    titled with its perplexity and the silhouettes of its summary; ``label`` ("<model> on <dataset>") first.
    """
    # keep_default_na=False: a multi-object image's empty colour and shape stay "" as the stage had them
    labels = pd.read_csv(table, sep="\t", keep_default_na=False)
    record = json.loads(Path(summary).read_text())
    silhouettes = {name: float("nan") if value is None else value for name, value in record["silhouette"].items()}
    tsne_figures.tsne_shapes(
        labels[["x", "y"]].to_numpy(),
        labels,
        f"{label}: t-SNE of image embeddings (perplexity {record['perplexity']}); silhouette of single-object "
        f"images by colour {silhouettes['colour']:.2f}, by shape {silhouettes['shape']:.2f}",
        out["figure"],
    )
