"""Synthesise a dataset of kind ``shift``, the distribution-shift splits of its base: the stage of rule ``synthesize_shift``."""

from __future__ import annotations

import logging

from clipmech.data import shift

log = logging.getLogger(__name__)


def synthesize_shift(*, directory: str, params: dict, image_size: int) -> None:
    """Render the shift splits (:func:`clipmech.data.shift.synthesize`) as a Shapes dataset directory.

    ``params`` is the dataset's config entry (``kind`` and ``base`` are not split parameters);
    ``image_size`` is its base dataset's.
    """
    spec = shift.shift_spec(params, image_size)
    shift.save(directory, spec, *shift.synthesize(spec))
    log.info(
        "wrote %d splits x %d images with shares %s of %s",
        len(spec.shares),
        spec.n_per_split,
        spec.shares,
        spec.concepts,
    )
