"""MiCLIP's baselines (clipmech.miclip.baselines) against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from clipmech.data.shapes import FEATURES
from clipmech.miclip import baselines
from clipmech.stores.base import spill_array


def _netdissect_in_memory(maps_NUhw: np.ndarray, concept_NRRF: np.ndarray, *, quantile: float, chunk: int = 8):
    """The oracle: Network Dissection as it was computed before it streamed over the images, every image's
    upsampled maps of ``chunk`` units and every image's concept masks (as float32 (N R^2, F)) held at once,
    the threshold ``torch.kthvalue`` over all of a unit's values."""
    resolution, n_features = concept_NRRF.shape[1], concept_NRRF.shape[3]
    labels_PF = torch.as_tensor(concept_NRRF.reshape(-1, n_features), dtype=torch.float32)
    label_area_F = labels_PF.sum(dim=0).double()
    n_pixels = labels_PF.shape[0]
    rank = n_pixels - max(1, int(np.ceil(quantile * n_pixels)))
    iou_UF = np.zeros((maps_NUhw.shape[1], n_features))
    for first in range(0, maps_NUhw.shape[1], chunk):
        maps = torch.as_tensor(np.asarray(maps_NUhw[:, first : first + chunk], dtype=np.float32))
        up_NBRR = F.interpolate(maps, size=(resolution, resolution), mode="bilinear", align_corners=False)
        values_BP = up_NBRR.permute(1, 0, 2, 3).reshape(maps.shape[1], -1)
        if rank >= 1:
            threshold_B = values_BP.kthvalue(rank, dim=1).values
        else:
            threshold_B = torch.full((values_BP.shape[0],), -torch.inf)
        on_BP = (values_BP > threshold_B[:, None]).float()
        intersection_BF = (on_BP @ labels_PF).double()
        union_BF = on_BP.sum(dim=1, keepdim=True).double() + label_area_F[None, :] - intersection_BF
        iou_UF[first : first + chunk] = torch.where(union_BF > 0, intersection_BF / union_BF, 0.0).numpy()
    return iou_UF


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
    assert concept[0, ..., FEATURES.index("red")].sum() == 6
    assert concept[0, ..., FEATURES.index("circle")].sum() == 4 and concept[0, ..., FEATURES.index("blue")].sum() == 0


def test_act_values_and_ground_truth():
    acts = np.array([[1.0, 0.0], [3.0, 1.0], [5.0, 1.0]])
    present = np.array([[True, False], [True, True], [False, True]])
    np.testing.assert_allclose(baselines.act_values(acts, present), [[2.0, 4.0], [0.5, 1.0]])
    counts = present.astype(float)
    assert baselines.ground_truth(np.c_[acts[:, :1], np.zeros(3)], counts, 1).tolist() == [1, -1]


def _chunks(values_BP: np.ndarray, cuts):
    """The columns of ``values_BP`` cut at ``cuts``, as float32 tensors, anew at every call."""
    edges = [0, *cuts, values_BP.shape[1]]
    return lambda: (torch.as_tensor(values_BP[:, a:b]) for a, b in zip(edges[:-1], edges[1:]))


@pytest.mark.parametrize(("n_bins", "cap"), [(2048, 1 << 20), (2, 1), (3, 4), (16, 50)])
def test_the_streamed_kth_value_is_np_partitions(n_bins, cap):
    """Rows with heavy ties (ReLU'd: half zeros; a few repeated values), all-equal values, and a wide
    dynamic range (subnormals to 1e30), cut into uneven chunks; small caps force histograms within bins."""
    rng = np.random.default_rng(0)
    n = 300
    rows = [
        np.maximum(rng.standard_normal(n), 0.0),
        rng.integers(0, 4, n).astype(np.float64),
        np.full(n, 2.5),
        np.concatenate([rng.standard_normal(n - 4) * 1e-40, [1e30, -1e30, 0.0, 1e-45]]),
        np.where(rng.random(n) < 0.9, 1.0, rng.standard_normal(n)),
    ]
    values_BP = np.stack(rows).astype(np.float32)
    chunks = _chunks(values_BP, [1, 17, 18, 200])
    for rank in (1, 2, 150, 271, 299, 300):
        expected = np.partition(values_BP, rank - 1, axis=1)[:, rank - 1]
        got = baselines.kth_smallest(chunks, rank, n_bins=n_bins, cap=cap)
        assert got.dtype == torch.float32
        np.testing.assert_array_equal(got.numpy(), expected)


def test_the_streamed_kth_value_refuses_a_rank_out_of_range():
    chunks = _chunks(np.zeros((2, 5), dtype=np.float32), [2])
    for rank in (0, 6):
        with pytest.raises(ValueError, match="rank"):
            baselines.kth_smallest(chunks, rank)
    with pytest.raises(ValueError, match="no value"):
        baselines.kth_smallest(lambda: iter(()), 1)
    with pytest.raises(ValueError, match="n_bins"):
        baselines.kth_smallest(chunks, 1, n_bins=1)


def _random_concepts(rng, n, resolution):
    return rng.random((n, resolution, resolution, 5)) < 0.3


@pytest.mark.parametrize("image_chunk", [1, 3, 7])
@pytest.mark.parametrize("unit_chunk", [1, 8])
@pytest.mark.parametrize("quantile", [0.05, 0.3, 0.9999])
def test_streamed_netdissect_equals_the_in_memory_computation(image_chunk, unit_chunk, quantile):
    """ReLU'd maps (mostly zeros: the threshold of quantile 0.3 falls in the zeros for most units, 0.05 above
    them, 0.9999 leaves rank < 1, every pixel on), a unit of one constant, a dead unit: the IoU equals
    the in-memory one exactly, whatever the chunks, also with a cap that forces histograms within bins."""
    rng = np.random.default_rng(1)
    maps = np.maximum(rng.standard_normal((7, 10, 3, 3)) - 0.5, 0.0).astype(np.float32)
    maps[:, 3] = 0.7
    maps[:, 4] = 0.0
    concepts = _random_concepts(rng, 7, 6)
    expected = _netdissect_in_memory(maps, concepts, quantile=quantile)
    for n_bins, cap in ((2048, 1 << 20), (4, 3)):
        got = baselines.netdissect_iou(
            maps, concepts, quantile=quantile, unit_chunk=unit_chunk, image_chunk=image_chunk, n_bins=n_bins, cap=cap
        )
        np.testing.assert_array_equal(got, expected)


def test_concept_masks_are_read_a_chunk_of_images_at_a_time():
    """:class:`clipmech.miclip.baselines.ConceptMasks` of any image range equals those rows of
    :func:`clipmech.miclip.baselines.concept_masks` of every image (objects given out of image order), and
    Network Dissection reading it equals the in-memory computation on the whole array."""
    rng = np.random.default_rng(2)
    n, size = 6, 8
    masks = np.zeros((n, size, size), dtype=np.int64)
    rows = []
    for image in range(n):
        for object_id in range(1, 1 + rng.integers(0, 3)):
            top, left = rng.integers(0, size - 3, 2)
            masks[image, top : top + 3, left : left + 3] = object_id
            rows.append(
                {
                    "image_id": image,
                    "object_id": object_id,
                    "shape": rng.choice(FEATURES[:4]),
                    "colour": rng.choice(FEATURES[4:8]),
                    "position": rng.choice(FEATURES[8:]),
                }
            )
    objects = pd.DataFrame(rows).sample(frac=1.0, random_state=0)
    whole = baselines.concept_masks(masks, objects, 5)
    lazy = baselines.ConceptMasks(masks, objects, 5)
    assert lazy.shape == whole.shape
    for first, stop in ((0, 6), (0, 1), (2, 5), (5, 9), (4, 4)):
        np.testing.assert_array_equal(lazy[first:stop], whole[first:stop])
    with pytest.raises(TypeError, match="first:stop"):
        lazy[0]
    maps = np.maximum(rng.standard_normal((n, 4, 2, 2)), 0.0).astype(np.float32)
    np.testing.assert_array_equal(
        baselines.netdissect_iou(maps, lazy, quantile=0.1, image_chunk=4),
        _netdissect_in_memory(maps, whole, quantile=0.1),
    )


def test_held_out_rows_read_the_chosen_images_a_chunk_at_a_time():
    from clipmech.miclip.evaluation import HeldoutRows

    array = np.arange(10 * 2 * 3).reshape(10, 2, 3)
    images = np.array([7, 2, 5, 9])
    rows = HeldoutRows(array, images)
    assert rows.shape == (4, 2, 3)
    for first, stop in ((0, 4), (1, 3), (3, 9), (2, 2)):
        np.testing.assert_array_equal(rows[first:stop], array[images][first:stop])
    with pytest.raises(TypeError, match="first:stop"):
        rows[0]


def test_the_baselines_read_a_block_of_units_at_a_time_as_if_whole(tmp_path):
    """Act-Values, soft-WPMI and the ground truth are per unit: over a float32 array spilled to disk read in
    blocks of 3 of 8 units they equal those of the whole float64 array in memory: exactly, but soft-WPMI to
    float64 rounding (torch sums a block's K terms in an order that may depend on the block's width)."""
    rng = np.random.default_rng(2)
    acts = rng.random((40, 8)).astype(np.float32)
    acts[:, 5] = 0.5  # dead
    spilled = spill_array(tmp_path / "acts", (16, 8), 3)
    spilled.append(acts, axis=0)
    whole = acts.astype(np.float64)
    present = rng.random((40, 4)) < 0.4
    sim = rng.standard_normal((40, 6))
    np.testing.assert_array_equal(
        baselines.act_values(spilled, present, unit_chunk=3), baselines.act_values(whole, present, unit_chunk=8)
    )
    np.testing.assert_allclose(
        baselines.soft_wpmi(spilled, sim, top_k=7, a=10.0, lam=1.0, unit_chunk=3),
        baselines.soft_wpmi(whole, sim, top_k=7, a=10.0, lam=1.0, unit_chunk=8),
        rtol=1e-12,
    )
    truth = baselines.ground_truth(spilled, present.astype(float), 5, unit_chunk=3)
    np.testing.assert_array_equal(truth, baselines.ground_truth(whole, present.astype(float), 5, unit_chunk=8))
    assert truth[5] == -1 and (truth[np.arange(8) != 5] >= 0).all()
