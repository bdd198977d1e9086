"""The atlas of a natural-image dataset (issue 21): photographs from scikit-image's wheel in class folders,
a random-init tiny ViT's activation store, Algorithm 1 over the folder classes, and an SAE on the store."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipmech.atlas import site
from clipmech.data import datasets, loader, natural
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.sae.model import TopKSAE, save_sae
from clipmech.stages.build_atlas import build_atlas
from clipmech.stages.neuron_selectivity import neuron_selectivity
from clipmech.stores import activation_extraction

skimage = pytest.importorskip("skimage")

RANDOM = ModelSpec("rand", "clipmech-vit-tiny", None)
SAE_SITE = "visual.blocks.1.hook_resid_pre"
#: Photographs of several sizes and aspect ratios (and one greyscale), by class folder.
PHOTOS = {
    "cat": ["chelsea.png"],
    "cup": ["coffee.png"],
    "person": ["astronaut.png", "camera.png"],
    "rocket": ["rocket.jpg"],
    "motorcycle": ["motorcycle_left.png"],
    "texture": ["brick.png", "grass.png"],
}
ATLAS = {
    "max_units": 3,
    "n_top_images": 4,
    "thumbnail_size": 32,
    "bins": 6,
    "n_reads": 2,
    "batch_tokens": 4096,
    "k": 3,
    "reduction": "mean",
}
SOURCES = {"sae": "tiny-shapes", "patching": None, "miclip": "tiny-shapes"}


def photo(name: str) -> Path:
    return Path(skimage.__file__).parent / "data" / name


@pytest.fixture(scope="module")
def photo_atlas(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("natural-atlas")
    for label, names in PHOTOS.items():
        (tmp / "photos" / label).mkdir(parents=True)
        for name in names:
            shutil.copy(photo(name), tmp / "photos" / label / name)
    data = tmp / "data"
    natural.write_natural_dataset(data, {"kind": "imagefolder", "root": str(tmp / "photos")})
    store = activation_extraction.extract(
        RANDOM,
        data,
        tmp / "store.zarr",
        sites=("visual.blocks.*.hook_mlp_out", SAE_SITE),
        batch_size=4,
        device="cpu",
        code="test-code",
    )
    units_tsv = tmp / "units.tsv"
    neuron_selectivity(
        store=str(store),
        dataset_dir=str(data),
        units=str(units_tsv),
        topk=str(tmp / "topk.tsv"),
        null=str(tmp / "null.npy"),
        selectivity={"reduction": "mean", "k": 3, "n_null": 20},
        seed=0,
    )
    width = int(pd.read_csv(units_tsv, sep="\t")["neuron"].max()) + 1
    save_sae(tmp / "sae.pt", TopKSAE(width, 8, 2), {"site": SAE_SITE, "tokens": "all"})
    out = tmp / "atlas" / "rand"
    manifest = build_atlas(
        model="rand",
        dataset="photos",
        inputs={
            "data": str(data),
            "store": str(store),
            "units": str(units_tsv),
            "sae_checkpoints": [str(tmp / "sae.pt")],
        },
        site=str(out),
        summary=str(tmp / "atlas" / "rand.tsv"),
        atlas=ATLAS,
        sources=SOURCES,
        sae_sites=[SAE_SITE],
        miclip_units=[],
    )
    return data, out, manifest


def test_the_pages_show_the_folder_classes(photo_atlas):
    _, out, manifest = photo_atlas
    assert manifest["pages"] == {"mlp": 3, "sae": 3}
    classes = sorted(PHOTOS)
    index = (out / "index.html").read_text()
    assert "<dt>concepts</dt><dd>6 folder classes: " + ", ".join(classes) + "</dd>" in index
    assert "imagefolder photographs, shown as the model sees them" in index
    assert "Shapes" not in index and "shape_" not in index
    pages = sorted((out / "units").rglob("*.html"))
    assert {p.parent.name for p in pages} == {"mlp", "sae"}
    for page in pages:
        html = page.read_text()
        assert "<h2>Concept affinities: the folder classes (Algorithm 1 over the top images; photos " in html
        assert "<dd>photos (imagefolder photographs): all 8 images</dd>" in html
        shown = [c for c in classes if f"<tr><td>{c}</td>" in html]
        assert shown and set(shown) <= set(classes)  # affinity rows are the classes, nothing else
    units = pd.read_csv(out.parent / "rand.tsv", sep="\t")
    assert units.set_index("kind")["units"].to_dict() == manifest["units"]


def test_thumbnails_are_the_photographs_as_the_model_sees_them(photo_atlas):
    data, out, manifest = photo_atlas
    dataset = datasets.load(data)
    shown = sorted(int(Path(name).stem) for name in manifest["files"] if name.startswith("images/"))
    assert shown
    _, preprocess = loading.load_model(RANDOM)
    for i in shown:
        thumb = np.asarray(Image.open(out / "images" / f"{i}.png"))
        assert thumb.shape == (32, 32, 3)
        row = dataset.manifest.iloc[i]
        picture = loader.open_rgb(dataset.root / row["source"])
        np.testing.assert_array_equal(thumb, np.asarray(site.model_view(picture, 32)))
    # At the model's own size the crop is the model's input: the patch maps cover exactly the thumbnail.
    row = dataset.manifest.set_index("class_id").loc["rocket"]  # 427 x 640: a wide photograph
    picture = loader.open_rgb(dataset.root / row["source"])
    pixels = preprocess(picture)
    size = pixels.shape[-1]
    normalize = next(t for t in preprocess.transforms if type(t).__name__ == "Normalize")
    mean, std = np.array(normalize.mean)[:, None, None], np.array(normalize.std)[:, None, None]
    seen = (pixels.numpy() * std + mean).transpose(1, 2, 0) * 255
    view = np.asarray(site.model_view(picture, size), dtype=np.float64)
    assert np.abs(seen - view).max() <= 1.5


def test_a_natural_atlas_refuses_resnet_inputs(photo_atlas, tmp_path):
    data, _, _ = photo_atlas
    with pytest.raises(ValueError, match="photos is a natural-image dataset: it has no CLIP-ResNet decomposition"):
        build_atlas(
            model="rn",
            dataset="photos",
            inputs={"data": str(data), "attnpool": "x", "pairs": "y", "words": "z"},
            site=str(tmp_path / "s"),
            summary=str(tmp_path / "s.tsv"),
            atlas=ATLAS,
            sources=SOURCES,
            sae_sites=[],
            miclip_units=[],
        )
