"""Two processes on one file: the locks, and "did someone else finish it meanwhile?".

- A large file: ``<partial>.lock`` via ``filelock``. The second process waits, then finds the
  file published (and returns it) or resumes from the journal the first left behind. The lock
  file is removed after a successful publish (while held); a process that was waiting on the
  removed file sees the published ``dest`` and does nothing, and in the rare race where it does
  not, it only redoes work: nothing is published unverified.
- A small file: ``flock`` on the partial file's own descriptor (no lock file beside it);
  where ``fcntl`` is missing, ``filelock`` on ``<partial>.lock``.
- :func:`finished_elsewhere`: after the lock is taken, ``dest`` changed while we waited, or a
  ``present_at`` path (the HF cache snapshot, where the blob is *moved* without symlinks) holds
  exactly ``size`` bytes: the file is done, nothing is fetched again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from filelock import BaseFileLock, FileLock, Timeout

from .context import Cancelled
from .jobs import FileJob

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["file_lock", "finished_elsewhere", "held", "locked_fd", "stat_id"]

StatId = tuple[int, int, int]


def file_lock(path: Path) -> BaseFileLock:
    return FileLock(str(path))


def held(lock: BaseFileLock, cancel: threading.Event) -> None:
    """Wait for ``lock``, checking ``cancel`` twice a second."""
    while True:
        try:
            lock.acquire(timeout=0.5, poll_interval=0.05)
            return
        except Timeout:
            if cancel.is_set():
                raise Cancelled from None


@contextlib.contextmanager
def locked_fd(fd: int, path: Path, cancel: threading.Event) -> Iterator[None]:
    """Hold an exclusive lock on the open file ``fd`` (``path``) for the block."""
    if fcntl is None:  # pragma: no cover - Windows
        lock = file_lock(path.with_name(path.name + ".lock"))
        held(lock, cancel)
        try:
            yield
        finally:
            lock.release()
        return
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if cancel.wait(0.05):
                raise Cancelled from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def stat_id(path: Path) -> StatId | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def finished_elsewhere(job: FileJob, dest_before: StatId | None) -> Path | None:
    """The finished copy another process left while we waited for the lock, if any."""
    now = stat_id(job.dest)
    if now is not None and now != dest_before and now[2] == job.size:
        return job.dest
    for path in job.present_at:
        found = stat_id(path)
        if found is not None and found[2] == job.size:
            return job.dest if job.dest.exists() else path
    return None
