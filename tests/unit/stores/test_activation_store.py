import numpy as np
import pytest
from toys import die_on_region_write, record_region_writes

from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.stores import activations

RANDOM = ModelSpec("rand", "clipmech-vit-tiny", None)


def _checkpoint(tmp_path, tiny_vit):
    import torch

    model, _ = tiny_vit
    path = tmp_path / "ck.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return ModelSpec("tiny", "clipmech-vit-tiny", str(path))


def test_store_layout_and_provenance(tmp_path, tiny_dataset, tiny_vit):
    spec = _checkpoint(tmp_path, tiny_vit)
    store = activations.extract(spec, tiny_dataset, tmp_path / "a.zarr", batch_size=4, device="cpu")
    ds = activations.open_store(store)
    assert ds["mean"].dims == ("image", "layer", "neuron") and ds["mean"].shape == (10, 2, 64)
    assert ds["tokens"].shape == (10, 2, 65, 64) and ds["tokens"].dtype == np.float16
    assert ds["mean"].dtype == np.float32
    assert ds["tokens"].encoding["chunks"] == (4, 1, 65, 64)
    np.testing.assert_allclose(np.linalg.norm(ds["embedding"].values, axis=1), 1.0, rtol=1e-5)
    prov = activations.StoreProvenance.from_attrs(ds.attrs)
    assert prov.weights == "sha256:" + loading.file_sha256(spec.pretrained)
    assert prov.dataset_sha256 and prov.layers == (0, 1)
    # Reductions agree with the stored tokens (to float16 precision).
    tokens = ds["tokens"].values.astype(np.float32)
    np.testing.assert_allclose(ds["cls"].values, tokens[:, :, 0], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(ds["mean"].values, tokens[:, :, 1:].mean(2), rtol=2e-3, atol=2e-3)
    assert not activations.partial_path(store).exists() and not activations.progress_path(store).exists()
    with pytest.raises(FileExistsError):
        activations.extract(spec, tiny_dataset, store, batch_size=4, device="cpu")


def test_killed_and_resumed_equals_uninterrupted(tmp_path, tiny_dataset, monkeypatch):
    reference = activations.open_store(activations.extract(RANDOM, tiny_dataset, tmp_path / "ref.zarr", batch_size=3, device="cpu"))
    target = tmp_path / "resumed.zarr"
    die_on_region_write(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        activations.extract(RANDOM, tiny_dataset, target, batch_size=3, device="cpu")
    assert not target.exists() and activations.partial_path(target).exists()
    with pytest.raises(FileNotFoundError, match="partial store exists"):
        activations.open_store(target)
    assert '"images_complete": 6' in activations.progress_path(target).read_text()

    written = record_region_writes(monkeypatch)
    activations.extract(RANDOM, tiny_dataset, target, batch_size=3, device="cpu")
    assert written == [{"image": slice(6, 9)}, {"image": slice(9, 10)}]  # resumed after the last complete batch
    resumed = activations.open_store(target)
    for name in ("mean", "max", "cls", "tokens", "embedding"):
        np.testing.assert_array_equal(resumed[name].values, reference[name].values)


def test_changed_provenance_restarts(tmp_path, tiny_dataset, monkeypatch, caplog):
    target = tmp_path / "s.zarr"
    die_on_region_write(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        activations.extract(RANDOM, tiny_dataset, target, batch_size=3, device="cpu")
    monkeypatch.undo()
    activations.extract(RANDOM, tiny_dataset, target, batch_size=5, device="cpu")
    assert "batch_size differ" in caplog.text
    assert activations.open_store(target)["mean"].encoding["chunks"] == (5, 1, 64)


def test_bad_reduction(tmp_path, tiny_dataset):
    with pytest.raises(ValueError, match="valid reductions"):
        activations.extract(RANDOM, tiny_dataset, tmp_path / "x.zarr", reductions=("median",))
