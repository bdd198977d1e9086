"""Extract the activation store of one model on one dataset: the stage of rule ``extract_activations``."""

from __future__ import annotations

import torch

from clipmech.models.loading import ModelSpec
from clipmech.stores import activation_extraction


def extract_activations(
    *, model: ModelSpec, dataset_dir: str, store: str, extraction: dict, threads: int, code: str
) -> None:
    """Run :func:`clipmech.stores.activation_extraction.extract` for ``model`` with the config's ``extraction``
    settings; ``code`` is the rule's code hash (its ``code`` param), recorded in the store's provenance."""
    torch.set_num_threads(threads)
    activation_extraction.extract(
        model,
        dataset_dir,
        store,
        layers=extraction.get("layers"),
        sites=tuple(extraction.get("sites", activation_extraction.DEFAULT_SITES)),
        reductions=tuple(extraction.get("reductions", ("mean", "max", "cls"))),
        save_tokens=extraction.get("save_tokens", True),
        batch_size=extraction.get("batch_size", 32),
        device=extraction.get("device", "auto"),
        code=code,
        workers=threads,
    )
