"""Synthesise a dataset of kind ``pairs``, Shapes minimal pairs for causal tracing: the stage of rule ``synthesize_pairs``."""

from __future__ import annotations

import logging
from pathlib import Path

from clipmech.data import pairs

log = logging.getLogger(__name__)


def synthesize_pairs(*, directory: str | Path, params: dict) -> None:
    """Write a minimal-pairs dataset (:func:`clipmech.data.pairs.build`; methods.md Sec. 8).

    ``params`` is the dataset's config entry: :class:`clipmech.data.pairs.PairsSpec` fields and
    ``kind`` (not a field).
    """
    spec = pairs.PairsSpec(**{key: value for key, value in params.items() if key != "kind"})
    pairs.build(directory, spec)
    log.info(
        "wrote %d scenes x %d images (%d pairs: %s) at %d px, seed %d -> %s",
        spec.n_scenes,
        1 + len(pairs.KINDS),
        spec.n_scenes * len(pairs.KINDS),
        ", ".join(pairs.KINDS),
        spec.image_size,
        spec.seed,
        directory,
    )
