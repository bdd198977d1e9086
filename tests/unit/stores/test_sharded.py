"""A store extracted in parts (clipmech.stores.base.begin_parts / begin_part / publish_parts) equals one
extracted by one writer byte for byte; a killed part resumes alone; a part of other provenance is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from toys import die_on_region_write, record_region_writes

from clipmech.models.loading import ModelSpec
from clipmech.stores import activation_extraction, base

RANDOM = ModelSpec("rand", "clipmech-vit-tiny", None)
# 10 images in chunks of 2: parts of 3 hold images 0-3, 4-7 and 8-9. An extra site has its own variable.
SETTINGS = {
    "batch_size": 2,
    "device": "cpu",
    "sites": (activation_extraction.MLP_PATTERN, "visual.blocks.1.hook_resid_post"),
}


def files(store: Path) -> dict[str, bytes]:
    """Every file of a store by its path in it, with its bytes."""
    return {
        path.relative_to(store).as_posix(): path.read_bytes() for path in sorted(store.rglob("*")) if path.is_file()
    }


@pytest.fixture(scope="module")
def one_writer(tmp_path_factory, tiny_dataset):
    """The store one writer extracts (extraction.parts = 1)."""
    store = tmp_path_factory.mktemp("one-writer") / "s.zarr"
    return activation_extraction.extract(RANDOM, tiny_dataset, store, code="c", **SETTINGS)


def in_parts(store, tiny_dataset, parts=range(3), code="c"):
    for part in parts:
        activation_extraction.extract_part(RANDOM, tiny_dataset, store, part, 3, code=code, **SETTINGS)


@pytest.mark.parametrize(
    ("n_images", "batch_size", "parts"), [(10, 2, 3), (10, 3, 3), (10, 3, 4), (1, 5, 2), (0, 4, 2), (100, 7, 1)]
)
def test_parts_tile_the_images_in_whole_chunks(n_images, batch_size, parts):
    ranges = [base.part_range(n_images, batch_size, index, parts) for index in range(parts)]
    assert ranges[0].first == 0 and ranges[-1].end == n_images
    for before, after in zip(ranges, ranges[1:], strict=False):
        assert before.end == after.first
    assert all((part.first % batch_size == 0 or part.first == n_images) and part.first <= part.end for part in ranges)
    sizes = [part.end - part.first for part in ranges]
    full = -(-(-(-n_images // batch_size)) // parts) * batch_size
    assert sum(size not in (0, full) for size in sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # equal whole-chunk parts, then a shorter one, then empty ones
    with pytest.raises(ValueError, match="part 3 of 3"):
        base.part_range(n_images, batch_size, 3, 3)


def test_store_in_parts_equals_one_writer_byte_for_byte(tmp_path, tiny_dataset, one_writer):
    store = tmp_path / "s.zarr"
    activation_extraction.begin_parts(RANDOM, tiny_dataset, store, code="c", **SETTINGS)
    in_parts(store, tiny_dataset, parts=(2, 0, 1))  # any order, as SLURM may run them
    written = [json.loads((tmp_path / f"s.zarr.part-{k}.progress.json").read_text()) for k in range(3)]
    assert [(w["first"], w["images_complete"]) for w in written] == [(0, 4), (4, 8), (8, 10)]
    activation_extraction.publish_parts(store, 3)
    assert files(store) == files(one_writer)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["s.zarr"]  # no partial, progress or lock files


def test_killed_part_resumes_alone(tmp_path, tiny_dataset, one_writer, monkeypatch):
    store = tmp_path / "s.zarr"
    activation_extraction.begin_parts(RANDOM, tiny_dataset, store, code="c", **SETTINGS)
    in_parts(store, tiny_dataset, parts=(0,))
    part_0 = {**files(base.partial_path(store)), "progress": (tmp_path / "s.zarr.part-0.progress.json").read_bytes()}
    die_on_region_write(monkeypatch, 2)  # part 1 dies writing its second batch
    with pytest.raises(KeyboardInterrupt):
        in_parts(store, tiny_dataset, parts=(1,))
    progress = tmp_path / "s.zarr.part-1.progress.json"
    assert json.loads(progress.read_text()) == {"images_complete": 6, "index": 1, "parts": 3, "first": 4, "end": 8}
    with pytest.raises(base.StoreIntegrityError, match="part 1 of 3 .* not images 4 to 7 complete"):
        activation_extraction.publish_parts(store, 3)

    # The template job reruns (a new Snakemake run): the partial store is kept, so are the parts' progress.
    assert activation_extraction.begin_parts(RANDOM, tiny_dataset, store, code="c", **SETTINGS)
    written = record_region_writes(monkeypatch)
    in_parts(store, tiny_dataset, parts=(1,))
    assert written == [{"image": slice(6, 8)}]  # after its last complete batch, nothing of another part
    after = {**files(base.partial_path(store)), "progress": (tmp_path / "s.zarr.part-0.progress.json").read_bytes()}
    assert {key: after[key] for key in part_0 if "/c/0/" in key or "/c/1/" in key} == {
        key: value for key, value in part_0.items() if "/c/0/" in key or "/c/1/" in key
    }
    assert after["progress"] == part_0["progress"]
    in_parts(store, tiny_dataset, parts=(2,))
    activation_extraction.publish_parts(store, 3)
    assert files(store) == files(one_writer)


def test_part_of_other_provenance_is_refused_touching_nothing(tmp_path, tiny_dataset):
    store = tmp_path / "s.zarr"
    activation_extraction.begin_parts(RANDOM, tiny_dataset, store, code="c", **SETTINGS)
    before = files(tmp_path)
    with pytest.raises(base.StoreProvenanceError, match="part 1 of .*other provenance \\(code differ\\)"):
        in_parts(store, tiny_dataset, parts=(1,), code="edited")
    assert files(tmp_path) == before


def test_part_count_changed_midway(tmp_path, tiny_dataset, one_writer):
    """A kept partial store whose parts were 2: parts of 3 restart their ranges, no old progress file is left."""
    store = tmp_path / "s.zarr"
    activation_extraction.begin_parts(RANDOM, tiny_dataset, store, code="c", **SETTINGS)
    for part in (0, 1):
        activation_extraction.extract_part(RANDOM, tiny_dataset, store, part, 2, code="c", **SETTINGS)
    assert activation_extraction.begin_parts(RANDOM, tiny_dataset, store, code="c", **SETTINGS)
    in_parts(store, tiny_dataset)
    activation_extraction.publish_parts(store, 3)
    assert files(store) == files(one_writer)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["s.zarr"]


def test_a_live_part_writer_stops_that_part_and_the_store_writers(tmp_path, tiny_dataset):
    """Another process writing part 1 (holding ``s.zarr.part-1.lock``): part 1, the template job and the
    publishing job fail at once, touching nothing; part 0 writes its own chunks."""
    store = tmp_path / "s.zarr"
    activation_extraction.begin_parts(RANDOM, tiny_dataset, store, code="c", **SETTINGS)
    script = "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    script += "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(120)\n"
    lock = base.lock_path(base.Part(1, 3, 0, 0).name(store))
    process = subprocess.Popen([sys.executable, "-c", script, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        before = files(tmp_path)
        with pytest.raises(base.StoreLockedError, match="part-1 is being written by another process"):
            in_parts(store, tiny_dataset, parts=(1,))
        with pytest.raises(base.StoreLockedError, match="part-1 is being written by another process"):
            activation_extraction.begin_parts(RANDOM, tiny_dataset, store, code="c", **SETTINGS)
        with pytest.raises(base.StoreLockedError, match="part-1 is being written by another process"):
            activation_extraction.publish_parts(store, 3)
        assert files(tmp_path) == before
        in_parts(store, tiny_dataset, parts=(0,))
        assert json.loads((tmp_path / "s.zarr.part-0.progress.json").read_text())["images_complete"] == 4
    finally:
        process.kill()
        process.wait()


def test_part_without_template_is_refused(tmp_path, tiny_dataset):
    with pytest.raises(FileNotFoundError, match="no partial store"):
        in_parts(tmp_path / "s.zarr", tiny_dataset, parts=(0,))


def test_one_writer_after_parts_rewrites_their_chunks(tmp_path, tiny_dataset, one_writer, monkeypatch):
    """Switching parts back to 1: the one writer trusts no part's progress and drops the files."""
    store = tmp_path / "s.zarr"
    activation_extraction.begin_parts(RANDOM, tiny_dataset, store, code="c", **SETTINGS)
    in_parts(store, tiny_dataset, parts=(0, 1))
    activation_extraction.extract(RANDOM, tiny_dataset, store, code="c", **SETTINGS)
    assert files(store) == files(one_writer)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["s.zarr"]
