"""Synthesise a Shapes dataset (methods.md Sec. 1): the stage of rule ``synthesize_shapes``."""

from __future__ import annotations

import logging
from pathlib import Path

from clipmech.data import shapes

log = logging.getLogger(__name__)


def synthesize_shapes(*, data: str | Path, spec: dict) -> None:
    """Write a Shapes dataset (``images.npy``, ``masks.npy``, ``objects.tsv``, ``spec.json``).

    ``data`` is the dataset folder to write; ``spec`` holds :class:`clipmech.data.shapes.ShapesSpec` fields
    (``kind`` is ignored).
    """
    shapes_spec = shapes.ShapesSpec(**{key: value for key, value in spec.items() if key != "kind"})
    shapes.build(data, shapes_spec)
    log.info("Shapes dataset %s -> %s", shapes_spec, data)
