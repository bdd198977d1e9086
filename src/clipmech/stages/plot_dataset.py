"""Draw the dataset preview: the stage of rule ``plot_dataset``."""

from __future__ import annotations

from clipmech.data import datasets
from clipmech.figures import dataset as dataset_figures


def plot_dataset(*, dataset_dir: str, preview: str) -> None:
    """Example images of every object count, drawn to ``preview``."""
    data = datasets.load(dataset_dir)
    dataset_figures.dataset_preview(data.images, data.objects, preview)
