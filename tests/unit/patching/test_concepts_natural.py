"""Concept AUROC on natural-image datasets (methods.md Sec. 8.5): the texts of each kind and their concepts, the
table written in parts, and the concept_auroc stage on the tiny Shapes images as photographs in class folders (an
imagefolder) and behind a captions file, against scikit-learn's AUROC of activations computed image by image."""

from types import SimpleNamespace

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from toys import COUNTS, shapes_as_photographs
from toys import natural_stand_in as stand_in

from clipmech.data import datasets, loader, shapes, tables
from clipmech.data.concepts import concept_matrix
from clipmech.models import loading
from clipmech.models.loading import ModelSpec
from clipmech.patching import concepts

RANDOM = ModelSpec(name="random", architecture="clipmech-vit-tiny", pretrained=None)
WORDS = ["one", "two", "three", "four", "five", "red", "shapes"]


@pytest.mark.parametrize("kind", ["imagenet", "imagefolder"])
def test_texts_of_classes_are_the_prompts_of_the_labelled_images(kind):
    data = stand_in(kind, labels=[2, 0, -1, 2], class_names=("cat", "dog", "fish"))
    matrix = concept_matrix(data)
    texts = concepts.text_inputs(data, matrix)
    assert texts.texts == ("a photo of a fish.", "a photo of a cat.", "a photo of a fish.")
    np.testing.assert_array_equal(texts.images, [0, 1, 3])  # the unlabelled image has no text
    np.testing.assert_array_equal(texts.present_NF, matrix.present_NF[[0, 1, 3]])
    assert concepts.concept_types(matrix) == ("class",) * 3


def test_texts_of_captions_are_the_first_captions_and_their_words():
    captions = [["A Dog and a cat", "a red car"], [], ["hotdogs", "a dog"], ["A RED car."]]
    data = stand_in("captions", captions=captions)
    matrix = concept_matrix(data, words=["dog", "red car"])
    np.testing.assert_array_equal(matrix.present_NF, [[1, 1], [0, 0], [1, 0], [0, 1]])  # any caption
    texts = concepts.text_inputs(data, matrix)
    assert texts.texts == ("A Dog and a cat", "hotdogs", "A RED car.")
    np.testing.assert_array_equal(texts.images, [0, 2, 3])  # the image without captions has no text
    np.testing.assert_array_equal(texts.present_NF, [[1, 0], [0, 0], [0, 1]])  # the first caption's words
    assert concepts.concept_types(matrix) == ("word", "word")


def test_texts_of_coco_captions_hold_their_images_categories():
    categories = [np.array([0, 2]), np.array([], dtype=np.int64), [1]]
    data = stand_in("captions", captions=[["a"], ["b"], ["c"]], categories=categories, class_names=("x", "y", "z"))
    matrix = concept_matrix(data)
    texts = concepts.text_inputs(data, matrix)
    assert texts.texts == ("a", "b", "c")
    np.testing.assert_array_equal(texts.present_NF, matrix.present_NF)
    assert concepts.concept_types(matrix) == ("category",) * 3


def test_texts_of_shapes_are_the_captions_of_their_objects(tiny_dataset):
    data = datasets.load(tiny_dataset)
    matrix = concept_matrix(data)
    texts = concepts.text_inputs(data, matrix)
    assert texts.texts == tuple(concepts.image_captions(data.objects, data.n_images))
    np.testing.assert_array_equal(texts.present_NF, matrix.present_NF)
    assert concepts.concept_types(matrix) == shapes.FEATURE_TYPES


def test_texts_of_a_kind_without_texts_are_refused():
    data = SimpleNamespace(spec={"kind": "video"})
    matrix = SimpleNamespace(source="videos")
    with pytest.raises(ValueError, match="no texts for the concept AUROC of dataset kind 'video'"):
        concepts.text_inputs(data, matrix)
    with pytest.raises(ValueError, match="no concept type for concepts of source 'videos'"):
        concepts.concept_types(matrix)


def test_text_activations_run_each_distinct_text_once(vit):
    tokenizer = open_clip.get_tokenizer("clipmech-vit-tiny")
    texts = ["a photo of a cat.", "a photo of a dog.", "a photo of a cat.", "a red square"]
    site = "text.blocks.1.mlp.hook_post"
    shared = concepts.text_unit_activations(vit, tokenizer, texts, [site], batch_size=2)[site]
    each = concepts.caption_unit_activations(vit, tokenizer, texts, [site], batch_size=1)[site]
    np.testing.assert_allclose(shared, each, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(shared[0], shared[2])


def test_counts_of_site_parts_are_the_counts_of_the_whole_table():
    rng = np.random.default_rng(0)
    present_NF = rng.random((6, 3)) < 0.5
    present_NF[0], present_NF[1] = True, False
    names, types = ("cat", "dog", "fish"), ("class",) * 3
    parts = [
        concepts.auroc_table(tower, site, layer, rng.random((4, 3)) * 0.3 + 0.7, present_NF, names, types)
        for tower, site, layer in (("visual", "v0", 0), ("visual", "v1", 1), ("text", "t0", 0))
    ]
    whole = pd.concat(parts, ignore_index=True)
    expected = concepts.selective_counts(whole, 0.9)
    joined = concepts.tower_counts(pd.concat([concepts.site_counts(part, 0.9) for part in parts], ignore_index=True))
    pd.testing.assert_frame_equal(joined, expected)
    assert list(expected["concept"].unique()) == list(names)
    with pytest.raises(ValueError, match="3 AUROC columns, 3 presence columns, 2 names"):
        concepts.auroc_table("visual", "v0", 0, np.zeros((1, 3)), present_NF, names[:2], types)


def test_table_parts_write_the_bytes_of_the_whole_table(tmp_path):
    parts = [
        pd.DataFrame({"concept": ["a", "b"], "auroc": [0.5, np.nan], "n": [1, 2]}),
        pd.DataFrame({"concept": ["c"], "auroc": [1 / 3], "n": [3]}),
    ]
    tables.write_table(pd.concat(parts, ignore_index=True), tmp_path / "whole.tsv")
    tables.write_table_parts(iter(parts), str(tmp_path / "parts.tsv"))
    assert (tmp_path / "parts.tsv").read_bytes() == (tmp_path / "whole.tsv").read_bytes()
    with pytest.raises(ValueError, match="differ in their columns"):
        tables.write_table_parts(iter([parts[0], parts[1].rename(columns={"n": "m"})]), str(tmp_path / "bad.tsv"))
    with pytest.raises(ValueError, match="no table parts"):
        tables.write_table_parts(iter([]), str(tmp_path / "none.tsv"))
    assert not (tmp_path / "bad.tsv").exists() and not (tmp_path / "none.tsv").exists()


@pytest.fixture(scope="module")
def photographs(tmp_path_factory):
    """15 Shapes images (3 per object count) as PNGs in one folder per count, indexed as an imagefolder and, with a
    caption naming the count and the first object's colour, as a captions dataset."""
    tmp, raw = tmp_path_factory.mktemp("natural-auroc"), tmp_path_factory.mktemp("natural-auroc-raw")
    synthetic = tmp / "shapes"
    shapes.build(synthetic, shapes.ShapesSpec(n_per_count=3, image_size=64, seed=5))
    data = datasets.load(synthetic)
    first = data.objects.sort_values(["image_id", "object_id"]).groupby("image_id").first()
    out = shapes_as_photographs(data, raw, tmp, lambda i, count: f"{COUNTS[count - 1]} {first.loc[i, 'colour']} shapes")
    return tmp, out


@pytest.mark.parametrize("kind", ["imagefolder", "captions"])
def test_concept_auroc_on_natural_images(photographs, kind, tmp_path, caplog):
    from clipmech.stages.concept_auroc import concept_auroc
    from clipmech.stages.plot_concepts import best_aurocs, plot_concepts

    _, directories = photographs
    words = WORDS if kind == "captions" else None
    out = {"auroc": str(tmp_path / "auroc.tsv"), "summary": str(tmp_path / "summary.tsv")}
    with caplog.at_level("INFO"):
        concept_auroc(
            model=RANDOM,
            dataset_dir=str(directories[kind]),
            out=out,
            concepts={"batch_size": 4, "threshold": 0.9},
            device="cpu",
            threads=1,
            words=words,
        )
    table = pd.read_csv(out["auroc"], sep="\t")
    assert tuple(table.columns) == concepts.AUROC_COLUMNS
    data = datasets.load(directories[kind])
    matrix = concept_matrix(data, words=words)
    names = list(matrix.names)
    assert names == (WORDS if kind == "captions" else sorted(f"{count} objects" for count in COUNTS))
    assert set(table["concept_type"]) == {"word" if kind == "captions" else "class"}
    assert (table["tower"] == "visual").sum() == (table["tower"] == "text").sum() == 2 * 256 * len(names)
    assert ((table["n_pos"] + table["n_neg"]) == data.n_images).all()  # every image is labelled and captioned
    if kind == "captions":  # "shapes" is in every caption: no negatives, no AUROC
        assert table.loc[table["concept"] == "shapes", "auroc"].isna().all()

    # A second implementation: scikit-learn's AUROC of activations computed image by image, in memory.
    clip, preprocess, tokenizer = loading.load(RANDOM, torch.device("cpu"))
    pixels = torch.stack([preprocess(loader.open_rgb(data.root / row.source)) for row in data.manifest.itertuples()])
    texts = concepts.text_inputs(data, matrix)
    expected = {
        ("visual", "visual.blocks.1.mlp.hook_post"): (pixels, matrix.present_NF),
        ("text", "text.blocks.0.mlp.hook_post"): (list(texts.texts), texts.present_NF),
    }
    units = np.random.default_rng(0).choice(256, size=12, replace=False)
    for (tower, site), (inputs, present_NF) in expected.items():
        if tower == "visual":
            acts_NU = concepts.image_unit_activations(clip, inputs, [site], batch_size=1)[site]
        else:
            acts_NU = concepts.caption_unit_activations(clip, tokenizer, inputs, [site], batch_size=1)[site]
        written = table[table["site"] == site].set_index(["unit", "concept"])["auroc"]
        for f, name in enumerate(names):
            y_N = present_NF[:, f]
            for u in units:
                want = roc_auc_score(y_N, acts_NU[:, u]) if 0 < y_N.sum() < y_N.size else np.nan
                np.testing.assert_allclose(written.loc[(u, name)], want, atol=2e-5, err_msg=f"{site} {u} {name}")

    summary = pd.read_csv(out["summary"], sep="\t")
    pd.testing.assert_frame_equal(summary, concepts.selective_counts(table, 0.9), check_dtype=False)
    assert f"{data.n_images} images" in caplog.text and matrix.source in caplog.text

    best, n_concepts = best_aurocs(out["auroc"], chunk_rows=1000)  # parts split units: their maxima are combined
    expected_best = table.groupby(["tower", "site", "layer", "unit"], sort=False)["auroc"].max().dropna()
    np.testing.assert_allclose(best["auroc"], expected_best.to_numpy())
    assert n_concepts == len(names)
    figure = tmp_path / "auroc.png"
    plot_concepts(auroc=out["auroc"], out={"auroc_figure": str(figure)}, threshold=0.9, label="test")
    assert figure.read_bytes()[:4] == b"\x89PNG"
