"""The manifest image loader (clipmech.data.loader): RGB conversion, exact batches from files and tar shards."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from PIL import Image

from clipmech.data import loader

SIZE = 32


@pytest.fixture(scope="module")
def preprocess():
    # The model's eval transform (short-side bicubic resize, centre crop, normalise), at a small size.
    return open_clip.image_transform(SIZE, is_train=False)


def _photo(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth colour gradients with noise: uint8, (H, W, 3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _images() -> dict[str, bytes]:
    """Encoded images of several sizes, aspect ratios and modes."""
    rgb = Image.fromarray(_photo(61, 97, 0))
    palette = Image.fromarray(_photo(48, 64, 2)).quantize(16)
    rgba = np.dstack([_photo(70, 50, 3), np.tile(np.arange(50, dtype=np.uint8) * 5, (70, 1))])
    deep = (np.arange(40 * 30).reshape(30, 40) * 54).astype(np.uint16)
    return {
        "rgb.jpg": _encode(rgb, "JPEG", quality=90),
        "grey.png": _encode(Image.fromarray(_photo(120, 40, 1)[..., 0]), "PNG"),
        "cmyk.jpg": _encode(Image.fromarray(_photo(80, 80, 4)).convert("CMYK"), "JPEG"),
        "palette.png": _encode(palette, "PNG", transparency=3),
        "rgba.png": _encode(Image.fromarray(rgba, "RGBA"), "PNG"),
        "deep.png": _encode(Image.fromarray(deep), "PNG"),
        "wide.png": _encode(Image.fromarray(_photo(20, 150, 5)), "PNG"),
    }


@pytest.fixture
def dataset_root(tmp_path):
    """A dataset root with every image twice, as a plain file and as a member of a tar shard, and its manifest."""
    images = _images()
    (tmp_path / "files").mkdir()
    with tarfile.open(tmp_path / "shard-000.tar", "w") as tar:
        for name, data in images.items():
            (tmp_path / "files" / name).write_bytes(data)
            info = tarfile.TarInfo(f"sample/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    rows = [(f"files/{name}", "") for name in images] + [("shard-000.tar", f"sample/{name}") for name in images]
    names = list(images) * 2
    manifest = pd.DataFrame(
        {
            "index": np.arange(len(rows), dtype=np.int64),
            "source": [source for source, _ in rows],
            "member": [member for _, member in rows],
            "label": np.full(len(rows), -1, dtype=np.int64),
            "class_id": [""] * len(rows),
            "captions": [["a photo"]] * len(rows),
            "categories": [[]] * len(rows),
            "width": np.array([Image.open(io.BytesIO(images[n])).width for n in names], dtype=np.int32),
            "height": np.array([Image.open(io.BytesIO(images[n])).height for n in names], dtype=np.int32),
            "sha256": [hashlib.sha256(images[n]).hexdigest() for n in names],
            "split": ["val"] * len(rows),
        }
    )
    manifest.to_parquet(tmp_path / "manifest.parquet")
    return tmp_path, pd.read_parquet(tmp_path / "manifest.parquet"), names


def test_open_rgb_converts_every_mode_as_open_clip_does(tmp_path):
    images = _images()
    modes = {name: Image.open(io.BytesIO(data)).mode for name, data in images.items()}
    assert modes == {
        "rgb.jpg": "RGB", "grey.png": "L", "cmyk.jpg": "CMYK", "palette.png": "P", "rgba.png": "RGBA",
        "deep.png": "I;16", "wide.png": "RGB",
    }  # fmt: skip
    for name, data in images.items():
        image = loader.open_rgb(data, name)
        assert image.mode == "RGB" and image.size == Image.open(io.BytesIO(data)).size
        if name != "deep.png":  # open_clip's own conversion, alpha and palette transparency dropped
            assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    (tmp_path / "grey.png").write_bytes(images["grey.png"])
    grey = np.asarray(loader.open_rgb(tmp_path / "grey.png"))
    assert np.array_equal(grey[..., 0], grey[..., 2]) and np.array_equal(grey[..., 0], grey[..., 1])
    # 16-bit greyscale is scaled to 8 bits, not clipped at 255.
    deep = np.asarray(Image.open(io.BytesIO(images["deep.png"]))).astype(np.int64)
    expected = np.round(deep * 255 / 65535).astype(np.uint8)
    assert np.array_equal(np.asarray(loader.open_rgb(images["deep.png"]))[..., 1], expected)
    for mode, value, want in [("I", 65535, 255), ("I", 257 * 100, 100), ("F", 300.0, 255), ("F", 12.4, 12)]:
        assert np.asarray(loader.open_rgb(_encode(Image.new(mode, (3, 2), value), "TIFF")))[0, 0, 0] == want


def test_open_rgb_names_an_undecodable_image(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="broken.jpg"):
        loader.open_rgb(bad)
    truncated = _encode(Image.fromarray(_photo(64, 64, 0)), "PNG")[:200]
    with pytest.raises(ValueError, match="cannot decode image shard.tar:x.png"):
        loader.open_rgb(truncated, "shard.tar:x.png")
    with pytest.raises(FileNotFoundError):
        loader.open_rgb(tmp_path / "absent.jpg")


def _run(dataset, workers: int, batch_size: int = 3):
    batches = list(loader.image_loader(dataset, batch_size=batch_size, workers=workers))
    for index, pixels in batches:
        assert index.dtype == torch.int64 and pixels.dtype == torch.float32 and pixels.shape[1:] == (3, SIZE, SIZE)
    return torch.cat([index for index, _ in batches]), torch.cat([pixels for _, pixels in batches])


def test_batches_equal_the_single_image_transform_with_0_and_2_workers(dataset_root, preprocess):
    root, manifest, names = dataset_root
    rows = manifest.iloc[1:]  # some rows: the items carry the manifest's index
    dataset = loader.ManifestImages(rows, root, preprocess, verify=True)
    assert len(dataset) == len(rows)
    dataset[len(dataset) - 1]  # opens the shard in this process before the workers fork
    reference = torch.stack([preprocess(loader.open_rgb(root / "files" / name)) for name in names[1:]])
    outputs = {workers: _run(dataset, workers) for workers in (0, 2)}
    for workers, (index, pixels) in outputs.items():
        assert index.tolist() == rows["index"].tolist(), workers
        assert torch.equal(pixels, reference), workers
    assert torch.equal(outputs[0][1], outputs[2][1])
    dataset.close()


def test_undecodable_images_are_named_from_files_and_shards(dataset_root, preprocess):
    root, manifest, names = dataset_root
    (root / "files" / "rgb.jpg").write_bytes(b"garbage")
    with tarfile.open(root / "bad.tar", "w") as tar:
        info = tarfile.TarInfo("sample/cut.png")
        data = _encode(Image.fromarray(_photo(40, 40, 0)), "PNG")[:100]
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    rows = pd.concat([manifest.iloc[:1], manifest.iloc[:1].assign(source="bad.tar", member="sample/cut.png")])
    dataset = loader.ManifestImages(rows, root, preprocess)
    with pytest.raises(ValueError, match=r"cannot decode image .*files/rgb\.jpg"):
        dataset[0]
    with pytest.raises(ValueError, match=r"cannot decode image .*bad\.tar:sample/cut\.png"):
        dataset[1]
    with pytest.raises(ValueError, match=r"files/rgb\.jpg"):  # re-raised from a worker process
        list(loader.image_loader(dataset, batch_size=1, workers=2))
    missing = loader.ManifestImages(rows.assign(member="sample/nope.png"), root, preprocess)
    with pytest.raises(FileNotFoundError, match="no member 'sample/nope.png'"):
        missing[1]


def test_sha256_mismatch_names_the_image_and_both_hashes(dataset_root, preprocess):
    root, manifest, _ = dataset_root
    rows = manifest.iloc[[2, 9]].copy()
    loader.ManifestImages(rows, root, preprocess, verify=True)[1]  # the recorded hashes match
    recorded = "0" * 64
    rows["sha256"] = recorded
    unchecked = loader.ManifestImages(rows, root, preprocess)
    assert unchecked[0][0] == 2
    checked = loader.ManifestImages(rows, root, preprocess, verify=True)
    actual = hashlib.sha256((root / rows["source"].iloc[0]).read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=rf"files/cmyk\.jpg .*index 2.* sha256 {actual}.*records {recorded}"):
        checked[0]
    with pytest.raises(ValueError, match=r"shard-000\.tar:sample/cmyk\.jpg .*records 0+"):
        checked[1]
    with pytest.raises(ValueError, match="lacks the column.*sha256"):
        loader.ManifestImages(rows.drop(columns="sha256"), root, preprocess, verify=True)


def test_image_loader_settings(dataset_root, preprocess):
    root, manifest, _ = dataset_root
    dataset = loader.ManifestImages(manifest, root, preprocess)
    cpu = loader.image_loader(dataset, batch_size=4, workers=0, device="cpu")
    assert not cpu.pin_memory and not cpu.persistent_workers and cpu.num_workers == 0
    cuda = loader.image_loader(dataset, batch_size=4, workers=2, device="cuda:0")
    assert cuda.pin_memory and cuda.persistent_workers and cuda.num_workers == 2 and cuda.batch_size == 4
    assert isinstance(cuda.sampler, torch.utils.data.SequentialSampler)


def test_a_pickled_dataset_leaves_its_shards_behind(dataset_root, preprocess):
    root, manifest, _ = dataset_root
    dataset = loader.ManifestImages(manifest, root, preprocess)
    index, pixels = dataset[len(dataset) - 1]  # opens the shard
    copy = pickle.loads(pickle.dumps(dataset))  # what a spawned worker gets
    assert not copy._shards and len(dataset._shards) == 1
    assert copy[len(dataset) - 1][0] == index and torch.equal(copy[len(dataset) - 1][1], pixels)
    dataset.close()
    copy.close()
