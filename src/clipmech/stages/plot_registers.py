"""Draw the attention sink and the register neurons (neuron-attention paper A.5-A.6): the stage of rule
``plot_registers``."""

from __future__ import annotations

import pandas as pd

from clipmech.figures import registers as registers_figures


def plot_registers(*, tokens: str, neurons: str, sample: str, out: dict, n_figure_neurons: int, label: str) -> None:
    """The mean attention over the feature map with the sink marked and the top ``n_figure_neurons`` register
    neurons (``out["figure"]``, :func:`clipmech.figures.registers.attention_sink`) from the tables of rule
    ``find_registers``; its ``register_sample.tsv`` gives the grid and the number of images."""
    record = pd.read_csv(sample, sep="\t").iloc[0]
    registers_figures.attention_sink(
        pd.read_csv(tokens, sep="\t"),
        pd.read_csv(neurons, sep="\t"),
        (int(record["grid_rows"]), int(record["grid_cols"])),
        n_figure_neurons,
        f"{label}: attention sink and register neurons ({int(record['n_images'])} images)",
        out["figure"],
    )
