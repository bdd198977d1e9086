"""Index a natural-image dataset a user has on disk into a manifest: the stage of rule ``index_images``."""

from __future__ import annotations

import logging
from pathlib import Path

from clipmech.data import natural

log = logging.getLogger(__name__)


def index_images(*, data: str | Path, spec: dict) -> None:
    """Write the manifest directory of a natural-image dataset (:func:`clipmech.data.natural.write_natural_dataset`).

    ``data`` is the dataset folder to write (never inside the user's data folder); ``spec`` is the dataset's
    config entry (kind ``imagenet``, ``imagefolder``, ``captions``, ``cifar10`` or ``pascal_context``). Raises as
    ``write_natural_dataset``.
    """
    written = natural.write_natural_dataset(data, spec)
    log.info(
        "%s dataset (%s layout) of %d images, %d classes, %d unreadable skipped -> %s",
        written["kind"],
        written["layout"],
        written["n_images"],
        written["n_classes"],
        len(written["skipped"]),
        data,
    )
