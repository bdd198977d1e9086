"""Draw the zero-shot accuracy with m-sparse text directions (neuron-attention paper Fig. 2): the stage of rule
``plot_sparse_accuracy``."""

from __future__ import annotations

import pandas as pd

from clipmech import artefacts
from clipmech.figures import sparse_accuracy as sparse_accuracy_figures

#: The rule that writes the text embeddings (clipmech.stages.embed_text.RULE, not imported: that module's
#: code, the model loading, is not this rule's).
TEXT_RULE = "embed_text"


def plot_sparse_accuracy(*, accuracy: str, text_path: str, out: dict, keep_fraction: float, label: str) -> None:
    """Accuracy vs m per task (``out["figure"]``, :func:`clipmech.figures.sparse_accuracy.sparse_accuracy`)
    from the table of rule ``decompose_text``, titled with the fraction of pairs kept (the config's
    ``decomposition.text.keep_fraction``) and the number of words of the dictionary the directions are coded
    over (the ``words`` of the text embeddings, checked against their sha256 record)."""
    with artefacts.load_npz(text_path, rule=TEXT_RULE) as text:
        n_words = len(text["words"])
    sparse_accuracy_figures.sparse_accuracy(
        pd.read_csv(accuracy, sep="\t"),
        f"{label}: top {keep_fraction:.0%} of pairs / neurons kept, directions from m of {n_words} words",
        out["figure"],
    )
