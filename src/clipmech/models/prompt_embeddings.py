"""The model's text embeddings of the zero-shot attribute prompts (:mod:`clipmech.models.zeroshot`), one
tensor per task: what every stage that classifies Shapes attributes zero-shot encodes first."""

from __future__ import annotations

import torch

from clipmech.models import loading, zeroshot


def attribute_prompt_embeddings(model, tokenizer, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Task (in :data:`clipmech.models.zeroshot.ATTRIBUTE_TASKS` order) -> the L2-normalised embeddings of its
    prompts (:func:`clipmech.models.zeroshot.attribute_prompts`), float32 (P_task, E), on ``device``."""
    return {
        task: loading.encode_text(model, tokenizer, zeroshot.attribute_prompts(task)[1], device)
        for task in zeroshot.ATTRIBUTE_TASKS
    }
