"""The writer lock of a store: one process at a time writes it, and a second one fails at once.

A store being written holds an exclusive ``fcntl.flock`` on ``<store>.lock`` beside it, from the start
of its extraction to its publication (:func:`writing`, :func:`clipmech.stores.base.begin_store` to
:func:`clipmech.stores.base.publish_store`). The kernel releases the lock when its process ends, however
it ends, so a killed writer never leaves a store locked; the file (holding the writer's pid, for the
message) is removed on release. This module imports nothing heavy, so a Snakefile can ask
:func:`writer_pid` while it builds its jobs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

#: How long a writer retries a held lock before it fails: a probe (:func:`writer_pid`) holds it for microseconds.
_RETRY_S = 0.5


class StoreLockedError(RuntimeError):
    """A store that another live process is writing (it holds the store's lock file)."""


def lock_path(store: str | Path) -> Path:
    """The lock file beside a store that its writer holds (``fcntl.flock``) while it writes: ``<store>.lock``."""
    store = Path(store)
    return store.with_name(store.name + ".lock")


#: The lock files this process holds: absolute store path -> open file descriptor.
_HELD_LOCKS: dict[Path, int] = {}


def _pid(fd: int) -> str:
    return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"


def writer_pid(store: str | Path) -> str | None:
    """The pid of the live process writing a store (holding its lock), or None if none is.

    Probes the lock with a shared ``flock`` held for a moment, creating nothing.
    """
    try:
        fd = os.open(lock_path(store), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid(fd)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def lock_store(store: str | Path) -> bool:
    """Take the writer lock of a store (an exclusive ``flock`` on :func:`lock_path`), without waiting.

    The lock is per process: taking it again in the process that holds it does nothing. The kernel
    releases it when the process ends, however it ends, so a killed writer never leaves a store locked.

    Returns
    -------
    bool
        True if this call took the lock, False if this process held it already.

    Raises
    ------
    StoreLockedError
        If another process holds it (after retrying for half a second); the message names that process's pid.
    """
    key = Path(os.path.abspath(store))
    if key in _HELD_LOCKS:
        return False
    path = lock_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + _RETRY_S
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid(fd)
            os.close(fd)
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise StoreLockedError(
                f"{store} is being written by another process (pid {pid}); wait for it or kill it"
            ) from None
        # A writer releasing the lock unlinks the file first: if it did so between our open and our
        # flock, we hold the lock of a file that is gone, so try again with the file at the path.
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD_LOCKS[key] = fd
    return True


def unlock_store(store: str | Path) -> None:
    """Release the writer lock of a store that this process holds (:func:`lock_store`), removing its
    lock file; does nothing if this process does not hold it."""
    key = Path(os.path.abspath(store))
    fd = _HELD_LOCKS.pop(key, None)
    if fd is None:
        return
    lock_path(key).unlink(missing_ok=True)  # while still locked, so no other writer holds this file
    os.close(fd)


@contextlib.contextmanager
def writing(store: str | Path) -> Iterator[None]:
    """Hold the writer lock of a store (:func:`lock_store`) for a whole extraction; released on exit.

    Raises
    ------
    StoreLockedError
        If another process is writing the store; nothing is read, written or deleted.
    """
    taken = lock_store(store)
    try:
        yield
    finally:
        if taken:
            unlock_store(store)


def no_writer(pattern: str):
    """An input function for the rule that writes the stores of ``pattern`` (a path with wildcards): no
    input, but it stops the DAG being built while another live process writes the job's store, so that a
    second run (after ``snakemake --unlock``) plans nothing on it and Snakemake deletes nothing of it.

    Raises
    ------
    StoreLockedError
        When the store is being written (:func:`writer_pid`), naming the store and the writer's pid.
    """

    def check(wildcards) -> list[str]:
        store = pattern.format(**dict(wildcards.items()))
        pid = writer_pid(store)
        if pid is not None:
            raise StoreLockedError(
                f"{store} is being written by another process (pid {pid}), perhaps a run whose Snakemake lock "
                "was removed with --unlock: wait for it or kill it, then run again"
            )
        return []

    return check
