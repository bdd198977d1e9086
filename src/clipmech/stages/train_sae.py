"""Train a top-k SAE on one site of an activation store: the stage of rule ``train_sae``."""

from __future__ import annotations

import torch

from clipmech.models import loading
from clipmech.sae.train import SAETrainConfig
from clipmech.sae.train import train_sae as train


def train_sae(*, model: str, site: str, store: str, sae: dict, out: dict, device: str, threads: int, code: str) -> None:
    """Run :func:`clipmech.sae.train.train_sae` for the model ``model`` at ``site`` with the ``sae:``
    config block ``sae`` (without ``models`` and ``sites``); ``out`` holds ``checkpoint`` (the SAE
    file) and ``log`` (training.tsv); ``code`` is the rule's code hash, kept in the SAE's meta and in its
    resume checkpoint, so a resume after a code edit starts afresh."""
    torch.set_num_threads(threads)
    train(
        store,
        site,
        SAETrainConfig(**sae),
        out["checkpoint"],
        out["log"],
        device=loading.resolve_device(device),
        provenance={"model": model, "code": code},
    )
