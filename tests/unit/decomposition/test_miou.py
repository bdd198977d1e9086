"""Tests of the mmseg-style mIoU (methods.md Sec. 5, Segmentation)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import jaccard_score

from clipmech.decomposition.miou import confusion_matrix, iou_from_confusion, mean_iou, reduce_zero_label


def test_hand_computed_confusion_and_iou():
    gt = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    cm = confusion_matrix(pred, gt, n_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # class 0: I=1, U=2+2-1=3; class 1: I=2, U=2+3-2=3; class 2: I=1, U=2+1-1=2
    np.testing.assert_allclose(iou_from_confusion(cm), [1 / 3, 2 / 3, 1 / 2])
    assert mean_iou(cm) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_ignore_index_pixels_are_not_scored_whatever_is_predicted():
    gt = np.array([0, 1, 255, 255])
    pred = np.array([0, 1, 1, 7])  # 7 is out of range but sits on an ignored pixel
    cm = confusion_matrix(pred, gt, n_classes=2)
    assert cm.tolist() == [[1, 0], [0, 1]]
    assert mean_iou(cm) == 1.0
    cm_other = confusion_matrix(np.array([0, 1, 0]), np.array([0, 1, 9]), n_classes=2, ignore_index=9)
    assert cm_other.tolist() == [[1, 0], [0, 1]]


def test_accumulation_over_images_is_the_sum():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 4, size=(5, 7)) for _ in range(3)]
    gts = [rng.integers(0, 4, size=(5, 7)) for _ in range(3)]
    total = sum(confusion_matrix(p, g, 4) for p, g in zip(preds, gts))
    joint = confusion_matrix(np.concatenate(preds), np.concatenate(gts), 4)
    np.testing.assert_array_equal(total, joint)
    assert total.sum() == 3 * 35


def test_absent_classes_are_nan_and_left_out_of_the_mean_but_false_positives_count():
    gt = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 3])  # class 2 absent everywhere; class 3 predicted, never true
    cm = confusion_matrix(pred, gt, n_classes=4)
    iou = iou_from_confusion(cm)
    assert iou[0] == 1.0 and iou[1] == 0.5 and np.isnan(iou[2]) and iou[3] == 0.0
    assert mean_iou(cm) == pytest.approx((1.0 + 0.5 + 0.0) / 3)


def test_empty_confusion_matrix_and_bad_inputs_raise():
    with pytest.raises(ValueError, match="no pixels"):
        mean_iou(np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), n_classes=3)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 1]), np.array([0, 5]), n_classes=3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros(3, int), np.zeros(4, int), n_classes=3)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(np.zeros(3), np.zeros(3, int), n_classes=3)
    with pytest.raises(ValueError, match="square"):
        iou_from_confusion(np.zeros((2, 3)))


def test_reduce_zero_label_matches_mmseg():
    gt = np.array([0, 1, 2, 59, 255], dtype=np.uint8)
    np.testing.assert_array_equal(reduce_zero_label(gt), [255, 0, 1, 58, 255])
    # mmseg's uint8 arithmetic: 0 -> 255, minus 1, 254 -> 255
    ref = gt.copy()
    ref[ref == 0] = 255
    ref = ref - 1
    ref[ref == 254] = 255
    np.testing.assert_array_equal(reduce_zero_label(gt), ref)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn_jaccard(seed):
    rng = np.random.default_rng(seed)
    n_classes = 6
    gt = rng.integers(0, n_classes, size=(3, 17, 19))
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, n_classes, size=gt.shape))
    gt[rng.random(gt.shape) < 0.1] = 255
    cm = confusion_matrix(pred, gt, n_classes)
    scored = gt != 255
    expected = jaccard_score(gt[scored], pred[scored], labels=np.arange(n_classes), average=None)
    np.testing.assert_allclose(iou_from_confusion(cm), expected, rtol=1e-12)
    assert mean_iou(cm) == pytest.approx(expected.mean(), rel=1e-12)
