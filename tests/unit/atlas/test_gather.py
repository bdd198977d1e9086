"""The atlas's per-unit computations on tiny arrays: hand-computed cases and agreement with the analyses."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from clipmech.analyses import dead, selectivity
from clipmech.atlas import gather
from clipmech.decomposition import pool


def test_top_images_descend_and_break_ties_to_the_lower_image():
    acts_NU = np.array([[1.0, 0.0], [3.0, 2.0], [3.0, 2.0], [0.5, 5.0]])
    index_KU, values_KU = gather.top_images(acts_NU, 3)
    assert index_KU[:, 0].tolist() == [1, 2, 0] and values_KU[:, 0].tolist() == [3.0, 3.0, 1.0]
    assert index_KU[:, 1].tolist() == [3, 1, 2]
    assert gather.top_images(acts_NU, 10)[0].shape == (4, 2)  # capped at N
    with pytest.raises(ValueError, match="n_top"):
        gather.top_images(acts_NU, 0)


def test_unit_selectivity_is_algorithm_1_of_the_analysis():
    rng = np.random.default_rng(0)
    acts_NU = rng.standard_normal((30, 7))
    counts_NF = rng.integers(0, 3, size=(30, 16)).astype(float)
    counts_NF[:, 0] += 1  # every image has an object
    affinity_UF, entropy_U = gather.unit_selectivity(acts_NU, counts_NF, 5)
    values, index = selectivity.streaming_topk(xr.DataArray(acts_NU, dims=("image", "unit")), 5)
    np.testing.assert_allclose(affinity_UF, selectivity.affinity(counts_NF, index))
    np.testing.assert_allclose(entropy_U, selectivity.entropy(affinity_UF))
    np.testing.assert_allclose(affinity_UF.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="k must be in 1..30"):
        gather.unit_selectivity(acts_NU, counts_NF, 31)
    with pytest.raises(ValueError, match="feature counts"):
        gather.unit_selectivity(acts_NU, counts_NF[:3], 2)


def test_histograms_count_every_image_once():
    acts_NU = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    counts_UB, edges_UB = gather.histograms(acts_NU, 4)
    assert counts_UB[0].tolist() == [1, 1, 1, 1]  # the maximum falls in the last, closed bin
    np.testing.assert_allclose(edges_UB[0], [0, 1, 2, 3, 4])
    assert counts_UB[1].sum() == 4 and edges_UB[1, 0] == 0.5 and edges_UB[1, -1] == 1.5  # constant unit
    with pytest.raises(ValueError, match="bins"):
        gather.histograms(acts_NU, 0)


@pytest.mark.parametrize("chunk", [1, 3, 7, 40])
def test_a_streamed_summary_equals_the_whole_array_computations(chunk):
    """Top images, dead units, histograms and Algorithm 1 streamed over image chunks, as from all images at once."""
    rng = np.random.default_rng(2)
    acts_NU = rng.standard_normal((40, 9)).astype(np.float32)
    acts_NU[:, 1] = 0.25  # dead
    acts_NU[::5, 2] = acts_NU[0, 2]  # ties across chunks: to the lower image
    acts_NU[:, 3] = np.round(acts_NU[:, 3])  # many ties
    acts_NU[:, 4] = 0.25
    acts_NU[7, 4] = np.nextafter(np.float32(0.25), np.float32(1))  # one ulp from dead: alive
    counts_NF = rng.integers(0, 3, size=(40, 16)).astype(float)
    counts_NF[:, 0] += 1
    reads = []

    def read(start, stop):
        reads.append((start, stop))
        return acts_NU[start:stop]

    chunks = gather.image_chunks(40, 9, chunk * 9)
    summary = gather.summarise(read, 40, 6, 5, chunks)
    assert all(stop - start <= chunk for start, stop in reads) and len(reads) == 2 * len(chunks)
    index_KU, values_KU = gather.top_images(acts_NU, 6)
    np.testing.assert_array_equal(summary.index_KU, index_KU)
    np.testing.assert_array_equal(summary.values_KU, values_KU)
    np.testing.assert_array_equal(summary.dead_U, dead.dead_units(acts_NU))
    assert summary.dead_U.tolist() == [False, True] + [False] * 7
    counts_UB, edges_UB = gather.histograms(acts_NU, 5)
    np.testing.assert_array_equal(summary.counts_UB, counts_UB)
    np.testing.assert_array_equal(summary.edges_UB, edges_UB)
    for got, expected in zip(
        gather.summary_selectivity(summary, counts_NF, 4), gather.unit_selectivity(acts_NU, counts_NF, 4)
    ):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="images kept"):
        gather.summary_selectivity(summary, counts_NF, 7)


def test_summarise_refuses_chunks_that_miss_images():
    acts_NU = np.zeros((6, 2))
    with pytest.raises(ValueError, match="cover images 0..5"):
        gather.summarise(lambda a, b: acts_NU[a:b], 6, 2, 3, [(0, 2), (3, 6)])
    with pytest.raises(ValueError, match="cover images 0..5"):
        gather.summarise(lambda a, b: acts_NU[a:b], 6, 2, 3, [(0, 2), (2, 4)])
    with pytest.raises(ValueError, match="n_top"):
        gather.summarise(lambda a, b: acts_NU[a:b], 6, 0, 3, [(0, 6)])


def test_image_chunks_bound_the_activations_held():
    assert gather.image_chunks(10, 3, 9) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert gather.image_chunks(2, 100, 9) == [(0, 1), (1, 2)]  # at least one image


def test_quantise_maps_share_one_scale_per_unit():
    maps = np.array([[0.5, 1.0], [2.0, -1.0]])
    assert gather.quantise_maps(maps).tolist() == [[128, 170], [255, 0]]
    assert gather.quantise_maps(maps + 7.0).tolist() == [[128, 170], [255, 0]]  # an offset changes nothing
    assert gather.quantise_maps(-np.ones((2, 3))).tolist() == [[0] * 3] * 2


def test_pair_token_maps_sum_to_the_pair_scalar_with_the_mean_token():
    rng = np.random.default_rng(1)
    x_KTC, alpha_KHT = rng.standard_normal((3, 5, 4)), rng.dirichlet(np.ones(5), size=(3, 2))
    s_KHC = pool.pair_scalars(x_KTC, alpha_KHT)
    maps = gather.pair_token_maps(x_KTC, alpha_KHT, head=1, neuron=2)
    assert maps.shape == (3, 4)
    np.testing.assert_allclose(maps.sum(axis=1) + alpha_KHT[:, 1, 0] * x_KTC[:, 0, 2], s_KHC[:, 1, 2])


@pytest.mark.parametrize(
    ("site", "writers"),
    [
        ("visual.blocks.2.hook_resid_pre", [0, 1]),
        ("visual.blocks.2.hook_resid_mid", [0, 1]),
        ("visual.blocks.2.hook_resid_post", [0, 1, 2]),
        ("visual.blocks.0.hook_resid_pre", []),
        ("visual.blocks.9.hook_resid_post", [0, 1, 2, 3]),  # capped to the 4 blocks
        ("visual.blocks.2.hook_mlp_out", []),
    ],
)
def test_residual_writers(site, writers):
    assert gather.residual_writers(site, 4) == writers


def test_strongest_inputs_by_absolute_weight():
    w = np.array([[0.1, -0.9, 0.5], [0.2, 0.2, -0.1]])
    dims, weights = gather.strongest_inputs(w, 2)
    assert dims.tolist() == [[1, 2], [0, 1]] and weights.tolist() == [[-0.9, 0.5], [0.2, 0.2]]
    assert gather.strongest_inputs(w, 9)[0].shape == (2, 3)


def test_page_mask_takes_the_lowest_entropies_and_nan_last():
    entropy, alive = np.array([2.0, np.nan, 1.0, 1.0, 0.5]), np.zeros(5, dtype=bool)
    assert gather.page_mask(entropy, alive, 2).tolist() == [False, False, True, False, True]
    assert gather.page_mask(entropy, alive, 4).tolist() == [True, False, True, True, True]
    assert gather.page_mask(entropy, alive, None).all() and not gather.page_mask(entropy, alive, 0).any()


def test_page_mask_gives_a_dead_unit_no_page():
    entropy, dead = np.array([2.0, 0.1, 1.0, 1.0, 0.5]), np.array([False, True, False, False, False])
    assert gather.page_mask(entropy, dead, 2).tolist() == [False, False, True, False, True]
    assert gather.page_mask(entropy, dead, 4).tolist() == [True, False, True, True, True]
    assert gather.page_mask(entropy, dead, None).tolist() == [True, False, True, True, True]
