"""Draw the binding benchmark (methods.md Sec. 4): the stage of rule ``plot_binding``."""

from __future__ import annotations

import pandas as pd

from clipmech.figures import binding as binding_figures


def plot_binding(*, accuracy: str, out: dict, label: str) -> None:
    """The accuracy per task and object count with its confidence intervals (``out["figure"]``,
    :func:`clipmech.figures.binding.binding_accuracy`) from the table of rule ``binding_benchmark``;
    ``label`` ("<model> on <dataset>") titles it."""
    binding_figures.binding_accuracy(
        pd.read_csv(accuracy, sep="\t"), f"{label}: binding benchmark (chance 0.5)", out["figure"]
    )
