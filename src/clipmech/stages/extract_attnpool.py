"""Extract the attention-pool store of a CLIP-ResNet (methods.md Sec. 5): the stage of rule ``extract_attnpool``."""

from __future__ import annotations

import logging

import torch

from clipmech.models import loading
from clipmech.stores import attnpool_extraction

log = logging.getLogger(__name__)


def extract_attnpool(
    *, name: str, model_entry: dict, dataset_dir: str, store: str, params: dict, threads: int, code: str
) -> None:
    """Write the attention-pool store of the model ``name`` on a dataset (:mod:`clipmech.stores.attnpool`);
    ``code`` is the rule's code hash (its ``code`` param), recorded in the store's provenance."""
    torch.set_num_threads(threads)
    attnpool_extraction.extract_attnpool(
        loading.model_spec({name: model_entry}, name),
        dataset_dir,
        store,
        batch_size=params["batch_size"],
        device=params["device"],
        code=code,
    )
