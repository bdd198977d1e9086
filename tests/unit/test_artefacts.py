import errno
import os

import numpy as np
import pytest
import torch

from clipmech import artefacts


def _flip_byte(path, position=None):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if position is None else position] ^= 0xFF
    path.write_bytes(bytes(data))


def test_write_publishes_the_file_with_a_sha256sum_record(tmp_path):
    path = tmp_path / "sub" / "a.pt"
    digest = artefacts.save_torch(path, {"W": torch.arange(4.0)}, rule="some_rule")
    assert artefacts.file_sha256(path) == digest
    first, second = artefacts.record_path(path).read_text().splitlines()
    assert first == f"{digest}  a.pt"  # sha256sum -c reads this line
    assert artefacts.read_record(path) == {"sha256": digest, "bytes": path.stat().st_size, "rule": "some_rule"}
    assert torch.equal(artefacts.load_torch(path, rule="some_rule")["W"], torch.arange(4.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.pt", "a.pt.sha256"]


def test_a_garbled_npz_is_refused_naming_file_hashes_and_rule(tmp_path):
    path = tmp_path / "probe.npz"
    digest = artefacts.save_npz(path, rule="probe_miclip", x=np.arange(100.0))
    with artefacts.load_npz(path, rule="probe_miclip") as npz:
        assert np.array_equal(npz["x"], np.arange(100.0))
    _flip_byte(path)
    with pytest.raises(ValueError, match=r"probe\.npz is corrupt: it was garbled") as info:
        artefacts.load_npz(path, rule="probe_miclip")
    message = str(info.value)
    assert digest in message and artefacts.file_sha256(path) in message and "rule probe_miclip" in message


def test_a_truncated_file_is_called_truncated(tmp_path):
    path = tmp_path / "a.pt"
    artefacts.save_torch(path, {"W": torch.zeros(100)}, rule="train_x")
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"a\.pt is corrupt: it is truncated \(100 of the {size} bytes.*train_x"):
        artefacts.load_torch(path, rule="train_x")


def test_a_file_without_record_or_with_a_garbled_record_is_refused(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(ValueError, match="no sha256 record.*rule make_a"):
        artefacts.load_npz(path, rule="make_a")
    artefacts.record_path(path).write_text("garbage\n")
    with pytest.raises(ValueError, match="record .* is garbled.*rule make_a"):
        artefacts.verify(path, rule="make_a")
    with pytest.raises(FileNotFoundError, match="absent.npz does not exist; rule make_a writes it"):
        artefacts.verify(tmp_path / "absent.npz", rule="make_a")


def test_no_space_left_is_named_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "out" / "a.pt"
    artefacts.save_torch(path, {"W": torch.ones(3)}, rule="train_x")  # an earlier version stays intact

    def full(obj, fh, *args, **kwargs):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=rf"no space left on the device holding {path.parent}.*train_x") as info:
        artefacts.save_torch(path, {"W": torch.zeros(3)}, rule="train_x")
    assert info.value.errno == errno.ENOSPC
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.pt", "a.pt.sha256"]
    monkeypatch.undo()
    assert torch.equal(artefacts.load_torch(path, rule="train_x")["W"], torch.ones(3))


def test_torch_unexpected_pos_on_a_full_device_is_named(tmp_path, monkeypatch):
    def torch_full(obj, fh, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", torch_full)
    monkeypatch.setattr(artefacts.shutil, "disk_usage", lambda folder: type("U", (), {"free": 0})())
    with pytest.raises(OSError, match="no space left on the device holding"):
        artefacts.save_torch(tmp_path / "a.pt", {}, rule="r")
    assert list(tmp_path.iterdir()) == []


def test_other_write_errors_pass_through_and_leave_nothing(tmp_path, monkeypatch):
    def broken(fh, **arrays):
        fh.write(b"x")
        raise KeyError("boom")

    monkeypatch.setattr(artefacts.np, "savez", broken)
    with pytest.raises(KeyError, match="boom"):
        artefacts.save_npz(tmp_path / "a.npz", rule="r", x=np.zeros(1))
    assert list(tmp_path.iterdir()) == []


class Foreign:
    """Not something ``weights_only=True`` unpickles."""


def test_weights_only_refuses_pickled_objects(tmp_path):
    path = tmp_path / "a.pt"
    artefacts.save_torch(path, {"obj": Foreign()}, rule="r")
    with pytest.raises(ValueError, match="weights_only=True"):
        artefacts.load_torch(path, rule="r")


def test_remove_deletes_file_and_record(tmp_path):
    path = tmp_path / "a.pt"
    artefacts.save_torch(path, {}, rule="r")
    artefacts.remove(path)
    artefacts.remove(path)
    assert list(tmp_path.iterdir()) == []


def test_without_a_record_only_the_file_is_published(tmp_path):
    path = tmp_path / "checkpoint.pt"
    digest = artefacts.save_torch(path, {"state_dict": {}}, rule="train_clip", record=False)
    assert digest == artefacts.file_sha256(path) and list(tmp_path.iterdir()) == [path]


class _FullFile:
    """A binary file whose device fills up after ``room`` bytes (writes raise ENOSPC, as on a full disk)."""

    def __init__(self, fh, room):
        self._fh, self._room = fh, room

    def write(self, data):
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


@pytest.mark.parametrize("kind", ["torch", "npz"])
def test_a_device_filling_up_mid_write_is_named_by_real_writers(tmp_path, monkeypatch, kind):
    def filling_open(path, mode="r", *args, **kwargs):
        fh = open(path, mode, *args, **kwargs)
        return _FullFile(fh, 1000) if "b" in mode and "w" in mode else fh

    monkeypatch.setattr(artefacts, "open", filling_open, raising=False)
    big = np.random.default_rng(0).standard_normal(10_000)
    with pytest.raises(OSError, match=f"no space left on the device holding {tmp_path}") as info:
        if kind == "torch":
            artefacts.save_torch(tmp_path / "a.pt", {"W": torch.from_numpy(big)}, rule="r")
        else:
            artefacts.save_npz(tmp_path / "a.npz", rule="r", x=big)
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_tables_json_and_figures_are_published_whole_or_not_at_all(tmp_path, monkeypatch):
    """A table, a JSON record and a PNG whose device fills mid-write: no partial file looks complete."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from clipmech.data import tables
    from clipmech.figures.style import save_figure

    table = pd.DataFrame({"unit": range(2000), "affinity": np.linspace(0, 1, 2000)})
    tables.write_table(table, tmp_path / "ok.tsv")
    assert (tmp_path / "ok.tsv").read_text() == table.to_csv(sep="\t", index=False, float_format="%.6g")
    (tmp_path / "ok.tsv").unlink()

    def filling_open(path, mode="r", *args, **kwargs):
        fh = open(path, mode, *args, **kwargs)
        return _FullFile(fh, 1000) if "b" in mode and "w" in mode else fh

    monkeypatch.setattr(artefacts, "open", filling_open, raising=False)
    figure = plt.figure()
    figure.add_subplot().plot(np.random.default_rng(0).standard_normal(500))
    writes = {
        "units.tsv": lambda path: tables.write_table(table, path),
        "metrics.json": lambda path: tables.write_json({"fvu": list(range(500))}, path),
        "curve.png": lambda path: save_figure(figure, path),
    }
    for name, write in writes.items():
        with pytest.raises(OSError, match=f"no space left on the device holding {tmp_path} while writing {name}:"):
            write(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_write_together_publishes_every_file_only_once_all_are_written(tmp_path):
    paths = [tmp_path / "a.npy", tmp_path / "b.tsv"]
    seen = []

    def write_to(a, b):
        a.write(b"first")
        b.write(b"second")
        seen.append(sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp")))

    artefacts.write_together(paths, write_to, rule=None, record=False)
    assert seen == [[]]  # nothing under its own name while the files are being written
    assert [p.read_bytes() for p in paths] == [b"first", b"second"]

    def fail(a, b):
        a.write(b"partial")
        raise RuntimeError("renderer failed")

    with pytest.raises(RuntimeError, match="renderer failed"):
        artefacts.write_together([tmp_path / "c.npy", tmp_path / "d.tsv"], fail, rule=None, record=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "b.tsv"]  # no temporary, no partial file
    with pytest.raises(ValueError, match="at least one path"):
        artefacts.write_together([], write_to, rule=None)


def test_published_files_get_a_new_files_permissions(tmp_path):
    """The temporary file is created 0666 less the umask, as open() would, not 0600 as by tempfile.mkstemp."""
    old = os.umask(0o022)
    try:
        artefacts.write_text(tmp_path / "table.tsv", "a\tb\n")
    finally:
        os.umask(old)
    assert (tmp_path / "table.tsv").stat().st_mode & 0o777 == 0o644
