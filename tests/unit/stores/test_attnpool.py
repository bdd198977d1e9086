"""Attention-pool stores (clipmech.stores.attnpool) and the decomposition of a trained checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toys import die_on_region_write, record_region_writes, relative_error

from clipmech.data import datasets
from clipmech.decomposition import components, pool
from clipmech.hooks.attnpool import capture_attnpool
from clipmech.models import loading, train
from clipmech.models.loading import ModelSpec
from clipmech.stores import attnpool as pool_store
from clipmech.stores import attnpool_extraction, base

RANDOM_RN = ModelSpec("rand-rn", "clipmech-rn-tiny", None)
CODE = "test-code"


@pytest.fixture(scope="module")
def trained_rn(tmp_path_factory):
    """clipmech-rn-tiny trained for 3 steps and saved like the pipeline saves it."""
    model, _, _, losses = train.train(
        "clipmech-rn-tiny", train.TrainConfig(steps=3, batch_size=8, warmup_steps=1, image_size=64, seed=0)
    )
    assert len(losses) == 3
    path = tmp_path_factory.mktemp("rn") / "checkpoint.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return ModelSpec("trained-rn", "clipmech-rn-tiny", str(path))


def test_store_layout_matches_direct_capture_and_reconstructs(tmp_path, tiny_dataset, trained_rn):
    store = attnpool_extraction.extract_attnpool(
        trained_rn, tiny_dataset, tmp_path / "a.zarr", batch_size=4, device="cpu", code=CODE
    )
    ds = pool_store.open_store(store)
    assert ds["x"].shape == (10, 17, 512) and ds["alpha"].shape == (10, 8, 17) and ds["y"].shape == (10, 64)
    assert ds["x"].encoding["chunks"] == (4, 17, 512) and ds["x"].dtype == np.float32
    prov = attnpool_extraction.AttnPoolProvenance.from_attrs(ds.attrs)
    assert prov.weights == "sha256:" + loading.file_sha256(trained_rn.pretrained) and prov.batch_size == 4
    assert (ds.attrs["grid_rows"], ds.attrs["grid_cols"], ds.attrs["n_heads"]) == (4, 4, 8)
    assert not base.partial_path(store).exists() and not base.progress_path(store).exists()

    model, preprocess = loading.load_model(trained_rn)
    pixels = loading.preprocess_images(datasets.load(tiny_dataset).images[:3], preprocess)
    cap = capture_attnpool(model, pixels)
    np.testing.assert_array_equal(ds["x"].values[:3], cap.x_NTC.numpy())
    np.testing.assert_array_equal(ds["alpha"].values[:3], cap.alpha_NHT.numpy())
    with torch.inference_mode():
        np.testing.assert_array_equal(ds["y"].values[:3], model.encode_image(pixels).numpy())

    weights = pool_store.store_weights(ds)
    reference = pool.attnpool_weights(model.visual.attnpool)
    for name in pool_store.WEIGHT_DIMS:
        np.testing.assert_array_equal(getattr(weights, name), getattr(reference, name))
    parts = pool_store.parts(ds)
    s_NHC, y_NE = pool_store.pair_scalars(ds, chunk_size=3)
    # float32 capture, float64 reconstruction
    assert relative_error(pool.reconstruct_output(s_NHC, parts.u_HCE, parts.bias_E), y_NE) < 1e-5
    s_all, _ = pool_store.pair_scalars(ds, chunk_size=100)
    np.testing.assert_allclose(s_NHC, s_all, rtol=1e-12)
    batches = list(pool_store.iter_batches(ds, 4, images=np.array([7, 2, 5])))
    assert [b.images for b in batches] == [slice(0, 3)]
    np.testing.assert_array_equal(batches[0].x_NTC, ds["x"].values[[7, 2, 5]])
    act = pool_store.neuron_activations(batches[0].x_NTC, parts.weights)
    assert act.min() >= 0  # post-ReLU feature map
    chunks = list(pool_store.iter_scalars(ds, 2, images=np.array([7, 2, 5])))
    assert [batch.images for batch, _ in chunks] == [slice(0, 2), slice(2, 3)]
    np.testing.assert_allclose(np.concatenate([s for _, s in chunks]), s_NHC[[7, 2, 5]], rtol=1e-12, atol=1e-12)
    with pytest.raises(FileExistsError):
        attnpool_extraction.extract_attnpool(trained_rn, tiny_dataset, store, batch_size=4, device="cpu", code=CODE)


def test_trained_checkpoint_float64_reconstruction_and_rank_one(tiny_dataset, trained_rn):
    """methods.md Sec. 5 tests on a pipeline-trained checkpoint: reconstruction < 1e-5 in float64 and
    the first PC of a pair's contributions along u_{n,h} (|cos| > 0.999)."""
    model, preprocess = loading.load_model(trained_rn)
    model = model.double()
    pixels = loading.preprocess_images(datasets.load(tiny_dataset).images, preprocess).double()
    cap = capture_attnpool(model, pixels)
    weights = pool.attnpool_weights(model.visual.attnpool)
    u_HCE, bias_E = pool.neuron_head_directions(weights), pool.output_bias(weights)
    s_NHC = pool.pair_scalars(cap.x_NTC.numpy(), cap.alpha_NHT.numpy())
    assert relative_error(pool.reconstruct_output(s_NHC, u_HCE, bias_E), cap.y_NE.numpy()) < 1e-5
    scores = components.component_scores(s_NHC, u_HCE)
    heads, neurons = np.divmod(np.argsort(-scores["pair"].ravel())[:10], u_HCE.shape[1])
    table = components.pair_rank_one(s_NHC, u_HCE, heads, neurons, top_k=50)
    assert (table["cos_pc_u"] > 0.999).all(), table


def test_killed_and_resumed_equals_uninterrupted(tmp_path, tiny_dataset, monkeypatch):
    reference = pool_store.open_store(
        attnpool_extraction.extract_attnpool(
            RANDOM_RN, tiny_dataset, tmp_path / "ref.zarr", batch_size=3, device="cpu", code=CODE
        )
    )
    target = tmp_path / "resumed.zarr"
    die_on_region_write(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        attnpool_extraction.extract_attnpool(RANDOM_RN, tiny_dataset, target, batch_size=3, device="cpu", code=CODE)
    assert not target.exists() and '"images_complete": 6' in base.progress_path(target).read_text()
    with pytest.raises(FileNotFoundError, match="resume"):
        pool_store.open_store(target)
    written = record_region_writes(monkeypatch)
    attnpool_extraction.extract_attnpool(RANDOM_RN, tiny_dataset, target, batch_size=3, device="cpu", code=CODE)
    assert written == [{"image": slice(6, 9)}, {"image": slice(9, 10)}]
    resumed = pool_store.open_store(target)
    for name in ("x", "alpha", "y", "q_weight", "positional_embedding"):
        np.testing.assert_array_equal(resumed[name].values, reference[name].values)


def test_vit_is_rejected(tmp_path, tiny_dataset):
    with pytest.raises(TypeError, match="ModifiedResNet"):
        attnpool_extraction.extract_attnpool(
            ModelSpec("v", "clipmech-vit-tiny", None), tiny_dataset, tmp_path / "v.zarr", device="cpu", code=CODE
        )
    assert not (tmp_path / "v.zarr").exists()
