"""MiCLIP's baselines (clipmech.miclip.baselines) against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clipmech.miclip import baselines


def test_soft_wpmi_matches_a_hand_computed_case():
    acts = np.array([[3.0, 0.0], [1.0, 2.0], [2.0, 1.0]])  # unit 0 ranks images 0, 2; unit 1 ranks 1, 2
    sim = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    a, lam, k = 2.0, 1.0, 2
    p = np.exp(a * sim) / np.exp(a * sim).sum(axis=1, keepdims=True)
    p_in = np.array([0.998, 0.998 - 0.5 * (0.998 - 0.97)])
    top = {0: [0, 2], 1: [1, 2]}
    log_p = np.array(
        [
            [sum(np.log(1 + p_in[r] * (p[i, c] - 1) + 1e-7) for r, i in enumerate(top[u])) for c in range(2)]
            for u in range(2)
        ]
    )
    prior = np.log(np.exp(log_p).mean(axis=0))
    expected = log_p - lam * prior
    np.testing.assert_allclose(baselines.soft_wpmi(acts, sim, top_k=k, a=a, lam=lam), expected, rtol=1e-10)


def test_netdissect_iou_matches_a_hand_computed_case():
    # One image, a 2 x 2 map already at the mask resolution; quantile 0.25 keeps the single top pixel.
    maps = np.array([[[[4.0, 1.0], [2.0, 3.0]], [[0.0, 0.0], [0.0, 5.0]]]])  # (N=1, U=2, 2, 2)
    masks = np.zeros((1, 2, 2, 2), dtype=bool)
    masks[0, 0, :, 0] = True  # concept 0: the left column
    masks[0, 1, 1, 1] = True  # concept 1: the bottom-right pixel
    iou = baselines.netdissect_iou(maps, masks, quantile=0.25)
    # unit 0 is on at (0, 0): IoU 1/2 with concept 0, 0 with concept 1; unit 1 on at (1, 1): 0 and 1.
    np.testing.assert_allclose(iou, [[0.5, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="quantile"):
        baselines.netdissect_iou(maps, masks, quantile=1.0)


def test_concept_masks_take_the_union_of_the_objects_with_the_concept():
    masks = np.array([[[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 0], [0, 0, 0, 0]]])
    objects = pd.DataFrame(
        {"image_id": [0, 0], "object_id": [1, 2], "shape": ["circle", "square"], "colour": ["red", "red"],
         "position": ["top-left", "top-right"]}
    )  # fmt: skip
    concept = baselines.concept_masks(masks, objects, 4)
    from clipmech.data.shapes import FEATURES

    assert concept[0, ..., FEATURES.index("red")].sum() == 6
    assert concept[0, ..., FEATURES.index("circle")].sum() == 4 and concept[0, ..., FEATURES.index("blue")].sum() == 0


def test_act_values_and_ground_truth():
    acts = np.array([[1.0, 0.0], [3.0, 1.0], [5.0, 1.0]])
    present = np.array([[True, False], [True, True], [False, True]])
    np.testing.assert_allclose(baselines.act_values(acts, present), [[2.0, 4.0], [0.5, 1.0]])
    counts = present.astype(float)
    assert baselines.ground_truth(np.c_[acts[:, :1], np.zeros(3)], counts, 1).tolist() == [1, -1]
