"""Corrupt, lost or inconsistent store data fails loudly, naming what is wrong and where (clipmech.stores.base)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from toys import die_on_region_write, record_region_writes

from clipmech.models.loading import ModelSpec
from clipmech.stores import activation_extraction, activations, attnpool_extraction, base, locks
from clipmech.stores import attnpool as pool_store

RANDOM = ModelSpec("rand", "clipmech-vit-tiny", None)
CODE = "test-code"


def extract(target, tiny_dataset, spec=RANDOM, code=CODE):
    return activation_extraction.extract(spec, tiny_dataset, target, batch_size=3, device="cpu", code=code)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_dataset):
    """An uninterrupted store of RANDOM, 10 images in chunks of 3."""
    return extract(tmp_path_factory.mktemp("reference") / "ref.zarr", tiny_dataset)


def killed(target, tiny_dataset, monkeypatch, n_write: int) -> None:
    """An extraction killed at its ``n_write``-th batch write: ``3 * (n_write - 1)`` images complete."""
    die_on_region_write(monkeypatch, n_write)
    with pytest.raises(KeyboardInterrupt):
        extract(target, tiny_dataset)
    assert json.loads(base.progress_path(target).read_text()) == {"images_complete": 3 * (n_write - 1)}


def assert_same(store, reference) -> None:
    resumed, expected = activations.open_store(store), activations.open_store(reference)
    for name in ("mean", "max", "cls", "tokens", "embedding"):
        np.testing.assert_array_equal(resumed[name].values, expected[name].values)


def test_every_array_carries_a_checksum(reference):
    group = zarr.open_group(reference, mode="r")
    for name, array in group.arrays():
        assert [type(c).__name__ for c in array.metadata.codecs] == ["BytesCodec", "ZstdCodec", "Crc32cCodec"], name
    assert group.attrs["images_complete"] == 10


def test_deleted_chunk_fails_on_open(tmp_path, tiny_dataset):
    store = extract(tmp_path / "s.zarr", tiny_dataset)
    (store / "mean/c/0/0/0").unlink()  # images 0-2 of layer 0: zarr reads a missing chunk as NaN
    with pytest.raises(base.StoreIntegrityError, match=r"lacks 1 chunk files \(.*s\.zarr/mean/c/0/0/0\)"):
        activations.open_store(store)


def test_deleted_chunk_of_attnpool_store_fails_on_open(tmp_path, tiny_dataset):
    spec = ModelSpec("rand-rn", "clipmech-rn-tiny", None)
    store = attnpool_extraction.extract_attnpool(spec, tiny_dataset, tmp_path / "p.zarr", batch_size=4, code=CODE)
    assert pool_store.open_store(store)["x"].shape[0] == 10
    (store / "x/c/2/0/0").unlink()
    with pytest.raises(base.StoreIntegrityError, match=r"attention-pool store .*p\.zarr/x/c/2/0/0"):
        pool_store.open_store(store)


def test_flipped_byte_in_a_chunk_fails_on_read(tmp_path, tiny_dataset):
    store = extract(tmp_path / "s.zarr", tiny_dataset)
    chunk = store / "mean/c/1/0/0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    ds = activations.open_store(store)  # opening reads no data
    with pytest.raises(base.StoreIntegrityError, match=r"chunk file .*s\.zarr/mean/c/1/0/0 fails its crc32c checksum"):
        ds["mean"].values


def test_older_store_without_images_complete_is_refused(tmp_path, tiny_dataset):
    store = extract(tmp_path / "s.zarr", tiny_dataset)
    group = zarr.open_group(store, mode="r+")
    del group.attrs["images_complete"]
    with pytest.raises(base.StoreIntegrityError, match="records no images_complete"):
        activations.open_store(store)


def test_over_claiming_progress_resumes_from_the_chunks_written(tmp_path, tiny_dataset, reference, monkeypatch, caplog):
    target = tmp_path / "s.zarr"
    killed(target, tiny_dataset, monkeypatch, 2)  # images 0-2 written
    progress = base.progress_path(target)
    progress.write_text(json.dumps({"images_complete": 9}))
    written = record_region_writes(monkeypatch)
    with caplog.at_level(logging.WARNING):
        extract(target, tiny_dataset)
    assert f"progress file {progress} claims 9 images complete" in caplog.text
    assert "resuming after 3 images" in caplog.text
    assert written[0] == {"image": slice(3, 6)}
    assert_same(target, reference)


def test_truncated_progress_starts_afresh(tmp_path, tiny_dataset, reference, monkeypatch, caplog):
    target = tmp_path / "s.zarr"
    killed(target, tiny_dataset, monkeypatch, 3)
    progress = base.progress_path(target)
    progress.write_text('{"images_comp')
    written = record_region_writes(monkeypatch)
    with caplog.at_level(logging.WARNING):
        extract(target, tiny_dataset)
    assert f"progress file {progress} is unreadable (JSONDecodeError" in caplog.text
    assert written[0] is None and written[1] == {"image": slice(0, 3)}  # the template, then every batch
    assert_same(target, reference)


def test_resume_after_a_code_edit_starts_afresh(tmp_path, tiny_dataset, monkeypatch, caplog):
    target = tmp_path / "s.zarr"
    killed(target, tiny_dataset, monkeypatch, 3)
    written = record_region_writes(monkeypatch)
    with caplog.at_level(logging.WARNING):
        extract(target, tiny_dataset, code="edited-code")
    assert "other provenance (code differ); starting afresh" in caplog.text
    assert written == [None] + [{"image": slice(first, min(first + 3, 10))} for first in (0, 3, 6, 9)]
    assert activations.open_store(target).attrs["code"] == "edited-code"


def test_nan_batch_is_not_written_and_the_store_not_published(tmp_path, tiny_dataset, tiny_vit):
    model, _ = tiny_vit
    state = {
        key: torch.full_like(value, float("nan")) if key.startswith("visual.transformer.resblocks.1.") else value
        for key, value in model.state_dict().items()
    }
    torch.save({"state_dict": state}, tmp_path / "nan.pt")
    spec = ModelSpec("nan-block-1", "clipmech-vit-tiny", str(tmp_path / "nan.pt"))
    target = tmp_path / "s.zarr"
    with pytest.raises(ValueError, match=r"model nan-block-1: \d+ NaN .* in mean at visual\.blocks\.1\.hook_mlp_out, "):
        extract(target, tiny_dataset, spec=spec)
    assert not target.exists() and base.partial_path(target).is_dir()
    assert json.loads(base.progress_path(target).read_text()) == {"images_complete": 0}


def test_check_finite_names_the_layer_and_images():
    batch = xr.Dataset({"tokens": (("image", "layer", "token", "neuron"), np.ones((3, 2, 4, 5), np.float16))})
    batch["tokens"].values[1, 1, 2, 3] = np.inf
    with pytest.raises(
        ValueError, match=r"model m: 0 NaN and 1 infinite values \(float16 overflows.* at b, images 7 of"
    ):
        base.check_finite(batch, 6, 9, "m", {"tokens": ("a", "b")})


def test_publish_refuses_a_short_progress(tmp_path, tiny_dataset, monkeypatch):
    target = tmp_path / "s.zarr"
    killed(target, tiny_dataset, monkeypatch, 3)
    with pytest.raises(base.StoreIntegrityError, match=r"records 6 of 10 images complete; .*s\.zarr\.partial"):
        base.publish_store(target, "activation store")
    assert not target.exists()


def test_chunk_copied_over_another_fails_on_read_naming_both(tmp_path, tiny_dataset):
    store = extract(tmp_path / "s.zarr", tiny_dataset)
    # Images 3-5 of layer 0 copied over images 0-2: each file passes its own crc32c.
    (store / "mean/c/0/0/0").write_bytes((store / "mean/c/1/0/0").read_bytes())
    ds = activations.open_store(store)
    assert np.isfinite(ds["mean"][3:6].values).all()  # the chunks left in place read
    with pytest.raises(
        base.StoreIntegrityError,
        match=r"chunk file .*s\.zarr/mean/c/0/0/0 holds the chunk written at mean/c/1/0/0, not the chunk written at "
        r"mean/c/0/0/0",
    ):
        ds["mean"].values


def test_store_without_chunk_record_is_refused_naming_the_rule(tmp_path, tiny_dataset):
    store = extract(tmp_path / "s.zarr", tiny_dataset)
    (store / base.CHUNK_RECORD).unlink()  # as published before chunks were bound to their keys
    with pytest.raises(base.StoreIntegrityError, match=r"has no chunks\.json: .*rule extract_activations"):
        activations.open_store(store)


@pytest.fixture
def other_writer(tmp_path):
    """Lock ``tmp_path / "s.zarr"`` from another process as a live writer does; yields its pid."""
    lock = base.lock_path(tmp_path / "s.zarr")
    script = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        yield process.pid
    finally:
        process.kill()
        process.wait()


def files(path):
    return {file: file.read_bytes() for file in sorted(path.parent.rglob("*")) if file.is_file()}


def test_second_writer_fails_at_once_and_touches_nothing(tmp_path, tiny_dataset, monkeypatch, request):
    target = tmp_path / "s.zarr"
    killed(target, tiny_dataset, monkeypatch, 3)  # a partial store of 6 images, as the first writer left it
    assert not base.lock_path(target).exists()  # released by the killed extraction
    pid = request.getfixturevalue("other_writer")  # the first writer, alive again
    before = {file: data for file, data in files(target).items() if file != base.lock_path(target)}
    message = rf"s\.zarr is being written by another process \(pid {pid}\); wait for it or kill it"
    other = dataclasses.replace(
        activation_extraction.StoreProvenance.from_attrs(
            xr.open_zarr(base.partial_path(target), consolidated=False).attrs
        ),
        code="other",
    )
    with pytest.raises(base.StoreLockedError, match=message):  # another provenance would start afresh
        base.begin_store(target, other, lambda: pytest.fail("the template of a fresh start was asked for"))
    with pytest.raises(base.StoreLockedError, match=message):  # fails before it loads the model
        extract(target, tiny_dataset, code="other")
    with pytest.raises(base.StoreLockedError, match=message):
        base.publish_store(target, "activation store")
    after = {file: data for file, data in files(target).items() if file != base.lock_path(target)}
    assert after == before
    assert base.lock_path(target).read_text() == str(pid)


def test_second_writer_of_a_published_store_touches_nothing(tmp_path, tiny_dataset, request):
    store = extract(tmp_path / "s.zarr", tiny_dataset)
    assert not base.lock_path(store).exists()  # released and removed on publication
    before = files(store)
    request.getfixturevalue("other_writer")
    with pytest.raises(base.StoreLockedError, match="is being written by another process"):
        extract(store, tiny_dataset)
    assert {file: data for file, data in files(store).items() if file != base.lock_path(store)} == before
    assert activations.open_store(store)["mean"].shape[0] == 10


def test_lock_is_per_process_and_removed_on_release(tmp_path):
    store = tmp_path / "s.zarr"
    assert base.lock_store(store) and not base.lock_store(store)  # per process: taken once
    assert locks.writer_pid(store) == str(os.getpid())
    base.unlock_store(store)
    assert not base.lock_path(store).exists()
    assert locks.writer_pid(store) is None
    with base.writing(store):
        assert base.lock_path(store).read_text().strip() == str(os.getpid())
    assert not base.lock_path(store).exists()
