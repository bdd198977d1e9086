"""Synthesise a dataset of kind ``pairs``, Shapes minimal pairs for causal tracing: the stage of rule ``synthesize_pairs``."""

from __future__ import annotations

import logging
from pathlib import Path

from clipmech.data import pairs

log = logging.getLogger(__name__)


def synthesize_pairs(*, data: str | Path, spec: dict) -> None:
    """Write a minimal-pairs dataset (:func:`clipmech.data.pairs.build`; methods.md Sec. 8).

    ``data`` is the dataset folder to write; ``spec`` is the dataset's config entry:
    :class:`clipmech.data.pairs.PairsSpec` fields and ``kind`` (not a field).
    """
    pairs_spec = pairs.PairsSpec(**{key: value for key, value in spec.items() if key != "kind"})
    pairs.build(data, pairs_spec)
    log.info(
        "wrote %d scenes x %d images (%d pairs: %s) at %d px, seed %d -> %s",
        pairs_spec.n_scenes,
        1 + len(pairs.KINDS),
        pairs_spec.n_scenes * len(pairs.KINDS),
        ", ".join(pairs.KINDS),
        pairs_spec.image_size,
        pairs_spec.seed,
        data,
    )
