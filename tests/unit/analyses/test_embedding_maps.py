"""Unit tests of clipmech.analyses.embedding_maps (t-SNE, labels) and of the t-SNE stages: the CIFAR-10 map of
a dataset of kind cifar10 indexed from a fake local copy."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from toys import CIFAR10_CLASSES, fake_cifar10

from clipmech.analyses import embedding_maps
from clipmech.analyses.embedding_maps import cluster_separation, shapes_labels, tsne_map, tsne_rows
from clipmech.data import natural


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


def test_tsne_rows_cap_the_images_with_a_seeded_subset():
    np.testing.assert_array_equal(tsne_rows(7, seed=0, limit=7), np.arange(7))
    rows = tsne_rows(100, seed=4, limit=30)
    assert rows.dtype == np.int64 and rows.size == 30 and np.unique(rows).size == 30 and (np.diff(rows) > 0).all()
    assert rows.max() < 100
    np.testing.assert_array_equal(rows, tsne_rows(100, seed=4, limit=30))
    assert not np.array_equal(rows, tsne_rows(100, seed=5, limit=30))
    assert tsne_rows(10**6, seed=0).size == embedding_maps.MAX_TSNE_IMAGES
    with pytest.raises(ValueError, match="at least 1"):
        tsne_rows(5, seed=0, limit=0)


def test_tsne_shapes_stage_maps_a_capped_subset(tmp_path, monkeypatch):
    from clipmech.data import shapes
    from clipmech.models.loading import ModelSpec
    from clipmech.stages.tsne_shapes import tsne_shapes
    from clipmech.stores import activation_extraction, activations

    dataset = tmp_path / "data"
    shapes.build(dataset, shapes.ShapesSpec(n_per_count=4, image_size=64, seed=5))
    store = activation_extraction.extract(
        ModelSpec("rand", "clipmech-vit-tiny", None), dataset, tmp_path / "a.zarr", batch_size=8, device="cpu",
        code="test-code",
    )  # fmt: skip

    def run(name):
        out = {"table": str(tmp_path / f"{name}.tsv"), "summary": str(tmp_path / f"{name}.json")}
        tsne_shapes(store=str(store), dataset_dir=str(dataset), out=out, tsne={"perplexity": 3}, seed=2)
        return pd.read_csv(out["table"], sep="\t", keep_default_na=False)

    whole = run("whole")
    assert whole["image_id"].tolist() == list(range(20))
    monkeypatch.setattr(embedding_maps, "MAX_TSNE_IMAGES", 12)
    capped = run("capped")
    rows = tsne_rows(20, seed=2, limit=12)
    assert capped["image_id"].tolist() == rows.tolist()
    emb_NE = activations.open_store(store)["embedding"].values[rows]
    np.testing.assert_allclose(capped[["x", "y"]].to_numpy(), tsne_map(emb_NE, 3, seed=2), rtol=1e-5)


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


def test_cifar10_stage_on_a_cifar10_dataset(tmp_path, monkeypatch):
    from clipmech.models.loading import ModelSpec
    from clipmech.stages.plot_tsne_cifar10 import plot_tsne_cifar10
    from clipmech.stages.tsne_cifar10 import tsne_cifar10

    root = fake_cifar10(tmp_path / "cifar", monkeypatch, rows=4, test_rows=12)
    natural.write_natural_dataset(tmp_path / "data", {"kind": "cifar10", "root": str(root), "n_images": 10})
    manifest = pd.read_parquet(tmp_path / "data" / "manifest.parquet")
    out = {"table": str(tmp_path / "out" / "cifar10.tsv"), "summary": str(tmp_path / "out" / "cifar10.json")}
    arguments = dict(
        model=ModelSpec("random-vit", "clipmech-vit-tiny", None),
        out=out,
        tsne={"perplexity": 3},
        seed=0,
        device="cpu",
        batch_size=4,
        threads=1,
    )
    tsne_cifar10(dataset_dir=str(tmp_path / "data"), **arguments)
    table = pd.read_csv(out["table"], sep="\t")
    assert table["label"].tolist() == manifest["label"].tolist()  # every image of the dataset, in its order
    assert (table["class"] == np.asarray(CIFAR10_CLASSES)[table["label"]]).all()
    summary = json.loads(Path(out["summary"]).read_text())
    assert summary["classes"] == CIFAR10_CLASSES and (summary["split"], summary["n_images"]) == ("test", 10)
    assert summary["n_dataset_images"] == 10
    monkeypatch.setattr(embedding_maps, "MAX_TSNE_IMAGES", 6)
    tsne_cifar10(dataset_dir=str(tmp_path / "data"), **arguments)
    capped = pd.read_csv(out["table"], sep="\t")
    assert capped["label"].tolist() == manifest["label"].to_numpy()[tsne_rows(10, seed=0, limit=6)].tolist()
    summary = json.loads(Path(out["summary"]).read_text())
    assert (summary["n_images"], summary["n_dataset_images"]) == (6, 10)
    figure = tmp_path / "out" / "cifar10.png"
    plot_tsne_cifar10(table=out["table"], summary=out["summary"], out={"figure": str(figure)}, label="random-vit")
    assert figure.stat().st_size > 1000
    folder = tmp_path / "folder"
    (folder / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "a" / "x.png")
    natural.write_natural_dataset(tmp_path / "folder-data", {"kind": "imagefolder", "root": str(folder)})
    with pytest.raises(
        ValueError, match="tsne.cifar10: .* is a dataset of kind imagefolder; .* needs one of kind cifar10"
    ):
        tsne_cifar10(dataset_dir=str(tmp_path / "folder-data"), **arguments)


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
