"""Attention sink and register neurons (neuron-attention paper A.5-A.6): the stage of rule ``find_registers``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from clipmech.data import tables
from clipmech.decomposition import registers as registers_decomposition
from clipmech.stores import attnpool as pool_store

log = logging.getLogger(__name__)


def find_registers(*, store: str, out: dict, registers: dict) -> None:
    """The attention sink (token with the largest mean attention) and the register neurons (paper A.5-A.6).

    ``out["tokens"]``: the mean attention of every token; ``out["neurons"]``: the register neurons;
    ``out["sample"]``: the number of images the register neurons were measured on and the feature map's grid,
    what rule ``plot_registers`` draws with the two tables. ``registers`` is the config's
    ``decomposition.registers`` section without ``n_figure_neurons`` (the figure's).
    """
    ds = pool_store.open_store(store)
    parts = pool_store.parts(ds)
    n = parts.n_images if registers["n_images"] is None else min(registers["n_images"], parts.n_images)
    alpha = ds["alpha"]
    chunk = alpha.encoding.get("chunks", (alpha.sizes["image"],))[0]  # one zarr chunk of images at a time
    tokens = registers_decomposition.token_attention_table(
        (
            alpha.isel(image=slice(start, start + chunk)).values.astype(np.float64)
            for start in range(0, parts.n_images, chunk)
        ),
        parts.grid,
    )
    sink = int(tokens.loc[tokens["is_sink"], "token"].iloc[0])
    sample = slice(0, n)  # the register neurons are measured on the first n images (config registers.n_images)
    x_NTC = ds["x"].isel(image=sample).values.astype(np.float64)
    alpha_NHT = alpha.isel(image=sample).values.astype(np.float64)
    neurons = registers_decomposition.register_neurons(x_NTC, alpha_NHT, parts.weights, sink, registers["chunk_size"])
    neurons["sink_token"] = sink
    tables.write_table(tokens, out["tokens"])
    tables.write_table(neurons, out["neurons"])
    log.info(
        "sink token %d (mean attention %.3f); top register neurons:\n%s",
        sink,
        tokens["mean_attention"].max(),
        neurons.head(10).to_string(),
    )
    sample = pd.DataFrame({"n_images": [n], "grid_rows": [parts.grid[0]], "grid_cols": [parts.grid[1]]})
    tables.write_table(sample, out["sample"])
