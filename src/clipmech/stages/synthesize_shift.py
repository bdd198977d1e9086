"""Synthesise a dataset of kind ``shift``, the distribution-shift splits of its base: the stage of rule ``synthesize_shift``."""

from __future__ import annotations

import logging

from clipmech.data import shift

log = logging.getLogger(__name__)


def synthesize_shift(*, data: str, spec: dict, image_size: int) -> None:
    """Render the shift splits (:func:`clipmech.data.shift.build`, chunk by chunk) as a Shapes dataset directory ``data``.

    ``spec`` is the dataset's config entry (``kind`` and ``base`` are not split parameters);
    ``image_size`` is its base dataset's.
    """
    shift_spec = shift.shift_spec(spec, image_size)
    shift.build(data, shift_spec)
    log.info(
        "wrote %d splits x %d images with shares %s of %s",
        len(shift_spec.shares),
        shift_spec.n_per_split,
        shift_spec.shares,
        shift_spec.concepts,
    )
