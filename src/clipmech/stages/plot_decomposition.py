"""Draw the contribution norms of the neuron x head decomposition (methods.md Sec. 5): the stage of rule
``plot_decomposition``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from clipmech.decomposition import components
from clipmech.figures import norms as norms_figures

#: The rule that writes the component scores (clipmech.stages.decompose_attnpool.RULE, not imported: that
#: module's code is not this rule's).
SCORES_RULE = "decompose_attnpool"


def plot_decomposition(*, summary: str, scores: str, out: dict, label: str) -> None:
    """The cumulative norm share per level and the |cos| of the top pairs' first PCs (``out["figure"]``,
    :func:`clipmech.figures.norms.component_norms`) from the ``scores.npz`` of rule ``decompose_attnpool``,
    titled with the checks of its ``summary.json``."""
    record = json.loads(Path(summary).read_text())
    scores_by_level, cos_pc_u = components.load_component_scores(scores, rule=SCORES_RULE)
    norms_figures.component_norms(
        scores_by_level,
        pd.DataFrame({"cos_pc_u": cos_pc_u}),
        f"{label}: {record['n_heads']} heads x {record['n_neurons']} neurons; "
        f"reconstruction error {record['reconstruction_rel_err_max']:.1e}; "
        f"median PC1 variance share: pairs {record['pair_pc1_explained_median']:.3f}, "
        f"neurons {record['neuron_pc1_explained_median']:.3f}",
        out["figure"],
    )
