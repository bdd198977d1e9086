"""Draw the training loss curve: the stage of rule ``plot_training``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from clipmech.figures import training as training_figures


def plot_training(*, metrics: str, losses: str, figure: str) -> None:
    """The loss curve with the zero-shot metrics in its title, drawn to ``figure``."""
    training_figures.loss_curve(pd.read_csv(losses, sep="\t"), json.loads(Path(metrics).read_text()), figure)
