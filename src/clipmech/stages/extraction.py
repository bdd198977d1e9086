"""Extraction stage: MLP activations of a configured model over a dataset into a zarr store."""

from __future__ import annotations

import torch

from clipmech import extract, models


def extract_activations(name: str, model_entry: dict, dataset_dir: str, store: str, params: dict, threads: int) -> None:
    """Run :func:`clipmech.extract.extract` for the model ``name`` configured as ``model_entry``."""
    torch.set_num_threads(threads)
    extract.extract(
        models.model_spec({name: model_entry}, name),
        dataset_dir,
        store,
        layers=params.get("layers"),
        reductions=tuple(params.get("reductions", ("mean", "max", "cls"))),
        save_tokens=params.get("save_tokens", True),
        batch_size=params.get("batch_size", 32),
        device=params.get("device", "auto"),
    )
