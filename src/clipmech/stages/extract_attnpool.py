"""Extract the attention-pool store of a CLIP-ResNet (methods.md Sec. 5): the stage of rule ``extract_attnpool``."""

from __future__ import annotations

import logging

import torch

from clipmech.models.loading import ModelSpec
from clipmech.stores import attnpool_extraction

log = logging.getLogger(__name__)


def extract_attnpool(
    *, model: ModelSpec, dataset_dir: str, store: str, extraction: dict, threads: int, code: str
) -> None:
    """Write the attention-pool store of ``model`` on a dataset (:mod:`clipmech.stores.attnpool`) with the
    config's ``extraction`` settings; ``code`` is the rule's code hash (its ``code`` param), recorded in
    the store's provenance."""
    torch.set_num_threads(threads)
    attnpool_extraction.extract_attnpool(
        model,
        dataset_dir,
        store,
        batch_size=extraction["batch_size"],
        device=extraction["device"],
        precision=extraction["precision"],
        code=code,
        workers=threads,
    )
