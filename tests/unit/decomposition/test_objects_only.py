"""``objects_only`` scoring of Shapes segmentation: argmax over the classes on object pixels (methods.md Sec. 5)."""

from __future__ import annotations

import numpy as np
import pytest

from clipmech.decomposition import segmentation as ps
from clipmech.decomposition.miou import confusion_matrix, mean_iou


def _logits():
    """One 2 x 3 image, K = 2 classes; logits (class 0, class 1) per pixel."""
    class0 = np.array([[0.9, 0.2, 0.6], [0.1, 0.3, 0.8]])
    class1 = np.array([[0.1, 0.4, 0.5], [0.2, 0.7, 0.05]])
    return np.stack([class0, class1])[None]  # (1, 2, 2, 3)


def test_objects_only_is_the_argmax_over_classes_on_object_pixels_hand_computed():
    logits = _logits()
    gt = np.array([[[1, 1, 0], [2, 2, 1]]])
    pred = ps.predict_with_background(logits, threshold=0.5)
    # min 0.05, max 0.9: normalised best logits 1, 0.41, 0.65, 0.18, 0.76, 0.88 -> two background pixels
    assert pred.tolist() == [[[1, 0, 1], [0, 2, 1]]]
    cms = ps.shapes_confusions(pred, logits, gt)
    # argmax + 1 = [[1, 2, 1], [2, 2, 1]]; object pixels: gt 1 -> 1, 2, 1; gt 2 -> 2, 2
    assert cms["objects_only"].tolist() == [[0, 0, 0], [0, 2, 1], [0, 0, 2]]
    # class 1: I = 2, U = 3 + 2 - 2 = 3; class 2: I = 2, U = 2 + 3 - 2 = 3; background absent (nan, left out)
    assert mean_iou(cms["objects_only"]) == pytest.approx(2 / 3)
    # with_background is the thresholded prediction on all pixels, as before
    np.testing.assert_array_equal(cms["with_background"], confusion_matrix(pred, gt, 3))
    assert cms["with_background"].tolist() == [[0, 1, 0], [1, 2, 0], [1, 0, 1]]


def test_objects_only_ignores_the_background_threshold():
    """The thresholded prediction puts object pixels into background (the old scoring counted them as
    misses); objects_only must score them by their argmax and reach mIoU 1 when every argmax is right."""
    logits = _logits()
    gt = logits.argmax(axis=1) + 1
    pred = ps.predict_with_background(logits, threshold=0.95)
    assert (pred == 0).sum() == 5
    cms = ps.shapes_confusions(pred, logits, gt)
    assert cms["objects_only"][0].sum() == 0 and cms["objects_only"][:, 0].sum() == 0
    assert np.trace(cms["objects_only"]) == gt.size
    assert mean_iou(cms["objects_only"]) == 1.0
    assert mean_iou(cms["with_background"]) < 0.5


def test_objects_only_does_not_depend_on_the_threshold():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 6, 5))
    gt = rng.integers(0, 5, size=(3, 6, 5))
    scores = [
        ps.shapes_confusions(ps.predict_with_background(logits, t), logits, gt)["objects_only"] for t in (0.0, 0.5, 0.9)
    ]
    for cm in scores[1:]:
        np.testing.assert_array_equal(cm, scores[0])
    assert scores[0].sum() == (gt > 0).sum()
