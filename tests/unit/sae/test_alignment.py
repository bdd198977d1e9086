import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import torch
from hand_saes import random_sae
from sklearn.metrics import average_precision_score

from clipmech.analyses import concepts, selectivity
from clipmech.data import shapes
from clipmech.sae import alignment

GRID = (4, 4)
N_PATCHES = GRID[0] * GRID[1]


@pytest.fixture(scope="module")
def scenes():
    """40 Shapes images at 32 px (8 per object count) with their masks and object table."""
    return shapes.synthesize(shapes.ShapesSpec(n_per_count=8, image_size=32, seed=11))


def _planted(scenes, concept, n_noise, rng):
    """Token activations (N x 16 patches, 1 + n_noise): unit 0 is the concept's patch presence, the rest noise."""
    _, masks, objects = scenes
    images = np.arange(masks.shape[0])
    patch_present = concepts.patch_presence(masks, objects, images, GRID)
    present_NF, counts_NF = concepts.presence(objects, images.size, images)
    planted_B = patch_present[:, :, shapes.FEATURES.index(concept)].reshape(-1).astype(np.float32)
    acts_BU = np.concatenate([planted_B[:, None], rng.standard_normal((planted_B.size, n_noise))], axis=1)
    return acts_BU.astype(np.float32), patch_present, present_NF, counts_NF


def _score(acts_BU, patch_present, present_NF, counts_NF, purity_k=8, entropy_k=5):
    return alignment.score_units(
        acts_BU,
        n_images=present_NF.shape[0],
        patch_tokens=np.ones(N_PATCHES, dtype=bool),
        present_NF=present_NF,
        patch_present_NSF=patch_present,
        counts_NF=counts_NF,
        purity_k=purity_k,
        entropy_k=entropy_k,
    )


@pytest.mark.parametrize("concept", ["red", "triangle", "center"])
def test_planted_latent_is_perfectly_aligned(scenes, concept):
    acts_BU, patch_present, present_NF, counts_NF = _planted(scenes, concept, 20, np.random.default_rng(0))
    f = shapes.FEATURES.index(concept)
    assert present_NF[:, f].sum() >= 8  # enough positives for Purity@8 to reach 1
    scores = _score(acts_BU, patch_present, present_NF, counts_NF)
    assert scores.auroc_image_UF[0, f] == 1.0 and scores.auroc_patch_UF[0, f] == 1.0
    assert scores.ap_UF[0, f] == 1.0 and scores.purity_UF[0, f] == 1.0
    metrics, per_concept = alignment.summarise(scores, purity_k=8, coverage_ap=0.3)
    row = per_concept.set_index("concept").loc[concept]
    assert row["best_unit"] == 0 and row["best_ap"] == 1.0 and row["purity"] == 1.0
    assert row["best_auroc_image"] == 1.0 and row["best_auroc_patch"] == 1.0
    assert set(metrics) == {
        "n_units",
        "mean_best_auroc_image",
        "mean_best_auroc_patch",
        "mean_best_ap",
        "purity_at_8",
        "coverage_at_0.3",
        "mean_entropy",
    }
    # The same activations as a sparse matrix score the same.
    sparse = _score(scipy.sparse.csc_matrix(acts_BU), patch_present, present_NF, counts_NF)
    for name in ("auroc_image_UF", "auroc_patch_UF", "ap_UF", "purity_UF", "entropy_U"):
        np.testing.assert_array_equal(getattr(sparse, name), getattr(scores, name))


def test_scores_agree_with_their_definitions(scenes, monkeypatch):
    rng = np.random.default_rng(1)
    acts_BU, patch_present, present_NF, counts_NF = _planted(scenes, "blue", 12, rng)
    acts_BU[:, 5] = 0.0  # a unit that never fires
    monkeypatch.setattr(alignment, "BLOCK_ELEMENTS", 3 * acts_BU.shape[0])  # blocks of 3 units
    scores = _score(acts_BU, patch_present, present_NF, counts_NF, purity_k=8, entropy_k=5)
    image_NU = acts_BU.reshape(40, N_PATCHES, -1).max(axis=1)
    live = np.arange(acts_BU.shape[1]) != 5
    assert scores.dead_U.tolist() == (~live).tolist()
    np.testing.assert_array_equal(scores.auroc_image_UF[live], concepts.auroc(image_NU, present_NF)[live])
    np.testing.assert_array_equal(
        scores.auroc_patch_UF[live], concepts.auroc(acts_BU, patch_present.reshape(-1, 16))[live]
    )
    for name in ("auroc_image_UF", "auroc_patch_UF", "ap_UF", "purity_UF"):
        assert np.isnan(getattr(scores, name)[5]).all(), name  # the dead unit has no scores
    for u in (0, 3, 12):
        for f in (0, 7, 15):
            assert scores.ap_UF[u, f] == pytest.approx(average_precision_score(present_NF[:, f], image_NU[:, u]))
            top = np.argsort(-image_NU[:, u], kind="stable")[:8]
            assert scores.purity_UF[u, f] == present_NF[top, f].mean()
    top5 = np.argsort(-image_NU, axis=0, kind="stable")[:5]
    expected = selectivity.entropy(selectivity.affinity(counts_NF, top5))
    expected[5] = np.nan
    np.testing.assert_array_equal(scores.entropy_U, expected)
    metrics, _ = alignment.summarise(scores, purity_k=8, coverage_ap=0.3)
    assert metrics["mean_entropy"] == pytest.approx(np.nanmean(expected))
    with pytest.raises(ValueError, match="purity_k must lie in 1..40"):
        _score(acts_BU, patch_present, present_NF, counts_NF, purity_k=41)
    with pytest.raises(ValueError, match="expected 40 images x 15 tokens"):
        alignment.score_units(
            acts_BU,
            n_images=40,
            patch_tokens=np.ones(15, dtype=bool),
            present_NF=present_NF,
            patch_present_NSF=patch_present,
            counts_NF=counts_NF,
            purity_k=8,
            entropy_k=5,
        )


@pytest.mark.parametrize("block_units", [2, 1000])
def test_sparse_latents_score_as_their_dense_matrix(scenes, monkeypatch, block_units):
    """An SAE's latents on a class token and 16 patches, with latents that never fire: scored from the sparse
    matrix (no dense copy of its tokens) they give exactly the scores of the dense matrix, in blocks or not."""
    rng = np.random.default_rng(6)
    _, patch_present, present_NF, counts_NF = _planted(scenes, "red", 0, rng)
    sae = random_sae(12, 30, 3, seed=3)
    with torch.no_grad():
        sae.b_enc[[4, 9]] = -100.0  # never fire: dead
    x_BD = rng.standard_normal((40 * (1 + N_PATCHES), 12)).astype(np.float32)
    x_BD.reshape(40, 1 + N_PATCHES, 12)[:, 1:, 0] += 3 * patch_present[:, :, shapes.FEATURES.index("red")]
    sparse = alignment.method_activations("sae", x_BD, sae=sae, batch_size=100)
    tokens = np.concatenate([[False], np.ones(N_PATCHES, dtype=bool)])
    monkeypatch.setattr(alignment, "BLOCK_ELEMENTS", block_units * 40)
    kwargs = dict(n_images=40, patch_tokens=tokens, present_NF=present_NF, patch_present_NSF=patch_present,
                  counts_NF=counts_NF, purity_k=8, entropy_k=5)  # fmt: skip
    from_sparse = alignment.score_units(sparse, **kwargs)
    monkeypatch.setattr(alignment, "BLOCK_ELEMENTS", 1 << 23)
    from_dense = alignment.score_units(sparse.toarray(), **kwargs)
    assert from_sparse.dead_U[[4, 9]].all() and from_sparse.dead_U.sum() < 10
    for name in ("auroc_image_UF", "auroc_patch_UF", "ap_UF", "purity_UF", "entropy_U", "dead_U"):
        np.testing.assert_array_equal(getattr(from_sparse, name), getattr(from_dense, name), err_msg=name)


def test_baselines_run_and_stay_in_range(scenes):
    rng = np.random.default_rng(2)
    _, patch_present, present_NF, counts_NF = _planted(scenes, "red", 0, rng)
    # Tokens with a little structure: a concept direction added on the patches that hold it.
    x_BD = rng.standard_normal((40 * N_PATCHES, 12)).astype(np.float32)
    x_BD[:, 0] += 3 * patch_present[:, :, shapes.FEATURES.index("green")].reshape(-1)
    train_BD = rng.standard_normal((500, 12)).astype(np.float32)
    pca = alignment.fit_pca(train_BD, 48)
    kmeans = alignment.fit_kmeans(train_BD, 10, seed=0)
    sae = random_sae(12, 48, 4, seed=0)
    n_units = {"sae": 48, "neurons": 12, "pca": 24, "kmeans": 10}
    for method in alignment.METHODS:
        acts = alignment.method_activations(method, x_BD, sae=sae, pca=pca, kmeans=kmeans)
        assert acts.shape == (x_BD.shape[0], n_units[method])
        scores = _score(acts, patch_present, present_NF, counts_NF)
        metrics, per_concept = alignment.summarise(scores, purity_k=8, coverage_ap=0.3)
        assert metrics["n_units"] == n_units[method]
        for name in (
            "mean_best_auroc_image",
            "mean_best_auroc_patch",
            "mean_best_ap",
            "purity_at_8",
            "coverage_at_0.3",
        ):
            assert 0.0 <= metrics[name] <= 1.0, (method, name)
        assert 0.0 <= metrics["mean_entropy"] <= np.log(16)
        assert per_concept["best_auroc_image"].between(0.5, 1.0).all()  # the best of many units beats chance
    pcs = alignment.method_activations("pca", x_BD, pca=pca)
    np.testing.assert_array_equal(pcs[:, 12:], -pcs[:, :12])
    assert (alignment.method_activations("kmeans", x_BD, kmeans=kmeans) <= 0).all()
    np.testing.assert_array_equal(alignment.method_activations("neurons", x_BD), x_BD)
    sae_acts = alignment.method_activations("sae", x_BD, sae=sae, batch_size=100)
    assert scipy.sparse.issparse(sae_acts) and (sae_acts.getnnz(axis=1) <= 4).all()
    with pytest.raises(ValueError, match="valid methods are: sae, neurons, pca, kmeans"):
        alignment.method_activations("ica", x_BD)
    with pytest.raises(ValueError, match="needs its fitted model"):
        alignment.method_activations("pca", x_BD)


def test_a_dead_latent_has_no_top_concept_and_is_no_concept_best_unit(scenes):
    acts_BU, patch_present, present_NF, counts_NF = _planted(scenes, "pink", 3, np.random.default_rng(4))
    acts_BU = np.concatenate([np.zeros((acts_BU.shape[0], 1), np.float32), acts_BU], axis=1)  # latent 0 never fires
    scores = _score(acts_BU, patch_present, present_NF, counts_NF)
    table = alignment.latent_table(scores, np.array([0.0, 0.5, 1.0, 1.0, 1.0]))
    assert table["dead"].tolist() == [True, False, False, False, False]
    assert table.loc[0, "top_concept"] == "" and table.loc[0, ["entropy", "auroc_image", "ap"]].isna().all()
    assert table.loc[1, "top_concept"] == "pink"
    assert (alignment.best_units(scores) != 0).all()  # -1 where undefined


def test_latent_table_and_unit_maps(scenes):
    acts_BU, patch_present, present_NF, counts_NF = _planted(scenes, "pink", 3, np.random.default_rng(3))
    scores = _score(acts_BU, patch_present, present_NF, counts_NF)
    table = alignment.latent_table(scores, np.array([0.5, 1.0, 1.0, 1.0]))
    assert tuple(table.columns) == alignment.LATENT_COLUMNS and len(table) == 4
    assert table.loc[0, "top_concept"] == "pink" and table.loc[0, "ap"] == 1.0 and table.loc[0, "purity"] == 1.0
    image_N, maps = alignment.unit_maps(acts_BU, 0, 40, np.ones(N_PATCHES, dtype=bool), GRID)
    np.testing.assert_array_equal(maps, patch_present[:, :, shapes.FEATURES.index("pink")].reshape(40, *GRID))
    np.testing.assert_array_equal(image_N, present_NF[:, shapes.FEATURES.index("pink")])
    # Without patch tokens (class-token SAEs) there are no maps and the patch AUROC is undefined.
    class_only = alignment.score_units(
        acts_BU[::N_PATCHES],
        n_images=40,
        patch_tokens=np.zeros(1, dtype=bool),
        present_NF=present_NF,
        patch_present_NSF=None,
        counts_NF=counts_NF,
        purity_k=8,
        entropy_k=5,
    )
    assert np.isnan(class_only.auroc_patch_UF).all()
    assert alignment.unit_maps(acts_BU[::N_PATCHES], 0, 40, np.zeros(1, dtype=bool), GRID)[1] is None


def test_image_level_scores_leave_the_class_token_out(scenes):
    """An SAE that reads all tokens: a unit firing on the class token of every image is read by its patches."""
    acts_BU, patch_present, present_NF, counts_NF = _planted(scenes, "red", 2, np.random.default_rng(5))
    patches_NTU = acts_BU.reshape(40, N_PATCHES, -1)
    with_class_NTU = np.concatenate([np.full((40, 1, patches_NTU.shape[2]), 100.0, np.float32), patches_NTU], axis=1)
    tokens = np.concatenate([[False], np.ones(N_PATCHES, dtype=bool)])
    scores = alignment.score_units(
        with_class_NTU.reshape(-1, patches_NTU.shape[2]),
        n_images=40,
        patch_tokens=tokens,
        present_NF=present_NF,
        patch_present_NSF=patch_present,
        counts_NF=counts_NF,
        purity_k=8,
        entropy_k=5,
    )
    f = shapes.FEATURES.index("red")
    assert not scores.dead_U.any() and scores.auroc_image_UF[0, f] == 1.0  # not constant at the class token's 100
    image_N, _ = alignment.unit_maps(with_class_NTU.reshape(-1, patches_NTU.shape[2]), 0, 40, tokens, GRID)
    np.testing.assert_array_equal(image_N, present_NF[:, f])


# --- natural-image datasets: image-level concepts, no masks ---------------------------------------------


def _classes(n_images=30, n_classes=3):
    """A folder-classes concept matrix: image i is of class i mod n_classes (labels one-hot)."""
    from clipmech.data.concepts import Concepts

    labels = np.arange(n_images) % n_classes
    present = np.zeros((n_images, n_classes), dtype=bool)
    present[np.arange(n_images), labels] = True
    return Concepts(present, tuple(f"class{c}" for c in range(n_classes)), "folder classes"), labels


def test_natural_truth_is_image_level_only():
    matrix, _ = _classes()
    truth = alignment.natural_truth(matrix)
    assert truth.names == ("class0", "class1", "class2") and truth.types == ("class",) * 3
    assert truth.source == "folder classes" and truth.patch_presence is None
    np.testing.assert_array_equal(truth.counts_NF, matrix.present_NF.astype(np.float64))
    words = alignment.natural_truth(type(matrix)(matrix.present_NF, ("dog", "cat", "red car"), "caption words"))
    assert words.types == ("word",) * 3


def test_shapes_truth_is_the_object_table_and_the_masks(scenes):
    _, masks, objects = scenes
    truth = alignment.shapes_truth(objects, masks, 40)
    images = np.arange(3, 40, 5)
    present_NF, counts_NF = concepts.presence(objects, 40, images)
    assert truth.names == tuple(shapes.FEATURES) and truth.types == tuple(shapes.FEATURE_TYPES)
    np.testing.assert_array_equal(truth.present_NF[images], present_NF)
    np.testing.assert_array_equal(truth.counts_NF[images], counts_NF)
    np.testing.assert_array_equal(
        truth.patch_presence(images, GRID), concepts.patch_presence(masks, objects, images, GRID)
    )


def test_a_class_latent_is_aligned_with_its_class_on_natural_images():
    """A unit that fires on the patches of class-1 images: image AUROC, AP and purity 1 for class1, entropy 0;
    no masks, so the patch AUROC is NaN though the SAE reads patch tokens."""
    matrix, labels = _classes()
    truth = alignment.natural_truth(matrix)
    rng = np.random.default_rng(0)
    n_images = labels.size
    planted_NT = np.where(labels[:, None] == 1, 1.0 + rng.random((n_images, N_PATCHES)), 0.0)
    acts_BU = np.stack([planted_NT.reshape(-1), rng.standard_normal(n_images * N_PATCHES)], axis=1).astype(np.float32)
    scores = alignment.score_units(
        acts_BU,
        n_images=n_images,
        patch_tokens=np.ones(N_PATCHES, dtype=bool),
        present_NF=truth.present_NF,
        patch_present_NSF=None,
        counts_NF=truth.counts_NF,
        purity_k=8,
        entropy_k=5,
    )
    assert scores.auroc_image_UF.shape == (2, 3) and np.isnan(scores.auroc_patch_UF).all()
    assert scores.auroc_image_UF[0, 1] == 1.0 and scores.purity_UF[0, 1] == 1.0
    assert scores.ap_UF[0, 1] == pytest.approx(1.0)
    assert scores.entropy_U[0] == 0.0
    metrics, per_concept = alignment.summarise(
        scores, purity_k=8, coverage_ap=0.3, names=truth.names, types=truth.types
    )
    assert per_concept["concept"].tolist() == list(truth.names) and set(per_concept["concept_type"]) == {"class"}
    assert per_concept.loc[1, "best_unit"] == 0 and per_concept.loc[1, "best_ap"] == pytest.approx(1.0)
    assert np.isnan(metrics["mean_best_auroc_patch"]) and 0 <= metrics["mean_best_ap"] <= 1
    table = alignment.latent_table(scores, np.array([1 / 3, 1.0]), truth.names)
    assert table.loc[0, "top_concept"] == "class1" and np.isnan(table.loc[0, "auroc_patch"])
    assert table.loc[1, "top_concept"] in truth.names
    # A patch presence with no patch tokens to match is refused.
    with pytest.raises(ValueError, match="0 patch tokens per image but patch presence of shape"):
        alignment.score_units(
            acts_BU[::N_PATCHES],
            n_images=n_images,
            patch_tokens=np.zeros(1, dtype=bool),
            present_NF=truth.present_NF,
            patch_present_NSF=np.zeros((n_images, 1, 3), dtype=bool),
            counts_NF=truth.counts_NF,
            purity_k=8,
            entropy_k=5,
        )


def test_align_on_natural_truth_leaves_the_patch_level_out():
    import xarray as xr

    matrix, labels = _classes(n_images=24)
    rng = np.random.default_rng(1)
    values = rng.standard_normal((24, 1 + N_PATCHES, 12)).astype(np.float32)
    values[labels == 2, 1:, 0] += 4.0  # dimension 0 lights up on class-2 patches
    acts = xr.DataArray(values.astype(np.float16), dims=("image", "token", "unit"))
    params = {
        "batch_size": 8,
        "fit_tokens": 200,
        "kmeans_max_clusters": 8,
        "purity_k": 4,
        "entropy_k": 4,
        "coverage_ap": 0.3,
    }
    aligned = alignment.align(
        random_sae(12, 24, 4, seed=0), acts, images=np.arange(12, 24), train=np.arange(12),
        positions=np.arange(1 + N_PATCHES), patch_tokens=np.arange(1 + N_PATCHES) >= 1,
        truth=alignment.natural_truth(matrix), grid=GRID, params=params, seed=0,
    )  # fmt: skip
    table = aligned["table"].set_index("method")
    assert list(table.index) == list(alignment.METHODS) and table["mean_best_auroc_patch"].isna().all()
    assert table.loc["neurons", "mean_best_auroc_image"] > 0.5
    assert aligned["json"]["neurons"]["per_concept"]["concept"] == list(matrix.names)
    assert aligned["json"]["neurons"]["per_concept"]["best_auroc_image"][2] == 1.0


def test_align_with_the_baselines_on_disk_is_align_in_memory(tmp_path):
    import xarray as xr

    matrix, labels = _classes(n_images=24)
    rng = np.random.default_rng(2)
    values = rng.standard_normal((24, 1 + N_PATCHES, 12)).astype(np.float32)
    values[labels == 1, 1:, 3] += 3.0
    acts = xr.DataArray(values.astype(np.float16), dims=("image", "token", "unit"))
    params = {
        "batch_size": 5,
        "fit_tokens": 200,
        "kmeans_max_clusters": 8,
        "purity_k": 4,
        "entropy_k": 4,
        "coverage_ap": 0.3,
    }
    arguments = dict(
        images=np.arange(6, 24), train=np.arange(6), positions=np.arange(1 + N_PATCHES),
        patch_tokens=np.arange(1 + N_PATCHES) >= 1, truth=alignment.natural_truth(matrix), grid=GRID, params=params,
        seed=0,
    )  # fmt: skip
    sae = random_sae(12, 24, 4, seed=0)
    held = alignment.align(sae, acts, **arguments)
    spilled = alignment.align(sae, acts, **arguments, spill=tmp_path)
    pd.testing.assert_frame_equal(spilled["table"], held["table"])
    assert json.dumps(spilled["json"]) == json.dumps(held["json"])
    assert (spilled["sae_acts"] != held["sae_acts"]).nnz == 0
    assert list(tmp_path.iterdir()) == []  # the temporary directory is gone
    # Batch by batch, the methods' activations are those of all tokens at once (up to float rounding).
    x_BD = alignment.stack_tokens(acts, arguments["images"], arguments["positions"], 100)
    fit_BD = x_BD[:100]
    fitted = {"sae": sae, "pca": alignment.fit_pca(fit_BD, 24), "kmeans": alignment.fit_kmeans(fit_BD, 8, 0)}
    batched = alignment.token_activations(
        acts, arguments["images"], arguments["positions"], fitted, batch_size=5, spill=tmp_path / "s"
    )
    for method in alignment.METHODS:
        whole = alignment.method_activations(method, x_BD, **fitted)
        if method == "sae":
            np.testing.assert_allclose(batched[method].toarray(), whole.toarray(), rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_allclose(batched[method][:], whole, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no images"):
        alignment.token_activations(acts, np.arange(0), arguments["positions"], fitted, batch_size=5)
