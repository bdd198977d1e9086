"""Stores of natural-image datasets: the same images as PNG files behind a manifest give the stores their
pixel arrays give, the killed-and-resumed extraction too, with decoding worker processes."""

import numpy as np
import pytest
import xarray as xr
from PIL import Image
from toys import die_on_region_write

from clipmech.data import datasets, loader, natural
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.stores import activation_extraction, activations, attnpool, attnpool_extraction

RANDOM = ModelSpec("rand", "clipmech-vit-tiny", None)
RANDOM_RN = ModelSpec("rand-rn", "clipmech-rn-tiny", None)
CODE = "test-code"


@pytest.fixture(scope="module")
def as_photos(tiny_dataset, tmp_path_factory):
    """The tiny Shapes dataset's images as lossless PNG files in one class folder, indexed into a manifest."""
    root = tmp_path_factory.mktemp("photos")
    images = datasets.load(tiny_dataset).images
    (root / "shapes").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(np.asarray(image)).save(root / "shapes" / f"{i:03d}.png")
    out = tmp_path_factory.mktemp("indexed") / "data"
    natural.write_natural_dataset(out, {"kind": "imagefolder", "root": str(root)})
    return out


@pytest.mark.parametrize("start, workers", [(0, 0), (3, 0), (3, 2)])
def test_pixel_batches_agree_across_kinds(tiny_dataset, as_photos, start, workers):
    _, preprocess = loading.load_model(RANDOM)
    synthetic, photos = datasets.load(tiny_dataset), datasets.load(as_photos)
    got = list(loader.pixel_batches(photos, preprocess, batch_size=4, start=start, workers=workers))
    want = list(loader.pixel_batches(synthetic, preprocess, batch_size=4, start=start))
    assert [(first, last) for first, last, _ in got] == [(first, last) for first, last, _ in want]
    assert got[0][0] == start and got[-1][1] == 10
    for (_, _, a), (_, _, b) in zip(got, want, strict=True):
        assert a.equal(b)


def _values(store: xr.Dataset) -> xr.Dataset:
    return store.drop_attrs()


def test_activation_store_of_files_equals_that_of_arrays(tmp_path, tiny_dataset, as_photos, monkeypatch):
    reference = activations.open_store(
        activation_extraction.extract(
            RANDOM, tiny_dataset, tmp_path / "ref.zarr", batch_size=3, device="cpu", code=CODE
        )
    )
    target = tmp_path / "photos.zarr"
    with monkeypatch.context() as patch:
        die_on_region_write(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            activation_extraction.extract(RANDOM, as_photos, target, batch_size=3, device="cpu", code=CODE, workers=2)
    activation_extraction.extract(RANDOM, as_photos, target, batch_size=3, device="cpu", code=CODE, workers=2)
    store = activations.open_store(target)
    xr.testing.assert_identical(_values(store), _values(reference))
    assert store.attrs["dataset_sha256"] == datasets.load(as_photos).spec["sha256"]


def test_attnpool_store_of_files_equals_that_of_arrays(tmp_path, tiny_dataset, as_photos):
    stores = [
        attnpool.open_store(
            attnpool_extraction.extract_attnpool(
                RANDOM_RN, directory, tmp_path / f"{name}.zarr", batch_size=4, device="cpu", code=CODE, workers=workers
            )
        )
        for name, directory, workers in (("ref", tiny_dataset, 0), ("photos", as_photos, 2))
    ]
    xr.testing.assert_identical(_values(stores[0]), _values(stores[1]))


def test_text_sites_read_the_first_caption(tmp_path):
    root = tmp_path / "pairs"
    root.mkdir()
    rows = []
    for i, colour in enumerate(("red", "blue", "green")):
        Image.new("RGB", (40, 30), colour).save(root / f"{i}.png")
        rows.append(f"{i}.png\ta {colour} square")
    (root / "pairs.tsv").write_text("filepath\ttitle\n" + "\n".join(rows) + "\n")
    out = tmp_path / "data"
    natural.write_natural_dataset(out, {"kind": "captions", "path": str(root / "pairs.tsv")})
    assert activation_extraction.image_captions(datasets.load(out)) == [
        "a red square",
        "a blue square",
        "a green square",
    ]
