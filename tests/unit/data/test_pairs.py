"""Shapes minimal pairs for causal tracing (clipmech.data.pairs; methods.md Sec. 8)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clipmech.data import datasets, pairs, shapes
from clipmech.stages.synthesize_pairs import synthesize_pairs

FILES = ("images.npy", "masks.npy", "objects.tsv", "pairs.tsv", "spec.json")
ATTRIBUTES = ("shape", "colour", "position")


@pytest.fixture(scope="module")
def dataset():
    """12 scenes at 80 px: cells of 26.67 px, so the position moves round the cell offset."""
    return pairs.synthesize(pairs.PairsSpec(n_scenes=12, image_size=80, seed=3))


def scene_objects(objects: pd.DataFrame, image_id: int) -> list[dict]:
    return objects[objects["image_id"] == image_id].sort_values("object_id").to_dict("records")


def without(row: dict, *keys: str) -> dict:
    """An object row without its image id and ``keys``."""
    return {k: v for k, v in row.items() if k not in ("image_id", *keys)}


def test_same_seed_gives_identical_bytes(tmp_path):
    spec = pairs.PairsSpec(n_scenes=3, image_size=32, seed=1)
    pairs.build(tmp_path / "a", spec)
    pairs.build(tmp_path / "b", spec)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = pairs.synthesize(pairs.PairsSpec(n_scenes=3, image_size=32, seed=2))
    assert not np.array_equal(other[0], np.load(tmp_path / "a" / "images.npy"))


def test_layout_of_images_and_pairs(dataset):
    images, masks, objects, table = dataset
    assert images.shape == (60, 80, 80, 3) and masks.shape == (60, 80, 80) and images.dtype == np.uint8
    assert list(objects.columns) == list(shapes.synthesize(shapes.ShapesSpec(n_per_count=1, image_size=32))[2].columns)
    assert (objects.groupby("image_id").size() == 2).all() and (objects["n_objects"] == 2).all()
    assert list(table.columns) == list(pairs.PAIR_COLUMNS)
    assert table["pair_id"].tolist() == list(range(48))
    assert table["kind"].tolist() == list(pairs.KINDS) * 12
    np.testing.assert_array_equal(table["clean"], 5 * table["scene"])
    np.testing.assert_array_equal(table["corrupt"], table["clean"] + np.tile([1, 2, 3, 4], 12))
    for image_id in table["clean"].unique():
        base = scene_objects(objects, image_id)
        for attribute in ATTRIBUTES:
            assert base[0][attribute] != base[1][attribute]
    changed = table[table["kind"].isin(["colour", "shape"])]["object"]
    assert set(changed) == {1, 2}  # the changed object is drawn, not always the first


def test_variant_changes_the_named_attribute_of_the_named_object_only(dataset):
    _, _, objects, table = dataset
    for row in table.itertuples():
        clean, corrupt = scene_objects(objects, row.clean), scene_objects(objects, row.corrupt)
        if row.kind == "binding":
            assert row.object == 0
            assert [o["colour"] for o in corrupt] == [clean[1]["colour"], clean[0]["colour"]]
            assert row.clean_value == f"{clean[0]['colour']},{clean[1]['colour']}"
            assert row.corrupt_value == f"{clean[1]['colour']},{clean[0]['colour']}"
            for before, after in zip(clean, corrupt):
                assert without(before, "colour") == without(after, "colour")  # same geometry
            continue
        for before, after in zip(clean, corrupt):
            differing = {a for a in ATTRIBUTES if before[a] != after[a]}
            if before["object_id"] == row.object:
                assert differing == {row.kind}
                assert (before[row.kind], after[row.kind]) == (row.clean_value, row.corrupt_value)
            else:
                assert without(before) == without(after)  # the other object, bounding box and area included
        changed = clean[row.object - 1]
        if row.kind == "colour":
            assert row.corrupt_value not in {o["colour"] for o in clean}
            assert without(changed, "colour") == without(corrupt[row.object - 1], "colour")  # same geometry
        if row.kind == "shape":
            assert row.corrupt_value not in {o["shape"] for o in clean}
        if row.kind == "position":
            assert changed["position"] in pairs.CORNERS and row.corrupt_value in pairs.CORNERS
            assert row.corrupt_value not in {o["position"] for o in clean}


def test_pixels_differ_only_inside_the_changed_objects(dataset):
    images, masks, _, table = dataset
    for row in table.itertuples():
        differ_HW = (images[row.clean] != images[row.corrupt]).any(axis=-1)
        before_HW, after_HW = masks[row.clean], masks[row.corrupt]
        if row.kind in ("colour", "binding"):
            np.testing.assert_array_equal(before_HW, after_HW)
            allowed_HW = before_HW > 0 if row.kind == "binding" else before_HW == row.object
            np.testing.assert_array_equal(differ_HW, allowed_HW)  # every pixel of a recoloured object changes
        else:
            allowed_HW = (before_HW == row.object) | (after_HW == row.object)
            assert differ_HW.any() and not (differ_HW & ~allowed_HW).any()
            other = 3 - row.object
            np.testing.assert_array_equal(before_HW == other, after_HW == other)


def test_position_moves_the_object_by_whole_pixels_of_the_cell_offset(dataset):
    _, masks, _, table = dataset
    cell = 80 / 3
    for row in table[table["kind"] == "position"].itertuples():
        (row0, col0), (row1, col1) = shapes.CELLS[row.clean_value], shapes.CELLS[row.corrupt_value]
        dy, dx = round((row1 - row0) * cell), round((col1 - col0) * cell)
        ys, xs = np.nonzero(masks[row.clean] == row.object)
        moved_HW = np.zeros_like(masks[row.clean], dtype=bool)
        moved_HW[ys + dy, xs + dx] = True
        np.testing.assert_array_equal(moved_HW, masks[row.corrupt] == row.object)  # an exact translate


def test_captions_describe_the_objects_and_keep_their_word_count(dataset):
    _, _, objects, table = dataset
    for row in table.itertuples():
        assert row.caption == shapes.caption(scene_objects(objects, row.clean))
        assert row.foil == shapes.caption(scene_objects(objects, row.corrupt))
        assert row.caption != row.foil and len(row.caption.split()) == len(row.foil.split()), row


def test_stage_writes_a_dataset_that_loads_with_its_pairs(tmp_path, dataset):
    synthesize_pairs(data=tmp_path, spec={"kind": "pairs", "n_scenes": 12, "image_size": 80, "seed": 3})
    data = datasets.load(tmp_path)
    images, masks, objects, table = dataset
    assert data.spec["kind"] == "pairs" and data.spec["n_images"] == 60 and data.spec["n_pairs"] == 48
    assert data.spec["sha256"] == datasets.dataset_hash(tmp_path, "pairs") != datasets.dataset_hash(tmp_path)
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.masks, masks)
    pd.testing.assert_frame_equal(data.objects, objects)
    pd.testing.assert_frame_equal(data.pairs, table)

    shapes.build(tmp_path / "shapes", shapes.ShapesSpec(n_per_count=1, image_size=32))
    assert datasets.load(tmp_path / "shapes").pairs is None


def test_an_edited_pairs_table_is_refused(tmp_path):
    pairs.build(tmp_path, pairs.PairsSpec(n_scenes=2, image_size=32))
    path = tmp_path / "pairs.tsv"
    path.write_text(path.read_text().replace("\tcolour\t", "\tshape\t", 1))
    with pytest.raises(ValueError, match=r"pairs\.tsv\) have sha256 [0-9a-f]{64}, but .*spec.json records"):
        datasets.load(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_scenes": 0}, "n_scenes must be >= 1"),
        ({"n_scenes": 2, "image_size": 8}, "image_size must be >= 16"),
        ({"n_scenes": 2, "seed": -1}, "seed must be >= 0"),
    ],
)
def test_bad_spec_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pairs.PairsSpec(**kwargs)
