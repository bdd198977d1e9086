"""Unit tests of clipmech.analyses.embedding_maps: the CIFAR-10 reader on a fake local copy, t-SNE, labels."""

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from torchvision.datasets import CIFAR10

from clipmech.analyses.embedding_maps import cluster_separation, shapes_labels, tsne_map
from clipmech.data.cifar10 import load_cifar10

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    """A CIFAR-10 copy in the python format torchvision reads: five training batches and a test
    batch (pickled dicts with uint8 ``data`` rows of 3 x 32 x 32 channel-first pixels and
    ``labels``) and ``batches.meta``; torchvision's md5 table is pointed at these files.

    Image i of a batch is filled with the value of its label, so pixels identify labels."""
    folder = tmp_path / CIFAR10.base_folder
    folder.mkdir()
    rng = np.random.default_rng(0)
    sizes = {
        "data_batch_1": 4,
        "data_batch_2": 4,
        "data_batch_3": 4,
        "data_batch_4": 4,
        "data_batch_5": 4,
        "test_batch": 12,
    }
    for name, n in sizes.items():
        labels = rng.integers(0, 10, size=n).tolist()
        data = np.repeat(np.asarray(labels, dtype=np.uint8)[:, None], 3 * 32 * 32, axis=1)
        with open(folder / name, "wb") as fh:
            pickle.dump(
                {"batch_label": name, "labels": labels, "data": data, "filenames": [f"{i}.png" for i in range(n)]}, fh
            )
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": CLASSES, "num_cases_per_batch": 4, "num_vis": 3072}, fh)
    monkeypatch.setattr(
        CIFAR10, "train_list", [[f"data_batch_{i}", _md5(folder / f"data_batch_{i}")] for i in range(1, 6)]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": _md5(folder / "batches.meta")})
    return tmp_path


def test_cifar10_reader(fake_cifar):
    images, labels, classes = load_cifar10(str(fake_cifar), "test", 5, np.random.default_rng(0))
    assert classes == CLASSES
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert np.all(images == labels[:, None, None, None])  # each image still carries its own label
    again = load_cifar10(str(fake_cifar), "test", 5, np.random.default_rng(0))
    np.testing.assert_array_equal(again[1], labels)
    whole, whole_labels, _ = load_cifar10(str(fake_cifar), "train", 100, np.random.default_rng(0))
    assert whole.shape[0] == 20  # the whole split when it is smaller than the subset
    assert np.all(whole == whole_labels[:, None, None, None])


def test_cifar10_reader_checks_md5_and_layout(fake_cifar, tmp_path):
    with open(fake_cifar / CIFAR10.base_folder / "test_batch", "ab") as fh:
        fh.write(b"corrupted")
    with pytest.raises(FileNotFoundError, match="no valid CIFAR-10 copy.*test_batch"):
        load_cifar10(str(fake_cifar), "test", 5, np.random.default_rng(0))
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_cifar10(str(tmp_path / "nowhere"), "test", 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="'val'"):
        load_cifar10(str(fake_cifar), "val", 5, np.random.default_rng(0))


def test_tsne_is_seeded_and_separates_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3] * 3
    emb = np.concatenate([c + 0.1 * rng.standard_normal((15, 8)) for c in centres])
    labels = np.repeat([0, 1, 2], 15)
    xy = tsne_map(emb, 10, seed=0)
    assert xy.shape == (45, 2)
    np.testing.assert_array_equal(xy, tsne_map(emb, 10, seed=0))
    assert cluster_separation(xy, labels) > 0.5
    assert cluster_separation(emb, labels) > 0.5
    assert cluster_separation(emb, rng.permutation(labels)) < 0.1
    assert np.isnan(cluster_separation(emb, np.zeros(45)))
    with pytest.raises(ValueError, match="perplexity"):
        tsne_map(emb, 45, seed=0)


def test_shapes_labels():
    objects = pd.DataFrame(
        {
            "image_id": [0, 1, 1, 2],
            "object_id": [1, 1, 2, 1],
            "n_objects": [1, 2, 2, 1],
            "shape": ["square", "circle", "triangle", "hexagon"],
            "colour": ["red", "blue", "green", "pink"],
        }
    )
    labels = shapes_labels(objects, 3)
    assert labels["n_objects"].tolist() == [1, 2, 1]
    assert labels["colour"].tolist() == ["red", "", "pink"]
    assert labels["shape"].tolist() == ["square", "", "hexagon"]


def test_cifar10_stage_on_the_fake_copy(fake_cifar, tmp_path):
    from clipmech.models.loading import ModelSpec
    from clipmech.stages.plot_tsne_cifar10 import plot_tsne_cifar10
    from clipmech.stages.tsne_cifar10 import tsne_cifar10

    out = {"table": str(tmp_path / "out" / "cifar10.tsv"), "summary": str(tmp_path / "out" / "cifar10.json")}
    cifar = {"root": str(fake_cifar), "split": "test", "n_images": 10}
    tsne_cifar10(
        model=ModelSpec("random-vit", "clipmech-vit-tiny", None),
        out=out,
        cifar10=cifar,
        tsne={"perplexity": 3},
        seed=0,
        device="cpu",
        batch_size=4,
        threads=1,
    )
    table = pd.read_csv(out["table"], sep="\t")
    assert len(table) == 10 and set(table["class"]) <= set(CLASSES)
    assert (table["class"] == np.asarray(CLASSES)[table["label"]]).all()
    summary = json.loads(Path(out["summary"]).read_text())
    assert summary["classes"] == list(CLASSES) and (summary["split"], summary["n_images"]) == ("test", 10)
    figure = tmp_path / "out" / "cifar10.png"
    plot_tsne_cifar10(table=out["table"], summary=out["summary"], out={"figure": str(figure)}, label="random-vit")
    assert figure.stat().st_size > 1000


def test_plot_tsne_shapes_reads_the_table_and_summary(tmp_path):
    """Rule plot_tsne_shapes draws from tsne_shapes' table (a multi-object image's empty colour and shape read
    back as "") and its summary (a NaN silhouette written as null)."""
    from clipmech.data import tables
    from clipmech.stages.plot_tsne_shapes import plot_tsne_shapes

    objects = pd.DataFrame(
        {
            "image_id": [0, 1, 1, 2, 3],
            "object_id": [1, 1, 2, 1, 1],
            "n_objects": [1, 2, 2, 1, 1],
            "shape": ["square", "circle", "triangle", "hexagon", "square"],
            "colour": ["red", "blue", "green", "pink", "red"],
        }
    )
    labels = shapes_labels(objects, 4)
    xy = np.random.default_rng(0).standard_normal((4, 2))
    tables.write_table(labels.assign(x=xy[:, 0], y=xy[:, 1]), str(tmp_path / "tsne.tsv"))
    tables.write_json({"perplexity": 3, "silhouette": {"colour": 0.5, "shape": float("nan")}}, str(tmp_path / "s.json"))
    read = pd.read_csv(tmp_path / "tsne.tsv", sep="\t", keep_default_na=False)
    assert read["colour"].tolist() == labels["colour"].tolist()
    figure = tmp_path / "tsne.png"
    plot_tsne_shapes(
        table=str(tmp_path / "tsne.tsv"), summary=str(tmp_path / "s.json"), out={"figure": str(figure)}, label="test"
    )
    assert figure.stat().st_size > 1000
