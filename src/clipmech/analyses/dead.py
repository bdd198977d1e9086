"""Dead units (methods.md Sec. 2): the one rule for a unit whose activation never varies on the dataset.

A unit whose image-level activation is the same on every image of the dataset (an SAE latent that never
fires, a channel stuck at one value) ranks the images arbitrarily: its top images, Algorithm 1 affinities
and entropy, AUROCs and descriptions would describe the tie-breaking, not the unit. Such a unit is
reported as dead and is left out wherever units are ranked, described, localised or given a page: the
atlas (:mod:`clipmech.atlas`), the SAE concept alignment (:mod:`clipmech.sae.alignment`) and the MiCLIP
evaluation (:mod:`clipmech.miclip.evaluation`, :func:`clipmech.miclip.baselines.ground_truth`).
"""

from __future__ import annotations

import numpy as np


def dead_units(acts_NU: np.ndarray) -> np.ndarray:
    """Which units are dead: the same image-level activation on every one of the N images.

    Compared exactly, in the array's own dtype (a unit that varies by one ulp is alive); a unit with a NaN
    activation is not dead.

    Parameters
    ----------
    acts_NU : numpy.ndarray, (N, U)
        Image-level activations of U units on the N images of the dataset.

    Returns
    -------
    numpy.ndarray, bool, (U,)

    Raises
    ------
    ValueError
        If ``acts_NU`` is not 2-D or has no image.
    """
    acts_NU = np.asarray(acts_NU)
    if acts_NU.ndim != 2 or acts_NU.shape[0] == 0:
        raise ValueError(f"dead_units needs (N, U) activations of at least one image, got shape {acts_NU.shape}")
    return acts_NU.max(axis=0) == acts_NU.min(axis=0)
