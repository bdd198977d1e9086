"""The dataset kinds cifar10 and pascal_context: manifests of tiny copies in their own layouts (torchvision's
pickled CIFAR-10 batches, mmseg's PASCAL Context tree), their errors, and the loader's decoding of both."""

import hashlib
import json
import pickle

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10
from toys import CIFAR10_CLASSES, fake_cifar10, fake_pascal_context

from clipmech.data import datasets, loader, natural
from clipmech.data.concepts import concept_matrix

NAMES = ["2008_000002", "2008_000007", "2008_000010"]


@pytest.fixture(scope="module")
def preprocess():
    return open_clip.image_transform(32, is_train=False)


def batch(root, name):
    with open(root / CIFAR10.base_folder / name, "rb") as fh:
        return pickle.load(fh, encoding="latin1")


def test_cifar10_manifest_names_each_image_by_batch_and_row(tmp_path, monkeypatch):
    root = fake_cifar10(tmp_path / "cifar", monkeypatch, rows=4, test_rows=6)
    spec = natural.write_natural_dataset(tmp_path / "out", {"kind": "cifar10", "root": str(root), "split": "train"})
    assert (spec["kind"], spec["layout"], spec["split"], spec["n_images"], spec["n_classes"]) == (
        "cifar10", "cifar-10-batches-py", "train", 20, 10,
    )  # fmt: skip
    data = datasets.load(tmp_path / "out")
    manifest = data.manifest
    assert manifest["source"].tolist() == [f"cifar-10-batches-py/data_batch_{1 + j // 4}" for j in range(20)]
    assert manifest["member"].tolist() == [str(j % 4) for j in range(20)]
    for j, row in manifest.iterrows():
        stored = batch(root, f"data_batch_{1 + j // 4}")
        assert row["label"] == stored["labels"][j % 4] and row["class_id"] == CIFAR10_CLASSES[row["label"]]
        assert row["sha256"] == hashlib.sha256(stored["data"][j % 4].tobytes()).hexdigest()
    assert (manifest["width"] == 32).all() and (manifest["height"] == 32).all()
    assert (manifest["mask"] == "").all() and manifest["categories"].map(len).eq(0).all()
    assert data.classes["name"].tolist() == CIFAR10_CLASSES == data.classes["class_id"].tolist()
    # The default split is test; n_images draws a seeded subset of it.
    natural.write_natural_dataset(tmp_path / "sub", {"kind": "cifar10", "root": str(root), "n_images": 4, "seed": 1})
    sub = datasets.load(tmp_path / "sub")
    assert sub.spec["split"] == "test" and sub.n_images == 4
    assert set(sub.manifest["source"]) == {"cifar-10-batches-py/test_batch"}
    rows = sub.manifest["member"].astype(int).tolist()
    assert rows == sorted(np.random.default_rng(1).choice(6, size=4, replace=False).tolist())
    assert sub.manifest["label"].tolist() == [batch(root, "test_batch")["labels"][r] for r in rows]
    assert not any(p.name.endswith((".parquet", ".json", ".tsv")) for p in root.rglob("*"))  # nothing written there


def test_cifar10_refusals_name_the_layout_and_the_counts(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="cifar10 root .*nowhere does not exist"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "cifar10", "root": str(tmp_path / "nowhere")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"no CIFAR-10 layout .*cifar-10-batches-py/ with data_batch_1.*batches\.meta"
    ):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "cifar10", "root": str(tmp_path / "empty")})
    root = fake_cifar10(tmp_path / "cifar", monkeypatch, rows=4, test_rows=6)
    with pytest.raises(ValueError, match="unknown CIFAR-10 split 'val'; allowed: train, test"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "cifar10", "root": str(root), "split": "val"})
    monkeypatch.setattr(natural, "CIFAR10_SPLIT_SIZES", {"train": 20, "test": 10_000})
    with pytest.raises(ValueError, match="CIFAR-10 test: found 6 images in test_batch, but the split has 10000"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "cifar10", "root": str(root)})
    with open(root / CIFAR10.base_folder / "data_batch_3", "ab") as fh:
        fh.write(b"changed")
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 layout .*finds a file missing or corrupted"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "cifar10", "root": str(root), "split": "train"})
    assert not (tmp_path / "out").exists()


def test_loader_gives_a_cifar_row_as_open_clip_transforms_its_image(tmp_path, monkeypatch, preprocess):
    root = fake_cifar10(tmp_path / "cifar", monkeypatch, rows=4, test_rows=6)
    natural.write_natural_dataset(tmp_path / "out", {"kind": "cifar10", "root": str(root), "split": "train"})
    data = datasets.load(tmp_path / "out")
    images = loader.ManifestImages(data.manifest, data.root, preprocess, verify=True)
    expected = []
    for j in range(data.n_images):
        hwc = batch(root, f"data_batch_{1 + j // 4}")["data"][j % 4].reshape(3, 32, 32).transpose(1, 2, 0)
        expected.append(preprocess(Image.fromarray(hwc)))
        index, pixels = images[j]
        assert index == j and torch.equal(pixels, expected[-1])
    # Through worker processes (each reads the batch files it needs once), from an offset: the same tensors.
    batches = list(loader.pixel_batches(data, preprocess, batch_size=6, start=3, workers=1))
    assert [(first, last) for first, last, _ in batches] == [(3, 9), (9, 15), (15, 20)]
    assert torch.equal(torch.cat([pixels for _, _, pixels in batches]), torch.stack(expected[3:]))
    # A row changed after indexing fails the hash check, naming the batch file and row.
    stored = batch(root, "data_batch_2")
    stored["data"][1] ^= 1
    with open(root / CIFAR10.base_folder / "data_batch_2", "wb") as fh:
        pickle.dump(stored, fh)
    fresh = loader.ManifestImages(data.manifest, data.root, preprocess, verify=True)
    with pytest.raises(ValueError, match=r"data_batch_2:1 \(manifest index 5\) has sha256"):
        fresh[5]


def test_pascal_context_manifest_records_masks_and_categories(tmp_path):
    root = fake_pascal_context(tmp_path / "VOC2010", NAMES)
    spec = natural.write_natural_dataset(tmp_path / "out", {"kind": "pascal_context", "root": str(root)})
    assert (spec["layout"], spec["split"], spec["n_images"], spec["n_classes"]) == ("mmseg", "val", 3, 59)
    data = datasets.load(tmp_path / "out")
    manifest = data.manifest
    assert manifest["source"].tolist() == [f"JPEGImages/{name}.jpg" for name in NAMES]
    assert manifest["mask"].tolist() == [f"SegmentationClassContext/{name}.png" for name in NAMES]
    assert (manifest["member"] == "").all() and (manifest["label"] == -1).all() and (manifest["class_id"] == "").all()
    for row in manifest.itertuples():
        mask = np.asarray(Image.open(root / row.mask))
        assert list(row.categories) == [int(v) - 1 for v in np.unique(mask) if v > 0]
        assert row.sha256 == hashlib.sha256((root / row.source).read_bytes()).hexdigest()
        assert (row.width, row.height) == (120, 90)
    assert all(list(c) == [4, 12, 58] for c in manifest["categories"])  # mask values 5, 13, 59 (and 0)
    assert data.classes["name"].tolist() == list(natural.PASCAL_CONTEXT_59)
    assert (data.classes["name"].iloc[0], data.classes["name"].iloc[-1]) == ("aeroplane", "wood")
    natural.write_natural_dataset(
        tmp_path / "sub", {"kind": "pascal_context", "root": str(root), "n_images": 2, "seed": 3}
    )
    chosen = np.sort(np.random.default_rng(3).choice(3, size=2, replace=False))
    assert datasets.load(tmp_path / "sub").manifest["source"].tolist() == [f"JPEGImages/{NAMES[i]}.jpg" for i in chosen]


def test_loader_decodes_a_pascal_context_jpeg(tmp_path, preprocess):
    root = fake_pascal_context(tmp_path / "VOC2010", NAMES[:2])
    natural.write_natural_dataset(tmp_path / "out", {"kind": "pascal_context", "root": str(root)})
    data = datasets.load(tmp_path / "out")
    images = loader.ManifestImages(data.manifest, data.root, preprocess, verify=True)
    for i, name in enumerate(NAMES[:2]):
        assert torch.equal(images[i][1], preprocess(Image.open(root / "JPEGImages" / f"{name}.jpg").convert("RGB")))


def test_pascal_context_refusals(tmp_path):
    with pytest.raises(FileNotFoundError, match="pascal_context root .* does not exist"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "pascal_context", "root": str(tmp_path / "none")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no PASCAL Context layout .*val\.txt; expected mmseg's layout"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "pascal_context", "root": str(tmp_path / "empty")})
    root = fake_pascal_context(tmp_path / "VOC2010", NAMES[:2])
    (root / "ImageSets" / "SegmentationContext" / "val.txt").write_text("2008_000002\n2008_000003\n")
    with pytest.raises(FileNotFoundError, match="lists '2008_000003' but .*2008_000003.jpg does not exist"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "pascal_context", "root": str(root)})
    (root / "ImageSets" / "SegmentationContext" / "val.txt").write_text("\n".join(NAMES[:2]))
    Image.fromarray(np.full((90, 100), 3, dtype=np.uint8)).save(root / "SegmentationClassContext" / f"{NAMES[0]}.png")
    Image.fromarray(np.full((90, 120), 77, dtype=np.uint8)).save(root / "SegmentationClassContext" / f"{NAMES[1]}.png")
    with pytest.raises(natural.UnreadableImageError, match=r"has shape \(90, 100\), but its image is 120 x 90"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "pascal_context", "root": str(root)})
    spec = natural.write_natural_dataset(
        tmp_path / "out", {"kind": "pascal_context", "root": str(root), "skip_unreadable": True}
    )
    assert spec["n_images"] == 0
    assert [skipped["source"] for skipped in spec["skipped"]] == [f"JPEGImages/{name}.jpg" for name in NAMES[:2]]
    assert "holds the values [77]; a Context-59 mask holds 0..59 and 255" in spec["skipped"][1]["error"]


def test_concepts_are_cifar_classes_and_pascal_categories(tmp_path, monkeypatch):
    root = fake_cifar10(tmp_path / "cifar", monkeypatch)
    natural.write_natural_dataset(tmp_path / "c", {"kind": "cifar10", "root": str(root)})
    cifar = datasets.load(tmp_path / "c")
    concepts = concept_matrix(cifar)
    assert concepts.source == "CIFAR-10 classes" and concepts.names == tuple(CIFAR10_CLASSES)
    np.testing.assert_array_equal(concepts.present_NF.argmax(axis=1), cifar.manifest["label"])
    assert (concepts.present_NF.sum(axis=1) == 1).all()
    pascal_root = fake_pascal_context(tmp_path / "VOC2010", NAMES[:2], classes=(0, 1, 2))
    background = pascal_root / "SegmentationClassContext" / f"{NAMES[1]}.png"
    Image.fromarray(np.zeros((90, 120), dtype=np.uint8)).save(background)
    natural.write_natural_dataset(tmp_path / "p", {"kind": "pascal_context", "root": str(pascal_root)})
    pascal = concept_matrix(datasets.load(tmp_path / "p"))
    assert pascal.source == "PASCAL Context categories" and len(pascal.names) == 59
    assert np.flatnonzero(pascal.present_NF[0]).tolist() == [0, 1]  # aeroplane and bag: several per image
    assert not pascal.present_NF[1].any()  # an all-background mask: no category
    assert json.loads((tmp_path / "p" / "spec.json").read_text())["kind"] == "pascal_context"
    assert pd.read_csv(tmp_path / "p" / "classes.tsv", sep="\t")["name"].tolist()[:2] == ["aeroplane", "bag"]
