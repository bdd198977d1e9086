"""The concept matrix of every dataset kind (clipmech.data.concepts). Natural-image datasets are built here as
stand-ins with the attributes concept_matrix reads (spec, manifest, classes, n_images)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from toys import natural_stand_in as natural

from clipmech.analyses.concepts import image_presence
from clipmech.data import datasets, shapes
from clipmech.data.concepts import Concepts, concept_matrix


def test_shapes_equals_image_presence(tiny_dataset):
    data = datasets.load(tiny_dataset)
    concepts = concept_matrix(data)
    np.testing.assert_array_equal(concepts.present_NF, image_presence(data.objects, data.n_images))
    assert concepts.present_NF.dtype == bool
    assert concepts.names == shapes.FEATURES
    assert concepts.source == "Shapes features"


@pytest.mark.parametrize(("kind", "source"), [("imagenet", "ImageNet classes"), ("imagefolder", "folder classes")])
def test_classes_one_hot_and_unlabelled_rows_empty(kind, source):
    concepts = concept_matrix(natural(kind, labels=[2, 0, -1, 2], class_names=("cat", "dog", "fish")))
    expected = np.array([[0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 1]], dtype=bool)
    np.testing.assert_array_equal(concepts.present_NF, expected)
    assert concepts.names == ("cat", "dog", "fish")
    assert concepts.source == source


def test_label_outside_classes_raises():
    with pytest.raises(ValueError, match="outside -1..1"):
        concept_matrix(natural("imagenet", labels=[0, 2], class_names=("cat", "dog")))


def test_manifest_out_of_order_raises():
    data = natural("imagenet", labels=[0, 1], class_names=("cat", "dog"))
    data.manifest = data.manifest.iloc[::-1]
    with pytest.raises(ValueError, match="index order"):
        concept_matrix(data)


def test_captions_use_coco_categories_when_present():
    categories = [np.array([0, 2]), np.array([], dtype=np.int64), [1]]
    data = natural("captions", captions=[["a"], ["b"], ["c"]], categories=categories, class_names=("a", "b", "c"))
    concepts = concept_matrix(data, words=["ignored"])
    np.testing.assert_array_equal(concepts.present_NF, [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    assert concepts.names == ("a", "b", "c")
    assert concepts.source == "COCO categories"


def test_captions_match_words_whole_and_case_insensitive():
    captions = [
        ["A Dog runs.", "grass"],
        ["hotdog stand", "the dogs"],
        ["a red  Car", "no"],
        ["a red"],
        None,
    ]
    concepts = concept_matrix(natural("captions", captions=captions), words=["dog", " red car ", "grass", "red"])
    assert concepts.names == ("dog", "red car", "grass", "red")
    assert concepts.source == "caption words"
    expected = [[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    np.testing.assert_array_equal(concepts.present_NF, np.array(expected, dtype=bool))


@pytest.mark.parametrize("words", [None, [], ["  "]])
def test_captions_without_categories_or_words_raise(words):
    with pytest.raises(ValueError, match="word list"):
        concept_matrix(natural("captions", captions=[["a dog"]]), words=words)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind 'video'"):
        concept_matrix(SimpleNamespace(spec={"kind": "video"}))


def test_concepts_checks_shape_and_is_read_only():
    with pytest.raises(ValueError, match="columns"):
        Concepts(np.zeros((2, 3), dtype=bool), ("a", "b"), "x")
    with pytest.raises(ValueError, match="bool"):
        Concepts(np.zeros((2, 2)), ("a", "b"), "x")
    concepts = Concepts(np.zeros((2, 2), dtype=bool), ("a", "b"), "x")
    with pytest.raises(ValueError):
        concepts.present_NF[0, 0] = True


def test_manifest_read_back_from_parquet(tmp_path):
    """Parquet list columns come back as numpy arrays (and a missing list as None); both are read."""
    data = natural(
        "captions",
        captions=[["A cat."], None, ["two cats", "a cat"]],
        categories=[[], None, [1]],
        class_names=("dog", "cat"),
    )
    data.manifest.to_parquet(tmp_path / "manifest.parquet")
    data.manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    np.testing.assert_array_equal(concept_matrix(data).present_NF, [[0, 0], [0, 0], [0, 1]])
    data.manifest["categories"] = [np.array([], dtype=np.int64)] * 3
    np.testing.assert_array_equal(concept_matrix(data, words=["cat"]).present_NF, [[1], [0], [1]])
