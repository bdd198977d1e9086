"""Natural-image datasets through the DAG: one dataset of each kind beside the tiny config, built from the
photographs inside scikit-image's wheel (nothing downloads), indexed and classified zero-shot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import skimage
import yaml
from snakemake_cli import TINY, planned_jobs, snakemake

from clipmech.data import datasets

pytestmark = pytest.mark.integration

#: Photographs shipped in scikit-image's wheel, by the class folder they go in.
PHOTOS = {
    "cat": "chelsea.png",
    "person": "astronaut.png",
    "cup": "coffee.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
}
#: 1000 made-up WordNet ids, sorted: ImageNet class i is WNIDS[i].
WNIDS = [f"n{10000000 + 7 * i:08d}" for i in range(1000)]
TARGETS = [
    "results/zeroshot/tiny-vit/photos/accuracy.tsv",
    "results/zeroshot/tiny-vit/imnet/accuracy.tsv",
    "results/datasets/captioned/data",
]


def photo(name: str) -> Path:
    return Path(skimage.__file__).parent / "data" / name


def write_trees(root: Path) -> None:
    """An imagefolder tree, a partial ImageNet val copy in class folders, and an open_clip captions CSV."""
    for label, name in PHOTOS.items():
        (root / "photos" / label).mkdir(parents=True)
        shutil.copy(photo(name), root / "photos" / label / name)
    for wnid in WNIDS:
        (root / "imagenet" / "val" / wnid).mkdir(parents=True)
    for i, name in enumerate(PHOTOS.values()):
        suffix = Path(name).suffix
        shutil.copy(photo(name), root / "imagenet" / "val" / WNIDS[7 * i] / f"ILSVRC2012_val_{i + 1:08d}{suffix}")
    rows = [{"filepath": f"photos/{label}/{name}", "title": f"a photo of a {label}"} for label, name in PHOTOS.items()]
    pd.DataFrame(rows).to_csv(root / "captions.csv", sep="\t", index=False)


def natural_config(root: Path) -> Path:
    config = {
        "datasets": {
            "photos": {"kind": "imagefolder", "root": str(root / "photos")},
            "imnet": {"kind": "imagenet", "root": str(root / "imagenet"), "split": "val", "n_images": 4, "seed": 1},
            "captioned": {"kind": "captions", "path": str(root / "captions.csv")},
        },
        "zeroshot": {"models": ["tiny-vit"], "templates": ["a photo of a {}.", "a picture of a {}."]},
    }
    path = root / "natural.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def natural_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("natural-run")
    data = tmp_path_factory.mktemp("natural-data")
    write_trees(data)
    extra = natural_config(data)
    planned = planned_jobs("--configfile", TINY, extra, workdir=workdir)
    snakemake(*TARGETS, "--cores", "2", "--configfile", TINY, extra, workdir=workdir)
    return workdir, data, extra, planned


def test_the_full_dag_plans_every_natural_dataset(natural_run):
    _, _, _, planned = natural_run
    assert planned["index_images"] == 3
    assert planned["zero_shot_classifier"] == planned["zero_shot"] == 2
    assert "plot_dataset" not in planned or planned["plot_dataset"] == 1  # the Shapes dataset only


def test_manifests_of_each_kind(natural_run):
    workdir, data, _, _ = natural_run
    photos = datasets.load(workdir / "results/datasets/photos/data")
    assert photos.spec["kind"] == "imagefolder" and photos.n_images == len(PHOTOS)
    assert sorted(photos.classes["name"]) == sorted(PHOTOS)
    imnet = datasets.load(workdir / "results/datasets/imnet/data")
    assert imnet.n_images == 4 and len(imnet.classes) == 1000
    assert set(imnet.manifest["label"]) <= {7 * i for i in range(len(PHOTOS))}
    captioned = datasets.load(workdir / "results/datasets/captioned/data")
    assert captioned.n_images == len(PHOTOS) and captioned.manifest["captions"].map(len).tolist() == [1] * len(PHOTOS)
    # Nothing was written into the user's folders.
    assert not any(p.name.endswith((".parquet", ".json")) for p in data.rglob("*"))


def test_zero_shot_tables(natural_run):
    workdir, _, _, _ = natural_run
    for name, n, n_classes in (("photos", len(PHOTOS), len(PHOTOS)), ("imnet", 4, 1000)):
        accuracy = pd.read_csv(workdir / f"results/zeroshot/tiny-vit/{name}/accuracy.tsv", sep="\t")
        assert accuracy[["model", "dataset", "n", "n_classes", "n_templates"]].values.tolist() == [
            ["tiny-vit", name, n, n_classes, 2]
        ]
        assert 0 <= accuracy.loc[0, "top1"] <= accuracy.loc[0, "top5"] <= 1
        per_class = pd.read_csv(workdir / f"results/zeroshot/tiny-vit/{name}/per_class.tsv", sep="\t")
        assert len(per_class) == n_classes and per_class["n"].sum() == n


def test_a_second_run_plans_nothing(natural_run):
    workdir, _, extra, _ = natural_run
    assert planned_jobs(*TARGETS, "--configfile", TINY, extra, workdir=workdir) == {}


def test_new_templates_rerun_the_classifiers_only(natural_run, tmp_path):
    workdir, data, _, _ = natural_run
    config = yaml.safe_load(natural_config(data).read_text())
    config["zeroshot"]["templates"] = ["itap of a {}."]
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump(config))
    assert planned_jobs(*TARGETS, "--configfile", TINY, path, workdir=workdir) == {
        "zero_shot_classifier": 2,
        "zero_shot": 2,
    }


def test_natural_datasets_in_the_analyses_are_refused_at_parse_time(natural_run, tmp_path):
    _, data, _, _ = natural_run
    config = yaml.safe_load(natural_config(data).read_text())
    config["analyses"] = {"models": ["tiny-vit"], "datasets": ["photos"]}
    path = tmp_path / "refused.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", TINY, path, workdir=tmp_path, check=False)
    assert result.returncode != 0
    assert (
        "analyses.datasets names natural-image datasets ['photos'] (kind imagefolder)" in result.stderr + result.stdout
    )
