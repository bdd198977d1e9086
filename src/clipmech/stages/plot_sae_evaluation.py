"""Draw the evaluation of a top-k SAE: the stage of rule ``plot_sae_evaluation``."""

from __future__ import annotations

import json
from pathlib import Path

from clipmech.figures import sae_eval as sae_figures
from clipmech.sae.alignment import load_top_latents


def plot_sae_evaluation(*, metrics: str, top_latents: str, out: dict, dense_threshold: float, label: str) -> None:
    """The firing-frequency histogram (``out["histogram"]``) from the metrics of rule ``evaluate_sae`` and the
    lowest-entropy latents with their top images (``out["top_images"]``) from its ``top_latents.npz``
    (:func:`clipmech.sae.alignment.load_top_latents`)."""
    record = json.loads(Path(metrics).read_text())
    site = record["site"]
    sae_figures.firing_histogram(
        record["histogram"],
        dense_threshold,
        f"{label}: SAE at {site}, firing frequency of {record['n_latents']} latents",
        out["histogram"],
    )
    images, maps, titles = load_top_latents(top_latents)
    sae_figures.top_latent_images(
        images, maps, titles, f"{label}: SAE at {site}, lowest-entropy latents and their top images", out["top_images"]
    )
