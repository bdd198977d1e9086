import json
import tracemalloc

import numpy as np
import pytest

from clipmech.data import datasets, shapes


def test_same_seed_gives_identical_bytes(tmp_path):
    spec = shapes.ShapesSpec(n_per_count=3, image_size=48, seed=11)
    shapes.build(tmp_path / "a", spec)
    shapes.build(tmp_path / "b", spec)
    for name in ("images.npy", "masks.npy", "objects.tsv", "spec.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_build_writes_in_chunks_the_bytes_of_the_dataset_saved_whole(tmp_path):
    """15 images in table chunks of 4 (the last one short) give the files of numpy.save / to_csv of synthesize."""
    spec = shapes.ShapesSpec(n_per_count=3, image_size=48, seed=11)
    images, masks, objects = shapes.synthesize(spec)
    whole = tmp_path / "whole"
    whole.mkdir()
    np.save(whole / "images.npy", images)
    np.save(whole / "masks.npy", masks)
    objects.to_csv(whole / "objects.tsv", sep="\t", index=False)
    shapes.build(tmp_path / "chunked", spec, chunk_images=4)
    for name in ("images.npy", "masks.npy", "objects.tsv"):
        assert (tmp_path / "chunked" / name).read_bytes() == (whole / name).read_bytes(), name
    meta = json.loads((tmp_path / "chunked" / "spec.json").read_text())
    assert meta["n_images"] == 15 and meta["sha256"] == datasets.dataset_hash(whole)
    assert sorted(p.name for p in (tmp_path / "chunked").iterdir()) == [
        "images.npy",
        "masks.npy",
        "objects.tsv",
        "spec.json",
    ]


def test_build_holds_a_chunk_not_the_dataset(tmp_path):
    """Peak traced memory of writing 200 images of 96 px (7.4 MB of images and masks) is under half of it.

    What stays is an image, the object rows of a chunk of 8 images and the 1 MiB blocks read to hash the
    files (about 2.4 MB in all).
    """
    spec = shapes.ShapesSpec(n_per_count=40, image_size=96, seed=0)
    dataset_bytes = spec.n_images * 96 * 96 * 4
    tracemalloc.start()
    try:
        shapes.build(tmp_path, spec, chunk_images=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < dataset_bytes / 2, (peak, dataset_bytes)
    assert datasets.load(tmp_path).n_images == 200


def test_writer_refuses_a_wrong_image_count_and_leaves_no_file(tmp_path):
    spec = shapes.ShapesSpec(n_per_count=1, image_size=32, seed=0)
    rendered = list(shapes.render(shapes.sample_scenes(spec), 32))
    for n_images, match in ((6, "hold 5 images, not the 6"), (4, "more than the 4")):
        with pytest.raises(ValueError, match=match):
            shapes.write_rendered(tmp_path, rendered, n_images, 32, chunk_images=2)
    with pytest.raises(ValueError, match="chunk_images must be >= 1"):
        shapes.write_rendered(tmp_path, rendered, 5, 32, chunk_images=0)
    with pytest.raises(ValueError, match=r"uint8 image of shape \(48, 48, 3\)"):
        shapes.write_rendered(tmp_path, rendered, 5, 48)
    assert list(tmp_path.iterdir()) == []


def test_other_seed_gives_other_images():
    a, _, _ = shapes.synthesize(shapes.ShapesSpec(n_per_count=3, image_size=48, seed=1))
    b, _, _ = shapes.synthesize(shapes.ShapesSpec(n_per_count=3, image_size=48, seed=2))
    assert not np.array_equal(a, b)


def test_masks_agree_with_object_table():
    spec = shapes.ShapesSpec(n_per_count=4, image_size=96, seed=5)
    images, masks, objects = shapes.synthesize(spec)
    assert images.shape == (20, 96, 96, 3) and masks.shape == (20, 96, 96)
    assert objects.groupby("image_id").size().tolist() == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4
    for row in objects.itertuples():
        mask = masks[row.image_id] == row.object_id
        ys, xs = np.nonzero(mask)
        assert row.area == mask.sum() > 0
        assert (row.bbox_x0, row.bbox_y0, row.bbox_x1, row.bbox_y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        # Every mask pixel has exactly the object's colour; the object sits in its grid cell.
        assert (images[row.image_id][mask] == shapes.RGB[row.colour]).all()
        r, c = shapes.CELLS[row.position]
        cell = 96 / 3
        assert c * cell <= xs.min() and xs.max() < (c + 1) * cell
        assert r * cell <= ys.min() and ys.max() < (r + 1) * cell
    # Background is white; object ids in each mask are exactly 0..n.
    for image_id, group in objects.groupby("image_id"):
        assert set(np.unique(masks[image_id])) == set(range(len(group) + 1))
        assert (images[image_id][masks[image_id] == 0] == 255).all()
        for column in ("position", "shape", "colour"):
            assert group[column].is_unique


def test_feature_counts():
    _, _, objects = shapes.synthesize(shapes.ShapesSpec(n_per_count=2, image_size=48, seed=0))
    counts = shapes.feature_counts(objects, 10)
    assert counts.shape == (10, 16)
    n_objects = objects.groupby("image_id").size().to_numpy()
    for block in (slice(0, 5), slice(5, 11), slice(11, 16)):
        np.testing.assert_array_equal(counts[:, block].sum(axis=1), n_objects)
    first = objects[objects["image_id"] == 0].iloc[0]
    assert counts[0, shapes.FEATURES.index(first["shape"])] == 1


def test_caption_mentions_every_object():
    objects = [
        {"shape": "square", "colour": "red", "position": "top-left"},
        {"shape": "circle", "colour": "blue", "position": "center"},
    ]
    assert shapes.caption(objects) == "a red square at the top left and a blue circle in the center"
    rng = np.random.default_rng(0)
    for _ in range(20):
        text = shapes.caption(objects, rng, p_drop=0.9)
        assert text.count(" and ") == 1


def test_bad_spec_is_rejected():
    with pytest.raises(ValueError, match="max_objects"):
        shapes.ShapesSpec(min_objects=2, max_objects=6)


def test_missing_dataset_says_where_it_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        datasets.load(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["images.npy", "masks.npy", "objects.tsv"])
def test_a_data_file_changed_in_place_is_refused(tmp_path, name):
    shapes.build(tmp_path, shapes.ShapesSpec(n_per_count=1, image_size=32, seed=0))
    assert datasets.load(tmp_path).n_images == 5
    path = tmp_path / name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one flipped bit, same size: numpy and pandas read it without complaint
    path.write_bytes(bytes(data))
    with pytest.raises(
        ValueError, match=rf"dataset {tmp_path}: .* have sha256 [0-9a-f]{{64}}, but .*spec.json records"
    ):
        datasets.load(tmp_path)
