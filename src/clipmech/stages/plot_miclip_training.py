"""Draw the MiCLIP encoders' training curves: the stage of rule ``plot_miclip_training``."""

from __future__ import annotations

import pandas as pd

from clipmech.figures import miclip as miclip_figures


def plot_miclip_training(*, log: str, label: str, figure: str) -> None:
    """Training and held-out loss per loss variant and seed (:func:`clipmech.figures.miclip.training_curves`)
    from the training log ``log`` (rule ``train_miclip``'s training.tsv), drawn to ``figure``."""
    miclip_figures.training_curves(pd.read_csv(log, sep="\t"), f"{label}: MiCLIP encoder training", figure)
