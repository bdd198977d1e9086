"""Figures of causal tracing (methods.md Sec. 8): the stage of rule ``plot_patching``."""

from __future__ import annotations

import pandas as pd

from clipmech.figures import tracing


def plot_patching(*, recovery: str, circuit: str, out: dict, threshold: float, label: str) -> None:
    """Draw the recovery maps of each tower (``out["visual"]``, ``out["text"]``), the head maps
    (``out["heads"]``) and the circuit-sparsity curves (``out["circuit_figure"]``) from the tables ``recovery`` and
    ``circuit`` of rule ``patch_components``."""
    recovery_table = pd.read_csv(recovery, sep="\t")
    for tower in ("visual", "text"):
        tracing.recovery_maps(recovery_table, tower, label, out[tower])
    tracing.head_maps(recovery_table, label, out["heads"])
    tracing.circuit_curves(pd.read_csv(circuit, sep="\t"), threshold, label, out["circuit_figure"])
