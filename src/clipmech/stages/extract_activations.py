"""Extract the activation store of one model on one dataset: the stage of rule ``extract_activations``."""

from __future__ import annotations

import torch

from clipmech.models import loading
from clipmech.stores import activation_extraction


def extract_activations(
    *, name: str, model_entry: dict, dataset_dir: str, store: str, params: dict, threads: int, code: str
) -> None:
    """Run :func:`clipmech.stores.activation_extraction.extract` for the model ``name`` configured as ``model_entry``;
    ``code`` is the rule's code hash (its ``code`` param), recorded in the store's provenance."""
    torch.set_num_threads(threads)
    activation_extraction.extract(
        loading.model_spec({name: model_entry}, name),
        dataset_dir,
        store,
        layers=params.get("layers"),
        sites=tuple(params.get("sites", activation_extraction.DEFAULT_SITES)),
        reductions=tuple(params.get("reductions", ("mean", "max", "cls"))),
        save_tokens=params.get("save_tokens", True),
        batch_size=params.get("batch_size", 32),
        device=params.get("device", "auto"),
        code=code,
    )
