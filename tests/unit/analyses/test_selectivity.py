import numpy as np
import pytest
import scipy.stats
import xarray as xr

from clipmech.analyses import selectivity


def test_entropy_matches_scipy_on_hand_built_affinities():
    a = np.array([[1.0] + [0.0] * 15, [1 / 16] * 16, [0.5, 0.25, 0.25] + [0.0] * 13])
    expected = [0.0, np.log(16), scipy.stats.entropy([0.5, 0.25, 0.25])]
    np.testing.assert_allclose(selectivity.entropy(a), expected)
    np.testing.assert_allclose(selectivity.entropy(a), scipy.stats.entropy(a, axis=1))


def test_affinity_is_mean_count_normalised():
    counts = np.zeros((4, 16))
    counts[0, 0] = 2  # two circles
    counts[1, 0] = 1
    counts[1, 5] = 1  # a circle and something red
    counts[2, 15] = 1
    index = np.array([[0], [1]])  # one unit, top-2 = images 0 and 1
    a = selectivity.affinity(counts, index)
    expected = np.zeros(16)
    expected[0], expected[5] = 1.5 / 2.0, 0.5 / 2.0
    np.testing.assert_allclose(a[0], expected)


@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_streaming_topk_equals_in_memory_argsort(chunk):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5, size=(50, 2, 6)).astype(np.float32)  # many ties
    acts = xr.DataArray(values, dims=("image", "layer", "neuron")).chunk({"image": chunk})
    top_values, top_index = selectivity.streaming_topk(acts, k=10)
    flat = values.reshape(50, 12)
    order = np.argsort(-flat, axis=0, kind="stable")[:10]
    np.testing.assert_array_equal(top_index, order)
    np.testing.assert_array_equal(top_values, np.take_along_axis(flat, order, axis=0))


def test_topk_rejects_k_larger_than_images():
    acts = xr.DataArray(np.zeros((3, 2)), dims=("image", "neuron"))
    with pytest.raises(ValueError, match="k <= number of images"):
        selectivity.streaming_topk(acts, k=4)


def test_null_percentile_is_one_sided():
    null = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(selectivity.null_percentile(np.array([0.5, 2.0, 5.0]), null), [0.0, 0.5, 1.0])


def test_selective_unit_ranks_first_and_beats_null():
    rng = np.random.default_rng(1)
    n = 200
    counts = (rng.random((n, 16)) < 0.15).astype(float)
    acts = rng.normal(size=(n, 1, 3)).astype(np.float32)
    acts[:, 0, 1] = counts[:, 7] * 5 + rng.normal(size=n) * 0.1  # fires on feature 7 only
    store = xr.Dataset({"mean": (("image", "layer", "neuron"), acts)}, coords={"layer": [4], "neuron": [0, 1, 2]})
    units, topk, null = selectivity.run(store, counts, "mean", k=20, n_null=500, seed=0)
    assert (units.iloc[0]["layer"], units.iloc[0]["neuron"]) == (4, 1)
    assert units.iloc[0]["top1"] == selectivity.FEATURES[7]
    assert units.iloc[0]["p_null"] < 0.01 < units.iloc[1:]["p_null"].min()
    assert len(topk) == 3 * 20 and len(null) == 500
    assert list(units["entropy"]) == sorted(units["entropy"])


def test_run_names_missing_reduction():
    store = xr.Dataset({"max": (("image", "layer", "neuron"), np.zeros((5, 1, 2)))})
    with pytest.raises(KeyError, match="it holds: max"):
        selectivity.run(store, np.zeros((5, 16)), "mean", k=2, n_null=100, seed=0)


def test_a_datasets_own_concepts_and_a_unit_whose_top_images_hold_none():
    """Algorithm 1 over a natural dataset's concept matrix (0/1 per image, methods.md Secs. 1.1 and 2)."""
    names = ("dog", "cat", "red car")
    present = np.zeros((12, 3))
    present[:4, 0] = present[4:8, 1] = 1  # images 8-11 hold no concept
    acts = np.zeros((12, 1, 2), dtype=np.float32)
    acts[:4, 0, 0] = 5.0  # unit 0 fires on the dogs
    acts[8:, 0, 1] = 5.0  # unit 1 on the images without a concept
    store = xr.Dataset({"mean": (("image", "layer", "neuron"), acts)}, coords={"layer": [0], "neuron": [0, 1]})
    units, _, null = selectivity.run(store, present, "mean", k=4, n_null=50, seed=0, names=names)
    assert [c for c in units.columns if c.startswith(("a_", "top"))] == [
        "top1",
        "top2",
        "top3",
        *[f"a_{n}" for n in names],
    ]
    first, last = units.iloc[0], units.iloc[1]
    assert (first["neuron"], first["top1"], first["entropy"], first["a_dog"]) == (0, "dog", 0.0, 1.0)
    assert last["neuron"] == 1 and np.isnan(last["entropy"]) and np.isnan(last["p_null"]) and np.isnan(last["a_dog"])
    assert np.isnan(selectivity.entropy(np.array([[np.nan, 0.5, 0.5]])))[0]
    assert len(null) == 50
