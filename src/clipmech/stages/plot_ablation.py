"""Draw the mean-ablation curves (neuron-attention paper Fig. 1): the stage of rule ``plot_ablation``."""

from __future__ import annotations

import pandas as pd

from clipmech.figures import ablation as ablation_figures

#: The task of a natural-image dataset (clipmech.decomposition.components.CLASS_TASK, not imported: that
#: module's code is not this rule's).
CLASS_TASK = "class"


def plot_ablation(*, table: str, tasks: str, out: dict, label: str) -> None:
    """Zero-shot accuracy vs fraction kept per task (``out["figure"]``,
    :func:`clipmech.figures.ablation.ablation_curves`) from the curves of rule ``ablate_components``, with
    each task's chance level (one over its number of classes) and the first task's number of images from
    its ``ablation_tasks.tsv``: single-object Shapes images, or the labelled images of the ``class`` task of a
    natural-image dataset (:data:`clipmech.decomposition.components.CLASS_TASK`)."""
    task_table = pd.read_csv(tasks, sep="\t")
    chance = {row.task: 1.0 / row.n_classes for row in task_table.itertuples()}
    images = "labelled images" if list(task_table["task"]) == [CLASS_TASK] else "single-object images"
    ablation_figures.ablation_curves(
        pd.read_csv(table, sep="\t"),
        chance,
        f"{label}: mean-ablation of all but the top components ({task_table['n_images'].iloc[0]} {images})",
        out["figure"],
    )
