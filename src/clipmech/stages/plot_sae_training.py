"""Draw the training curves of a top-k SAE: the stage of rule ``plot_sae_training``."""

from __future__ import annotations

import pandas as pd

from clipmech.figures import sae as sae_figures


def plot_sae_training(*, log: str, label: str, figure: str) -> None:
    """FVU, L0 and dead fraction over training (:func:`clipmech.figures.sae.training_curves`) from the
    training log ``log`` (rule ``train_sae``'s training.tsv), drawn to ``figure``."""
    sae_figures.training_curves(pd.read_csv(log, sep="\t"), label, figure)
