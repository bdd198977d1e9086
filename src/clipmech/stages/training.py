"""Training stage: train a pipeline-owned CLIP on captioned Shapes scenes."""

from __future__ import annotations

import torch

from clipmech import models, train


def train_model(name: str, architecture: str, params: dict, checkpoint: str, metrics: str, losses: str, threads: int) -> None:
    """Train ``architecture`` (:mod:`clipmech.train`); write checkpoint, metrics JSON and losses TSV."""
    torch.set_num_threads(threads)
    train.train_and_save(
        models.ModelSpec(name=name, architecture=architecture, pretrained=None),
        train.TrainConfig(**params),
        checkpoint,
        metrics,
        losses,
    )
