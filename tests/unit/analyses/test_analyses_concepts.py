"""Unit tests of concept presence (image, caption, patch), AUROC and AP (methods.md Secs. 7, 8)."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from clipmech.analyses import concepts
from clipmech.data import shapes
from clipmech.data.datasets import load
from clipmech.patching.concepts import image_captions


def test_auroc_matches_sklearn_and_mann_whitney_with_ties():
    rng = np.random.default_rng(0)
    acts_NU = rng.integers(0, 4, size=(60, 7)).astype(np.float32)  # four values: many ties
    present_NF = rng.random((60, 5)) < 0.3
    present_NF[:, 3], present_NF[:, 4] = True, False
    auroc_UF = concepts.auroc(acts_NU, present_NF)
    assert auroc_UF.dtype == np.float64 and auroc_UF.shape == (7, 5)
    assert np.isnan(auroc_UF[:, 3:]).all()
    for u in range(7):
        for f in range(3):
            assert auroc_UF[u, f] == pytest.approx(roc_auc_score(present_NF[:, f], acts_NU[:, u]), abs=1e-12)
            pos, neg = acts_NU[present_NF[:, f], u], acts_NU[~present_NF[:, f], u]
            u_stat = stats.mannwhitneyu(pos.astype(np.float64), neg.astype(np.float64)).statistic
            assert auroc_UF[u, f] == pytest.approx(u_stat / (pos.size * neg.size), abs=1e-12)


def test_auroc_by_hand():
    # positives {2, 3} against negatives {1, 2}: 1 + 0.5 + 1 + 1 of 4 pairs
    auroc_UF = concepts.auroc(np.array([[1.0], [2.0], [2.0], [3.0]]), np.array([[0], [1], [0], [1]], dtype=bool))
    assert auroc_UF[0, 0] == 0.875
    flipped = concepts.auroc(-np.array([[1.0], [2.0], [2.0], [3.0]]), np.array([[0], [1], [0], [1]], dtype=bool))
    assert flipped[0, 0] == 0.125


def test_auroc_rejects_bad_input():
    with pytest.raises(ValueError, match="same N"):
        concepts.auroc(np.zeros((4, 2)), np.zeros((3, 1), dtype=bool))
    acts = np.zeros((4, 3))
    acts[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"units \[2\]"):
        concepts.auroc(acts, np.zeros((4, 1), dtype=bool))


@pytest.mark.parametrize("block_values", [1, 50, 10**9])
def test_blocked_auroc_is_the_auroc_exactly(tmp_path, block_values):
    import zarr

    rng = np.random.default_rng(3)
    stored_DU = rng.integers(0, 5, size=(40, 9)).astype(np.float32)  # ties within and across blocks
    stored_DU[:, 2] += rng.normal(size=40).astype(np.float32)
    present_NF = rng.random((40, 4)) < 0.4
    present_NF[:, 3] = False
    on_disk = zarr.create_array(store=str(tmp_path / "acts"), shape=stored_DU.shape, chunks=(16, 4), dtype="float32")
    on_disk[:] = stored_DU
    np.testing.assert_array_equal(
        concepts.blocked_auroc(on_disk, present_NF, block_values=block_values), concepts.auroc(stored_DU, present_NF)
    )
    rows = rng.integers(0, 40, size=70)  # inputs sharing a stored row
    shared_NF = rng.random((70, 4)) < 0.5
    np.testing.assert_array_equal(
        concepts.blocked_auroc(on_disk, shared_NF, rows, block_values=block_values),
        concepts.auroc(stored_DU[rows], shared_NF),
    )


def test_blocked_auroc_names_non_finite_units_by_column():
    acts_NU = np.zeros((6, 5))
    acts_NU[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"units \[3\]"):
        concepts.blocked_auroc(acts_NU, np.eye(6, 2, dtype=bool), block_values=12)
    with pytest.raises(ValueError, match="block_values"):
        concepts.blocked_auroc(acts_NU, np.eye(6, 2, dtype=bool), block_values=0)


def test_sparse_auroc_is_the_dense_auroc_exactly():
    """Stored entries of any sign, ties among them and with the unstored zeros, explicit zeros, empty and
    full columns."""
    rng = np.random.default_rng(3)
    for trial in range(6):
        stored = rng.random((70, 12)) < rng.uniform(0.05, 0.9)
        values = rng.integers(-2, 3, size=(70, 12)).astype(np.float64) if trial % 2 else rng.standard_normal((70, 12))
        acts_NU = np.where(stored, values, 0.0)
        acts_NU[:, 0], acts_NU[:, 1] = 0.0, rng.random(70) + 0.5  # nothing stored; everything stored
        present_NF = rng.random((70, 6)) < np.array([0.05, 0.3, 0.5, 0.8, 0.0, 1.0])
        sparse = scipy.sparse.csc_matrix(acts_NU)
        sparse.data[::7] = 0.0  # explicit zeros count as zeros
        expected = concepts.auroc(sparse.toarray(), present_NF)
        np.testing.assert_array_equal(concepts.sparse_auroc(sparse, present_NF), expected)
        np.testing.assert_array_equal(concepts.sparse_auroc(sparse.tocsr(), present_NF), expected)
    with pytest.raises(ValueError, match="same N"):
        concepts.sparse_auroc(scipy.sparse.csc_matrix((4, 2)), np.zeros((3, 1), dtype=bool))
    bad = scipy.sparse.csc_matrix(np.array([[0.0, 1.0], [0.0, np.nan]]))
    with pytest.raises(ValueError, match=r"units \[1\]"):
        concepts.sparse_auroc(bad, np.zeros((2, 1), dtype=bool))


@pytest.mark.parametrize("values", [4, 0])  # four values (many ties), or continuous
def test_average_precision_matches_sklearn(values):
    rng = np.random.default_rng(values)
    n_inputs, n_units = 80, 30
    if values:
        acts_NU = rng.integers(0, values, size=(n_inputs, n_units)).astype(np.float32)
    else:
        acts_NU = rng.standard_normal((n_inputs, n_units))
    acts_NU[:, 0] = 1.5  # a constant unit: one tie group
    acts_NU[:, 1] = np.where(rng.random(n_inputs) < 0.1, rng.random(n_inputs), 0.0)  # sparse: zeros tied
    present_NF = rng.random((n_inputs, 7)) < np.array([0.02, 0.1, 0.3, 0.5, 0.9, 0.0, 1.0])
    present_NF[0, 0] = True  # a single positive
    ap_UF = concepts.average_precision(acts_NU, present_NF)
    assert ap_UF.dtype == np.float64 and ap_UF.shape == (n_units, 7)
    assert np.isnan(ap_UF[:, 5:]).all()  # no input, or every input, has the concept
    for f in range(5):
        expected = [average_precision_score(present_NF[:, f], acts_NU[:, u]) for u in range(n_units)]
        np.testing.assert_allclose(ap_UF[:, f], expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ap_UF[0, :5], present_NF[:, :5].mean(axis=0), rtol=1e-12)  # a constant unit: the rate


def test_average_precision_by_hand():
    # descending: 3 (pos), then the tie group {2 (pos), 2 (neg)}, then 1 (neg): (1/2) 1 + (1/2) (2/3)
    ap_UF = concepts.average_precision(np.array([[1.0], [2.0], [2.0], [3.0]]), np.array([[0], [1], [0], [1]], bool))
    assert ap_UF[0, 0] == pytest.approx(5 / 6, abs=1e-15)
    assert concepts.average_precision(np.zeros((3, 0)), np.array([[0], [1], [0]], bool)).shape == (0, 1)
    with pytest.raises(ValueError, match="same N"):
        concepts.average_precision(np.zeros((4, 2)), np.zeros((3, 1), dtype=bool))
    acts = np.zeros((4, 3))
    acts[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"units \[1\]"):
        concepts.average_precision(acts, np.zeros((4, 1), dtype=bool))


def test_captions_name_the_image_concepts(tiny_dataset):
    data = load(tiny_dataset)
    captions = image_captions(data.objects, data.n_images)
    first = data.objects[data.objects["image_id"] == 0].sort_values("object_id").to_dict("records")
    assert captions[0] == shapes.caption(first)
    np.testing.assert_array_equal(
        concepts.caption_presence(captions), concepts.image_presence(data.objects, data.n_images)
    )
    present = concepts.caption_presence(["a red square at the top left and a blue circle in the center"])[0]
    assert [f for f, p in zip(shapes.FEATURES, present) if p] == [
        "circle",
        "square",
        "red",
        "blue",
        "top-left",
        "center",
    ]


def _object(image_id, object_id, shape, colour, position):
    return {"image_id": image_id, "object_id": object_id, "shape": shape, "colour": colour, "position": position}


def test_patch_presence_by_hand():
    masks = np.zeros((2, 4, 4), dtype=np.uint8)
    masks[0, :2, :2] = 1  # image 0: object 1 fills the top-left patch of a 2 x 2 grid
    masks[0, 3, 3] = 2  # object 2 covers one pixel of the bottom-right patch
    masks[1, 1:3, 1:3] = 1  # image 1: one object touching all four patches
    objects = pd.DataFrame(
        [
            _object(0, 1, "circle", "red", "top-left"),
            _object(0, 2, "square", "blue", "bottom-right"),
            _object(1, 1, "circle", "blue", "center"),
        ]
    )
    present = concepts.patch_presence(masks, objects, np.array([0, 1]), (2, 2))
    f = {name: i for i, name in enumerate(shapes.FEATURES)}
    assert present.shape == (2, 4, 16)
    np.testing.assert_array_equal(present[0, :, f["circle"]], [True, False, False, False])
    np.testing.assert_array_equal(present[0, :, f["blue"]], [False, False, False, True])
    np.testing.assert_array_equal(present[1, :, f["blue"]], [True, True, True, True])
    assert present[0].sum() == 6 and present[1].sum() == 12  # 3 concepts on each covered patch
    np.testing.assert_array_equal(concepts.patch_bounds(10, 3), [0, 3, 6])
    with pytest.raises(ValueError, match="finer"):
        concepts.patch_presence(masks, objects, np.array([0]), (5, 5))
