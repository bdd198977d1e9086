"""Draw the evaluation of a top-k SAE: the stage of rule ``plot_sae_evaluation``."""

from __future__ import annotations

import json
from pathlib import Path

from clipmech.figures import sae_eval as sae_figures
from clipmech.sae.alignment import load_top_latents


def plot_sae_evaluation(*, metrics: str, top_latents: str, out: dict, dense_threshold: float, label: str) -> None:
    """The firing-frequency histogram (``out["histogram"]``) from the metrics of rule ``evaluate_sae`` and the
    lowest-entropy latents with their top images (``out["top_images"]``) from its ``top_latents.npz``
    (:func:`clipmech.sae.alignment.load_top_latents`). A diverged SAE (its metrics' ``diverged``) gets red
    titles that say so, with its held-out FVU against ``max_fvu``."""
    record = json.loads(Path(metrics).read_text())
    site = record["site"]
    warning, colour = "", "black"
    if record["diverged"]:
        fvu = record["reconstruction"]["fvu"]  # None when not finite (JSON has no NaN)
        fvu = "non-finite" if fvu is None else f"{fvu:.3g}"
        warning = f"DIVERGED (held-out FVU {fvu} > max_fvu {record['max_fvu']:g}; do not read its latents)\n"
        colour = "#c00000"
    sae_figures.firing_histogram(
        record["histogram"],
        dense_threshold,
        f"{warning}{label}: SAE at {site}, firing frequency of {record['n_latents']} latents",
        out["histogram"],
        title_colour=colour,
    )
    images, maps, titles = load_top_latents(top_latents)
    sae_figures.top_latent_images(
        images,
        maps,
        titles,
        f"{warning}{label}: SAE at {site}, lowest-entropy latents and their top images",
        out["top_images"],
        title_colour=colour,
    )
