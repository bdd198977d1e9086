"""Train a small CLIP on captioned Shapes scenes: the stage of rule ``train_clip``."""

from __future__ import annotations

import torch

from clipmech.models import loading
from clipmech.models import train as training


def train_clip(
    *, model: str, architecture: str, train: dict, checkpoint: str, metrics: str, losses: str, threads: int
) -> None:
    """Train ``architecture`` as the model ``model`` (:mod:`clipmech.models.train`, settings ``train``, the
    model's config ``train`` block); write checkpoint, metrics JSON and losses TSV."""
    torch.set_num_threads(threads)
    training.train_and_save(
        loading.ModelSpec(name=model, architecture=architecture, pretrained=None),
        training.TrainConfig(**train),
        checkpoint,
        metrics,
        losses,
    )
