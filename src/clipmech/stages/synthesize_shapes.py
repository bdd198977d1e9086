"""Synthesise a Shapes dataset (methods.md Sec. 1): the stage of rule ``synthesize_shapes``."""

from __future__ import annotations

import logging
from pathlib import Path

from clipmech.data import shapes

log = logging.getLogger(__name__)


def synthesize_shapes(*, out_dir: str | Path, params: dict) -> None:
    """Write a Shapes dataset (``images.npy``, ``masks.npy``, ``objects.tsv``, ``spec.json``).

    ``params`` are :class:`clipmech.data.shapes.ShapesSpec` fields (``kind`` is ignored).
    """
    spec = shapes.ShapesSpec(**{key: value for key, value in params.items() if key != "kind"})
    shapes.build(out_dir, spec)
    log.info("Shapes dataset %s -> %s", spec, out_dir)
