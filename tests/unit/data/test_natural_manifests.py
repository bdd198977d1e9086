"""Natural-image datasets as manifests: every layout on tiny trees the tests write themselves."""

import io
import json
import tarfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.io
from PIL import Image

from clipmech.data import datasets, natural

#: 1000 made-up WordNet ids, already sorted: class index i is WNIDS[i].
WNIDS = [f"n{10000000 + 7 * i:08d}" for i in range(1000)]
#: The val images of the ImageNet trees: (file number, class index, mode, format).
VAL_IMAGES = [
    (1, 0, "RGB", "JPEG"),
    (2, 3, "L", "JPEG"),
    (3, 3, "CMYK", "JPEG"),
    (4, 999, "RGB", "JPEG"),
    (5, 10, "RGB", "JPEG"),
]


def image_bytes(seed: int, mode: str = "RGB", fmt: str = "JPEG", size=(8, 6)) -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def val_name(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}.JPEG"


def imagenet_class_folders(root, split="val"):
    for wnid in WNIDS:
        (root / split / wnid).mkdir(parents=True)
    for number, label, mode, fmt in VAL_IMAGES:
        write(root / split / WNIDS[label] / val_name(number), image_bytes(number, mode, fmt))
    return root


def imagenet_flat(root):
    for number, _, mode, fmt in VAL_IMAGES:
        write(root / "val" / val_name(number), image_bytes(number, mode, fmt))
    (root / "val" / "readme.txt").write_text("not an image")
    return root


def imagenet_devkit(root):
    imagenet_flat(root)
    data = root / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    # The devkit numbers its 1000 leaves in its own order (here: reversed wnid order), then non-leaves.
    ilsvrc_id = {wnid: 1000 - i for i, wnid in enumerate(WNIDS)}
    synsets = np.zeros((1003, 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")])
    for wnid in WNIDS:
        synsets[ilsvrc_id[wnid] - 1, 0] = (ilsvrc_id[wnid], wnid, "a thing", 0)
    for k in range(3):
        synsets[1000 + k, 0] = (1001 + k, f"n{90000000 + k:08d}", "a group", 2)
    scipy.io.savemat(data / "meta.mat", {"synsets": synsets})
    truth = [ilsvrc_id[WNIDS[label]] for _, label, _, _ in VAL_IMAGES]
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{t}\n" for t in truth))
    return root


def imagenet_loc(root):
    imagenet_flat(root)
    rows = [f"ILSVRC2012_val_{n:08d},{WNIDS[label]} 1 2 3 4 {WNIDS[label]} 5 6 7 8" for n, label, _, _ in VAL_IMAGES]
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} some, name\n" for w in reversed(WNIDS)))
    return root


def imagefolder(root):
    write(root / "dog" / "a.jpg", image_bytes(1))
    write(root / "dog" / "sub" / "b.PNG", image_bytes(2, fmt="PNG"))
    write(root / "cat" / "c.JPEG", image_bytes(3, "L"))
    write(root / "cat" / ".hidden.jpg", image_bytes(4))
    write(root / "cat" / "notes.txt", b"text")
    write(root / "bird" / "d.webp", image_bytes(5, fmt="WEBP"))
    (root / ".cache").mkdir()
    write(root / ".cache" / "e.jpg", image_bytes(6))
    return root


EXPECTED_COLUMNS = {
    "index": pa.int64(),
    "source": pa.string(),
    "member": pa.string(),
    "label": pa.int64(),
    "class_id": pa.string(),
    "captions": pa.list_(pa.string()),
    "categories": pa.list_(pa.int64()),
    "mask": pa.string(),
    "width": pa.int32(),
    "height": pa.int32(),
    "sha256": pa.string(),
    "split": pa.string(),
}


def check_directory(out, spec):
    schema = pq.read_schema(out / "manifest.parquet")
    assert dict(zip(schema.names, schema.types)) == EXPECTED_COLUMNS
    assert schema.names == list(EXPECTED_COLUMNS)
    assert sorted(p.name for p in out.iterdir()) == ["classes.tsv", "manifest.parquet", "spec.json"]
    assert json.loads((out / "spec.json").read_text()) == spec
    dataset = datasets.load(out)
    assert dataset.images is None and dataset.n_images == spec["n_images"] == len(dataset.manifest)
    assert dataset.manifest["index"].tolist() == list(range(spec["n_images"]))
    assert (dataset.manifest["mask"] == "").all()  # masks are PASCAL Context's only
    assert list(dataset.classes.columns) == ["index", "class_id", "name"] and len(dataset.classes) == spec["n_classes"]
    assert dataset.root == natural.Path(spec["root"])
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))
    return dataset


@pytest.mark.parametrize("layout", [imagenet_class_folders, imagenet_devkit, imagenet_loc])
def test_imagenet_layouts_agree(tmp_path, layout):
    root = layout(tmp_path / "data")
    spec = natural.write_natural_dataset(
        tmp_path / "out", {"kind": "imagenet", "root": str(root), "split": "val", "n_images": 5, "seed": 0}
    )
    expected_layout = {
        imagenet_class_folders: "class-folders",
        imagenet_devkit: "flat-devkit",
        imagenet_loc: "flat-loc",
    }
    assert spec["layout"] == expected_layout[layout] and spec["n_classes"] == 1000 and spec["skipped"] == []
    dataset = check_directory(tmp_path / "out", spec)
    m = dataset.manifest
    assert m["label"].tolist() == [label for _, label, _, _ in VAL_IMAGES]
    assert m["class_id"].tolist() == [WNIDS[label] for _, label, _, _ in VAL_IMAGES]
    assert [s.rsplit("/", 1)[-1] for s in m["source"]] == [val_name(n) for n, _, _, _ in VAL_IMAGES]
    assert m["sha256"].tolist() == [
        natural.hashlib.sha256(image_bytes(n, md, f)).hexdigest() for n, _, md, f in VAL_IMAGES
    ]
    assert (m["width"] == 8).all() and (m["height"] == 6).all() and (m["split"] == "val").all()
    assert (
        (m["member"] == "").all()
        and all(len(c) == 0 for c in m["captions"])
        and all(len(c) == 0 for c in m["categories"])
    )
    assert dataset.classes["class_id"].tolist() == WNIDS
    assert dataset.classes["name"].tolist() == natural.imagenet_classnames()
    for source in m["source"]:
        assert (dataset.root / source).is_file()


def test_imagenet_train_class_folders_and_seeded_subset(tmp_path):
    root = imagenet_class_folders(tmp_path / "data", split="train")
    spec = {"kind": "imagenet", "root": str(root / "train"), "split": "train", "n_images": 3, "seed": 7}
    a = natural.write_natural_dataset(tmp_path / "a", spec)
    b = natural.write_natural_dataset(tmp_path / "b", spec)
    assert (tmp_path / "a" / "manifest.parquet").read_bytes() == (tmp_path / "b" / "manifest.parquet").read_bytes()
    assert a["sha256"] == b["sha256"] and a["n_images"] == 3 and a["seed"] == 7
    chosen = np.sort(np.random.default_rng(7).choice(5, size=3, replace=False))
    manifest = datasets.load(tmp_path / "a").manifest
    assert manifest["source"].tolist() == [f"{WNIDS[VAL_IMAGES[i][1]]}/{val_name(VAL_IMAGES[i][0])}" for i in chosen]
    other = natural.write_natural_dataset(tmp_path / "c", {**spec, "seed": 8})
    assert other["sha256"] != a["sha256"]


def test_imagenet_partial_copy_needs_n_images(tmp_path):
    root = imagenet_class_folders(tmp_path / "data")
    with pytest.raises(ValueError, match=r"found 5 images, but the split has 50000.*only with n_images"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "imagenet", "root": str(root), "split": "val"})
    with pytest.raises(ValueError, match=r"n_images = 6, but 5 images were found"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "imagenet", "root": str(root), "n_images": 6})
    assert not (tmp_path / "out").exists()


def test_imagenet_class_count_mismatch(tmp_path):
    root = imagenet_class_folders(tmp_path / "data")
    (root / "val" / WNIDS[500]).rmdir()
    with pytest.raises(ValueError, match=r"found 999 ImageNet classes, expected 1000"):
        natural.list_imagenet(root, "val")


def test_imagenet_missing_root_and_no_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        natural.list_imagenet(tmp_path / "nowhere", "val")
    imagenet_flat(tmp_path / "flat")
    with pytest.raises(FileNotFoundError) as error:
        natural.list_imagenet(tmp_path / "flat", "val")
    message = str(error.value)
    for part in (
        "class-folders",
        "flat-devkit",
        "flat-loc",
        "ILSVRC2012_validation_ground_truth.txt",
        "meta.mat",
        "LOC_val_solution.csv",
    ):
        assert part in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"class-folders.*no ILSVRC2012_val_\*\.JPEG"):
        natural.list_imagenet(tmp_path / "empty", "val")


def test_imagefolder(tmp_path):
    root = imagefolder(tmp_path / "data")
    spec = natural.write_natural_dataset(tmp_path / "out", {"kind": "imagefolder", "root": str(root), "split": "test"})
    assert spec["layout"] == "class-folders" and spec["n_images"] == 4 and spec["n_classes"] == 3
    dataset = check_directory(tmp_path / "out", spec)
    assert dataset.classes["class_id"].tolist() == ["bird", "cat", "dog"]
    m = dataset.manifest
    assert m["source"].tolist() == ["bird/d.webp", "cat/c.JPEG", "dog/a.jpg", "dog/sub/b.PNG"]
    assert m["label"].tolist() == [0, 1, 2, 2] and m["class_id"].tolist() == ["bird", "cat", "dog", "dog"]
    assert (m["split"] == "test").all()


def test_imagefolder_without_images(tmp_path):
    (tmp_path / "data" / "dog").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="class-folders"):
        natural.list_imagefolder(tmp_path / "data")


@pytest.mark.parametrize("suffix, sep", [("csv", ","), ("csv", "\t"), ("tsv", "\t")])
def test_captions_table(tmp_path, suffix, sep):
    data = tmp_path / "data"
    write(data / "images" / "a.jpg", image_bytes(1))
    write(data / "images" / "b.png", image_bytes(2, "L", "PNG"))
    outside = write(tmp_path / "elsewhere" / "c.jpg", image_bytes(3, "CMYK"))
    rows = [("images/a.jpg", "a red thing"), ("images/b.png", "grey, noisy"), (str(outside), "far away")]
    text = f"filepath{sep}title\n" + "".join(f'{f}{sep}"{c}"\n' if sep == "," else f"{f}{sep}{c}\n" for f, c in rows)
    table = write(data / f"pairs.{suffix}", text.encode())
    spec = natural.write_natural_dataset(tmp_path / "out", {"kind": "captions", "path": str(table), "split": "train"})
    assert spec["layout"] == suffix and spec["n_classes"] == 0 and spec["root"] == str(data)
    dataset = check_directory(tmp_path / "out", spec)
    m = dataset.manifest
    assert m["source"].tolist() == ["images/a.jpg", "images/b.png", "../elsewhere/c.jpg"]
    assert [list(c) for c in m["captions"]] == [["a red thing"], ["grey, noisy"], ["far away"]]
    assert (m["label"] == -1).all() and (m["class_id"] == "").all()
    assert (tmp_path / "out" / "classes.tsv").read_text() == "index\tclass_id\tname\n"
    for source in m["source"]:
        assert (dataset.root / source).is_file()


def test_captions_table_custom_keys_and_missing_column(tmp_path):
    write(tmp_path / "data" / "a.jpg", image_bytes(1))
    table = write(tmp_path / "data" / "pairs.tsv", b"image\ttext\na.jpg\thello\n")
    listing = natural.list_captions(table, image_key="image", caption_key="text")
    assert [s.captions for s in listing.samples] == [["hello"]]
    with pytest.raises(ValueError, match=r"no column 'filepath' \(image_key\); columns found: image, text"):
        natural.list_captions(table)


def webdataset_shards(folder):
    samples = [
        ("s0", [("000.jpg", image_bytes(1)), ("000.txt", b"first caption"), ("001.png", image_bytes(2, fmt="PNG"))]),
        (
            "s1",
            [
                ("x/002.jpeg", image_bytes(3, "L")),
                ("x/002.txt", b"third"),
                ("x/002.json", b"{}"),
                ("003.txt", b"lonely"),
            ],
        ),
    ]
    folder.mkdir(parents=True)
    for name, members in samples:
        with tarfile.open(folder / f"{name}.tar", "w") as tar:
            for member, data in members:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return folder


def test_captions_webdataset(tmp_path):
    folder = webdataset_shards(tmp_path / "shards")
    spec = natural.write_natural_dataset(tmp_path / "out", {"kind": "captions", "path": str(folder)})
    assert spec["layout"] == "webdataset" and spec["n_images"] == 3
    m = check_directory(tmp_path / "out", spec).manifest
    assert m["source"].tolist() == ["s0.tar", "s0.tar", "s1.tar"]
    assert m["member"].tolist() == ["000.jpg", "001.png", "x/002.jpeg"]
    assert [list(c) for c in m["captions"]] == [["first caption"], [], ["third"]]
    assert m["sha256"].iloc[2] == natural.hashlib.sha256(image_bytes(3, "L")).hexdigest()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"webdataset \*\.tar"):
        natural.list_captions(tmp_path / "empty")


def coco(tmp_path):
    images = [{"id": 42, "file_name": "000000000042.jpg"}, {"id": 7, "file_name": "000000000007.jpg"}]
    for k, image in enumerate(images):
        write(tmp_path / "coco" / "val2017" / image["file_name"], image_bytes(k, "CMYK" if k else "RGB"))
    annotations = [
        {"id": 1, "image_id": 7, "caption": "A cat. "},
        {"id": 2, "image_id": 42, "caption": "A dog."},
        {"id": 3, "image_id": 7, "caption": "Another cat."},
    ]
    captions = write(
        tmp_path / "coco" / "annotations" / "captions_val2017.json",
        json.dumps({"images": images, "annotations": annotations}).encode(),
    )
    categories = [{"id": 90 - k, "name": f"thing{90 - k}"} for k in range(80)]  # ids 11..90, unsorted
    objects = [
        {"id": 1, "image_id": 42, "category_id": 90},
        {"id": 2, "image_id": 42, "category_id": 11},
        {"id": 3, "image_id": 42, "category_id": 90},
    ]
    instances = write(
        tmp_path / "coco" / "annotations" / "instances_val2017.json",
        json.dumps({"images": images, "annotations": objects, "categories": categories}).encode(),
    )
    return captions, instances


def test_captions_coco_with_instances(tmp_path):
    captions, instances = coco(tmp_path)
    config = {"kind": "captions", "path": str(captions), "split": "val2017", "instances": str(instances)}
    spec = natural.write_natural_dataset(tmp_path / "out", config)
    assert spec["layout"] == "coco" and spec["n_classes"] == 80 and spec["root"] == str(tmp_path / "coco" / "val2017")
    dataset = check_directory(tmp_path / "out", spec)
    m = dataset.manifest
    assert m["source"].tolist() == ["000000000042.jpg", "000000000007.jpg"]
    assert [list(c) for c in m["captions"]] == [["A dog."], ["A cat.", "Another cat."]]
    assert [list(c) for c in m["categories"]] == [[0, 79], []]
    assert dataset.classes["class_id"].tolist() == [str(i) for i in range(11, 91)]
    assert dataset.classes["name"].iloc[0] == "thing11"
    # Without a split, the image folder is named after the JSON; without instances, no classes.
    listing = natural.list_captions(captions)
    assert listing.root == tmp_path / "coco" / "val2017" and listing.classes.empty
    with pytest.raises(FileNotFoundError, match=r"tried .*train2017.*set image_root"):
        natural.list_captions(captions, split="train2017", image_root=tmp_path / "coco" / "train2017")


def test_coco_category_count_mismatch(tmp_path):
    captions, instances = coco(tmp_path)
    objects = json.loads(instances.read_text())
    objects["categories"] = objects["categories"][:79]
    objects["annotations"] = [a for a in objects["annotations"] if a["category_id"] != 11]
    instances.write_text(json.dumps(objects))
    with pytest.raises(ValueError, match="found 79 categories, expected 80"):
        natural.list_captions(captions, instances=instances)


def test_unreadable_image_fails_or_is_skipped(tmp_path):
    root = imagefolder(tmp_path / "data")
    good = image_bytes(9)
    write(root / "dog" / "broken.jpg", good[: len(good) // 2])
    config = {"kind": "imagefolder", "root": str(root)}
    with pytest.raises(natural.UnreadableImageError, match=r"dog/broken\.jpg"):
        natural.write_natural_dataset(tmp_path / "out", config)
    # The atomic write: a failure leaves neither the output nor a temporary directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    spec = natural.write_natural_dataset(tmp_path / "out", {**config, "skip_unreadable": True})
    assert spec["n_images"] == 4
    assert [(s["source"], s["member"]) for s in spec["skipped"]] == [("dog/broken.jpg", "")]
    assert "broken.jpg" in spec["skipped"][0]["error"]
    assert "dog/broken.jpg" not in check_directory(tmp_path / "out", spec).manifest["source"].tolist()


def test_missing_captioned_file_is_unreadable(tmp_path):
    table = write(tmp_path / "data" / "pairs.csv", b"filepath,title\nmissing.jpg,gone\n")
    with pytest.raises(natural.UnreadableImageError, match="missing.jpg"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "captions", "path": str(table)})


def test_output_refusals(tmp_path):
    root = imagefolder(tmp_path / "data")
    with pytest.raises(ValueError, match="inside the data folder"):
        natural.write_natural_dataset(root / "out", {"kind": "imagefolder", "root": str(root)})
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="exists"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "imagefolder", "root": str(root)})
    with pytest.raises(ValueError, match="unknown natural dataset kind 'cifar'"):
        natural.write_natural_dataset(tmp_path / "x", {"kind": "cifar", "root": str(root)})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        natural.write_natural_dataset(tmp_path / "x", {"kind": "captions", "path": str(tmp_path / "nope.csv")})
    assert sorted(p.name for p in root.rglob("*") if "out" in p.name) == []


def test_load_verifies_hash(tmp_path):
    root = imagefolder(tmp_path / "data")
    natural.write_natural_dataset(tmp_path / "out", {"kind": "imagefolder", "root": str(root)})
    path = tmp_path / "out" / "manifest.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="manifest.parquet, classes.tsv"):
        datasets.load(tmp_path / "out")


def test_load_keeps_class_ids_as_strings(tmp_path):
    captions, instances = coco(tmp_path)
    natural.write_natural_dataset(
        tmp_path / "out", {"kind": "captions", "path": str(captions), "split": "val2017", "instances": str(instances)}
    )
    classes = datasets.load(tmp_path / "out").classes
    assert classes["class_id"].map(type).eq(str).all()
    assert pd.api.types.is_integer_dtype(classes["index"])


def test_truncated_tar_member_is_skipped_with_its_member_name(tmp_path):
    folder = webdataset_shards(tmp_path / "shards")
    good = image_bytes(8)
    with tarfile.open(folder / "s2.tar", "w") as tar:
        for member, data in (("bad.jpg", good[: len(good) // 2]), ("bad.txt", b"cut")):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(natural.UnreadableImageError, match=r"s2\.tar member bad\.jpg"):
        natural.write_natural_dataset(tmp_path / "out", {"kind": "captions", "path": str(folder)})
    assert not (tmp_path / "out").exists()
    spec = natural.write_natural_dataset(
        tmp_path / "out", {"kind": "captions", "path": str(folder), "skip_unreadable": True}
    )
    assert spec["n_images"] == 3 and [(s["source"], s["member"]) for s in spec["skipped"]] == [("s2.tar", "bad.jpg")]
