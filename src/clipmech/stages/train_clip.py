"""Train a small CLIP on captioned Shapes scenes: the stage of rule ``train_clip``."""

from __future__ import annotations

import torch

from clipmech.models import loading, train


def train_clip(
    *, name: str, architecture: str, params: dict, checkpoint: str, metrics: str, losses: str, threads: int
) -> None:
    """Train ``architecture`` (:mod:`clipmech.models.train`); write checkpoint, metrics JSON and losses TSV."""
    torch.set_num_threads(threads)
    train.train_and_save(
        loading.ModelSpec(name=name, architecture=architecture, pretrained=None),
        train.TrainConfig(**params),
        checkpoint,
        metrics,
        losses,
    )
