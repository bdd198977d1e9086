"""Verified artefacts: files written atomically with a sha256 record, checked before they are read.

``torch.load`` and ``np.load`` read a file garbled in place without complaint (an SAE of FVU 1e17, a table
changed by one flipped bit), and a truncated file gives a bare ``OSError``. Every ``torch.save`` /
``np.savez`` artefact of the pipeline (SAE files and their resume states, MiCLIP encoders and probes, text
embeddings, zero-shot classifiers) therefore goes through this module:

- :func:`write` writes to a temporary file beside the target, fsyncs it, hashes the bytes on disk, writes
  the **digest record** ``<file>.sha256`` (also through a temporary file) and publishes both by
  ``os.replace`` (the file first, then its record; a crash between them leaves a record that does not
  match, which the reader refuses). On any failure the temporary files are removed; a full disk (ENOSPC,
  or torch's ``unexpected pos`` with the device full) is reported as such, naming the folder.
- :func:`verify` checks a file against its record before anything unpickles it and raises a
  ``ValueError`` naming the file, both hashes (and sizes: a shorter file is called truncated) and the rule
  that rebuilds it.

The record is a separate file because a digest cannot live inside the bytes it hashes. It is a
``sha256sum`` line (``<hex>  <name>``; ``sha256sum -c results/sae/m/d/s/checkpoint.pt.sha256`` checks it from
the file's folder) followed by a JSON line of the size and the writing rule, so it carries what the
reader's messages need. The rules declare it as an output beside the file, and as an input of the rules
that read the file (``verified`` in ``workflow/rules/common.smk``), so Snakemake rebuilds a file whose
record is missing.

Standard library and numpy; torch only when a torch file is written or read.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pickle
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Suffix of a file's digest record.
RECORD_SUFFIX = ".sha256"

#: A device with less free space than this after a failed write is taken to be full.
_FULL_BYTES = 1 << 20


def record_path(path: str | Path) -> Path:
    """Where the digest record of ``path`` lives: ``<path>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + RECORD_SUFFIX)


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_disk_full(error: BaseException, folder: Path) -> bool:
    """True for an ENOSPC anywhere in the exception's chain, or a torch write error on a full device."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    if isinstance(error, RuntimeError) and ("unexpected pos" in str(error) or "write" in str(error).lower()):
        try:
            return shutil.disk_usage(folder).free < _FULL_BYTES
        except OSError:
            return False
    return False


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary(path: Path) -> str:
    """Create an empty, uniquely named file beside ``path`` with a new file's permissions (0666 less the umask).

    ``tempfile.mkstemp`` would create it 0600, and the rename would publish that: a dataset or table that the
    user's group could read before (``numpy.save`` of the path) would no longer be readable.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return str(tmp)


def write(path: str | Path, write_to: Callable[[BinaryIO], Any], *, rule: str | None, record: bool = True) -> str:
    """Write a verified artefact: ``write_to(fh)`` fills a temporary binary file, published with its record.

    Parameters
    ----------
    path : path
        The artefact; its folder is created.
    write_to : callable
        Writes the bytes to the open file it is given (``torch.save(obj, fh)``, ``np.savez(fh, ...)``).
    rule : str or None
        The rule that writes it (recorded, and named by the reader's messages); None for a file without a
        record whose writer does not know its rule (a table, :func:`write_text`).
    record : bool
        Write the digest record ``<path>.sha256``; False where the caller records the returned digest
        elsewhere (a CLIP checkpoint's ``metrics.json``, :mod:`clipmech.models.loading`).

    Returns
    -------
    str
        The sha256 hex digest of the file.

    Raises
    ------
    OSError
        With errno ENOSPC and a message naming the folder when its device is full; other write errors as
        they are. No temporary file is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = record_tmp = None
    try:
        tmp = _temporary(path)
        with open(tmp, "wb") as fh:
            write_to(fh)
            fh.flush()
            os.fsync(fh.fileno())
        digest = file_sha256(tmp)
        size = os.path.getsize(tmp)
        if record:
            record_tmp = _temporary(record_path(path))
            with open(record_tmp, "w") as fh:
                fh.write(f"{digest}  {path.name}\n")
                fh.write(json.dumps({"bytes": size, "rule": rule}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        if record:
            os.replace(record_tmp, record_path(path))
            record_tmp = None
        _fsync_dir(path.parent)
        return digest
    except BaseException as error:
        if isinstance(error, (OSError, RuntimeError)) and _is_disk_full(error, path.parent):
            raise OSError(
                errno.ENOSPC,
                f"no space left on the device holding {path.parent} while writing {path.name}"
                f"{'' if rule is None else f' (rule {rule})'}: "
                "free space on that device (or move the results folder to a larger one), then run the rule again",
            ) from error
        raise
    finally:
        for leftover in (tmp, record_tmp):
            if leftover is not None:
                Path(leftover).unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Publish a text file (a table, a JSON record, an HTML page) by rename, so that it is whole or absent.

    UTF-8, no digest record. Raises OSError as :func:`write` (a full disk named, no temporary file left).
    """
    write(path, lambda fh: fh.write(text.encode("utf-8")), rule=None, record=False)


def write_together(
    paths: Sequence[str | Path], write_to: Callable[..., Any], *, rule: str | None, record: bool = True
) -> None:
    """Write several files in one pass, each published by rename (as :func:`write`) once all are written.

    ``write_to(fh_0, fh_1, ...)`` fills one temporary binary file per path, in ``paths`` order (a stage that
    streams images, masks and their table into three files at once). Only after it returns are the files
    fsynced and renamed, the last path first; if it raises, nothing is published and no temporary file is
    left. A crash between two renames leaves some files published and the others absent, never partial.

    Parameters
    ----------
    paths : sequence of path
        At least one; folders are created.
    write_to : callable
        Called once with as many open binary files as ``paths``.
    rule, record
        As in :func:`write`, for every file.

    Raises
    ------
    ValueError
        If ``paths`` is empty.
    OSError
        As :func:`write`.
    """
    paths = [Path(path) for path in paths]
    if not paths:
        raise ValueError("write_together needs at least one path")

    def nested(handles: list[BinaryIO]) -> None:
        if len(handles) == len(paths):
            write_to(*handles)
        else:
            write(paths[len(handles)], lambda fh: nested([*handles, fh]), rule=rule, record=record)

    nested([])


def read_record(path: str | Path) -> dict:
    """The digest record of ``path``: ``{"sha256", "bytes", "rule"}`` (``bytes`` and ``rule`` may be None).

    Raises
    ------
    FileNotFoundError
        If there is no record.
    ValueError
        If the record is not one this module wrote.
    """
    record = record_path(path)
    lines = record.read_text().splitlines()
    digest = lines[0].split()[0] if lines and lines[0].split() else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"the sha256 record {record} of {path} is garbled (no sha256 on its first line)")
    try:
        extra = json.loads(lines[1]) if len(lines) > 1 else {}
    except json.JSONDecodeError:
        extra = {}
    return {"sha256": digest, "bytes": extra.get("bytes"), "rule": extra.get("rule")}


def verify(path: str | Path, *, rule: str) -> str:
    """Check ``path`` against its digest record (module docstring) before it is read.

    Parameters
    ----------
    path : path
    rule : str
        The rule that rebuilds the file, named in the messages.

    Returns
    -------
    str
        The file's sha256.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it has no record (written before records, or its write was cut short), its record is garbled,
        or its sha256 differs from the recorded one (garbled, truncated or replaced); the message names
        the file, both hashes and sizes and the rule that rebuilds it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; rule {rule} writes it")
    rebuild = f"delete it (and {record_path(path).name}) and run rule {rule} again to rebuild it"
    try:
        record = read_record(path)
    except FileNotFoundError:
        raise ValueError(
            f"{path} has no sha256 record {record_path(path)}, so it cannot be verified (it was written before "
            f"records were kept, or its write was cut short): {rebuild}"
        ) from None
    except (ValueError, OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{error}; {rebuild}") from error
    actual = file_sha256(path)
    if actual == record["sha256"]:
        return actual
    size, written = path.stat().st_size, record["bytes"]
    if written is not None and size < written:
        what = f"is truncated ({size} of the {written} bytes written)"
    elif written is not None and size > written:
        what = f"has grown ({size} bytes, {written} written)"
    else:
        what = "was garbled or replaced after it was written (same size)"
    raise ValueError(
        f"{path} is corrupt: it {what}; its sha256 is {actual}, but {record_path(path)} records "
        f"{record['sha256']}. {rebuild[0].upper()}{rebuild[1:]}"
    )


def remove(path: str | Path) -> None:
    """Delete a file and its digest record, where they exist."""
    Path(path).unlink(missing_ok=True)
    record_path(path).unlink(missing_ok=True)


def save_torch(path: str | Path, obj: Any, *, rule: str, record: bool = True) -> str:
    """``torch.save`` ``obj`` as a verified artefact (:func:`write`); it should hold only what
    ``torch.load(weights_only=True)`` reads (tensors, dicts, lists, tuples, str, numbers, bool, None)."""
    import torch  # here, not at the top: tables and figures publish through this module without torch

    return write(path, lambda fh: torch.save(obj, fh), rule=rule, record=record)


def load_torch(path: str | Path, *, rule: str, map_location: str | torch.device = "cpu") -> Any:
    """Verify a torch file (:func:`verify`), then read it with ``torch.load(weights_only=True)``.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`verify`; ``ValueError`` also if torch cannot read the verified file (the message names it).
    """
    import torch

    verify(path, rule=rule)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as error:
        raise ValueError(
            f"{path} matches its sha256 record but torch cannot read it with weights_only=True "
            f"({type(error).__name__}: {error}); run rule {rule} again to rebuild it"
        ) from error


def save_npz(path: str | Path, *, rule: str, **arrays) -> str:
    """``np.savez`` the arrays as a verified artefact (:func:`write`)."""
    return write(path, lambda fh: np.savez(fh, **arrays), rule=rule)


def load_npz(path: str | Path, *, rule: str):
    """Verify an ``.npz`` (:func:`verify`), then open it with ``np.load(allow_pickle=False)``.

    Returns
    -------
    numpy.lib.npyio.NpzFile
        Arrays are read lazily, by key.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`verify`; ``ValueError`` also if numpy cannot open the verified file.
    """
    verify(path, rule=rule)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(
            f"{path} matches its sha256 record but numpy cannot read it ({type(error).__name__}: {error}); "
            f"run rule {rule} again to rebuild it"
        ) from error
